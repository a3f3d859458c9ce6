"""How much of an edited block's key space a sequence of edits occupies: read from the ledgers of
`benchmarks.real_sequence` runs, no model loaded.

`python -m benchmarks.real_key_space --work DIR [DIR ...]`

Every edit round records its keys (the d_ff x n keys each layer's later solves preserve, Cp = Σ K Kᵀ) and the
base's C0 (second moments of general text's keys). A solve weighs a new update against λ·C0 + Cp (NSE, MEMIT-Cp,
AlphaEdit's projection keeps out of Cp's span). After each round, per edited block:
- rank: the numerical rank of Cp (eigenvalues above 1e-6 of the largest), at most the edits so far;
- k99: the number of Cp's eigenvectors carrying 99% of its trace;
- held by edits: the number of directions where earlier edits' keys outweigh general text's, i.e. generalized
  eigenvalues of Cp against λ·C0 (with the solves' ridge) above 1, and their share of d_ff. Those directions are
  closed to a new update: the more of them, the less room to write a new fact without undoing an old one or
  moving what the text uses.
Results: `benchmarks/results/real_key_space.json` (one entry per results name of the runs), shown in section 1c.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import load_results, save_results, say

RESULTS_NAME = "real_key_space"
RANK_TOLERANCE = 1e-6
ENERGY = 0.99


class KeySpaceError(Exception):
    """A --work that holds no real_sequence ledger: one line, exit 2."""


def key_space(cp, c0, weight: float, ridge: float) -> dict[str, float]:
    """Rank and k99 of Cp; the generalized eigenvalues μ of Cp v = μ (λ C0 + ridge) v above 1 (float64)."""
    import torch

    from editor.engine import with_ridge

    values = torch.linalg.eigvalsh(cp.double()).flip(0).clamp_min(0.0)
    rank = int((values > RANK_TOLERANCE * values[0]).sum()) if values[0] > 0 else 0
    k99 = int((values.cumsum(0) < ENERGY * values.sum()).sum()) + 1
    lower = torch.linalg.cholesky(with_ridge(weight * c0.double(), ridge))
    whitened = torch.linalg.solve_triangular(lower, torch.linalg.solve_triangular(lower, cp.double(), upper=False).T,
                                             upper=False)
    held = int((torch.linalg.eigvalsh((whitened + whitened.T) / 2) > 1.0).sum())
    return {"rank": rank, "k99": k99, "held": held, "held_share": held / cp.shape[0]}


def run_ledger(work: Path) -> dict[str, Any]:
    """Per round of the ledger's main branch: the edits so far and each edited block's key space."""
    from editor.artifacts import get_tensors
    from editor.engine import add_keys_to_cp
    from ledger import Ledger

    ledger = Ledger.open(work / "ledger")  # main checked that it is one
    head = ledger.log("main", limit=1)[0]
    history = [(v, a) for v, a in ledger.ancestry_artifacts(head.commit_hash) if v.kind == "edit"]
    if not history:
        raise KeySpaceError(f"--work {work}: its ledger has no edit round yet")
    c0 = {int(a.role[4:]): next(iter(get_tensors(ledger.store, a.sha256).values()))
          for a in history[0][1] if a.role.startswith("c0.L")}
    cp: dict = {}
    rounds, edits = [], 0
    for version, artifacts in history:
        for artifact in sorted((a for a in artifacts if a.role.startswith("keys.")),
                               key=lambda a: int(a.role.split(".")[1])):
            keys = {int(name[1:]): tensor for name, tensor in get_tensors(ledger.store, artifact.sha256).items()}
            add_keys_to_cp(cp, keys)
        edits += len(ledger.show(version.commit_hash).requests)
        hp = version.hparams
        weight, ridge = float(hp["mom2_update_weight"]), float(hp.get("solve_ridge", 0.0))
        rounds.append({"edits": edits, "layers": {str(layer): key_space(cp[layer], c0[layer], weight, ridge)
                                                  for layer in sorted(cp)}})
        say(f"{work.name}: {edits} edits: " + ", ".join(
            f"L{layer} k99 {v['k99']}, held {v['held']} ({v['held_share']:.1%})"
            for layer, v in rounds[-1]["layers"].items()))
    d_ff = int(next(iter(c0.values())).shape[0])
    return {"d_ff": d_ff, "rounds": rounds}


def run(works: list[Path], names: list[str]) -> int:
    import torch

    torch.set_num_threads(1)
    saved = load_results(RESULTS_NAME)
    runs = dict(saved["data"]["runs"]) if saved else {}
    for work, name in zip(works, names, strict=True):
        runs[name] = run_ledger(work)
    save_results(RESULTS_NAME, {"runs": runs, "energy": ENERGY, "rank_tolerance": RANK_TOLERANCE}, False, 0.0)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.real_key_space", description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, nargs="+", required=True, help="real_sequence --work directories")
    parser.add_argument("--name", nargs="+", help="the run's results name for each --work (default: its folder)")
    args = parser.parse_args(argv)
    names = args.name or [work.name for work in args.work]
    try:
        if len(names) != len(args.work):
            raise KeySpaceError(f"--name: {len(names)} names for {len(args.work)} --work directories")
        for work in args.work:
            if not (work / "ledger" / ".editledger").is_dir():
                raise KeySpaceError(f"--work {work}: no ledger in it (a benchmarks.real_sequence --work directory)")
        return run(args.work, names)
    except KeySpaceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
