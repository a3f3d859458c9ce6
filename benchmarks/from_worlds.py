"""`--from` worlds that generalize (section `from_worlds`, issue 16): a world built from each fact set of our own
making (`benchmarks.fact_sets`) and from CounterFact, with its build time and knowledge, the share of rewrite
prompts preferring `target_new` before any edit, and one round of 20 edits with NSE and with MEMIT using the
hyperparameters the world records (efficacy, generalization, specificity on those 20 requests).

Worlds are built fresh (portable numerics, one thread) under a scratch directory unless `--keep DIR` names one.
Run alone: `python -m benchmarks.from_worlds [--quick]` (quick: two sets of 60 records).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import counterfact_file, edit_state, load_results, offline_and_threads, save_results, say

ROUND_SIZE = 20
METHODS = ("nse", "memit")
TARGETS = {"accuracy": 0.95, "paraphrase_accuracy": 0.95, "efficacy": 0.9}  # what every world must meet
COUNTERFACT_LIMITS = (200, 500)


def measure_world(info) -> dict[str, Any]:
    """Knowledge, the pre-edit preference for target_new, and one round of ROUND_SIZE edits per method."""
    from editor.evaluate import evaluate_requests
    from editor.rounds import run_round

    requests = info.requests()
    batch = requests[:ROUND_SIZE]
    result: dict[str, Any] = {"records": info.n_facts, "build_seconds": info.build_seconds,
                              "accuracy": info.accuracy, "paraphrase_accuracy": info.paraphrase_accuracy,
                              "edit_hparams": info.edit_hparams, "neighbours_gated": info.neighbours_gated,
                              "methods": {}}
    for method in METHODS:
        state = edit_state(info, method)
        model, tokenizer = state.loaded.model, state.loaded.tokenizer
        if "before" not in result:
            before = evaluate_requests(model, tokenizer, requests).aggregate
            result["before"] = {k: before.get(k) for k in ("efficacy", "generalization", "specificity")}
        started = time.perf_counter()
        run_round(state, batch, method)
        seconds = time.perf_counter() - started
        after = evaluate_requests(model, tokenizer, batch).aggregate
        result["methods"][method] = {"edit_seconds": seconds,
                                     **{k: after.get(k) for k in ("efficacy", "generalization", "specificity")}}
        say(f"  {method}: efficacy {after['efficacy']:.2f}, generalization {after['generalization']:.2f}, "
            f"specificity {after['specificity']:.2f} ({seconds:.0f}s)")
    result["meets_targets"] = (info.accuracy >= TARGETS["accuracy"]
                               and info.paraphrase_accuracy >= TARGETS["paraphrase_accuracy"]
                               and result["methods"]["nse"]["efficacy"] >= TARGETS["efficacy"])
    return result


def run(quick: bool = False, keep: Path | None = None, counterfact_limits: tuple[int, ...] = COUNTERFACT_LIMITS,
        only: tuple[str, ...] = ()) -> dict[str, Any]:
    offline_and_threads()
    import torch

    from benchmarks.fact_sets import SPECS, write_sets
    from editor.world import build_world

    torch.set_num_threads(1)  # a world build takes one thread; so do the edits, to compare with it
    specs = tuple(s for s in SPECS if not only or s.name in only)
    records = 60 if quick else None
    if quick:
        specs, counterfact_limits = specs[:2], ()
    with tempfile.TemporaryDirectory(prefix="editledger-from-") as scratch:
        root = Path(keep) if keep else Path(scratch)
        sources = [(p.stem, p, None) for p in write_sets(root / "sets", specs, records=records)]
        sources += [(f"counterfact-{n}", counterfact_file(), n) for n in counterfact_limits
                    if not only or f"counterfact-{n}" in only]
        worlds: dict[str, Any] = {}
        for name, path, limit in sources:
            say(f"from_worlds: building {name}")
            info = build_world(root / "worlds" / name, preset="default", from_file=path, limit=limit,
                               progress=False)
            say(f"  built in {info.build_seconds:.0f}s: knows {info.accuracy:.3f} / {info.paraphrase_accuracy:.3f}")
            worlds[name] = {"source": "counterfact" if limit else "fact_sets", **measure_world(info)}
    spec_rows = {s.name: {k: v for k, v in vars(s).items() if k != "name"} for s in specs}
    return {"round_size": ROUND_SIZE, "targets": TARGETS, "specs": spec_rows, "worlds": worlds,
            "threads": 1, "quick": quick}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--keep", type=Path, help="build the sets and worlds here and keep them (a cache)")
    parser.add_argument("--counterfact", default=",".join(map(str, COUNTERFACT_LIMITS)),
                        help="CounterFact sizes to build, comma-separated ('' for none)")
    parser.add_argument("--only", default="", help="build and measure only these worlds, comma-separated "
                        "(fact set names, counterfact-N); with --keep, to fill a cache in several processes")
    args = parser.parse_args()
    limits = tuple(int(n) for n in args.counterfact.split(",") if n)
    started = time.perf_counter()
    data = run(quick=args.quick, keep=args.keep, counterfact_limits=limits,
               only=tuple(n for n in args.only.split(",") if n))
    earlier = load_results("from_worlds") if args.only else None
    if earlier is not None and earlier["quick"] == args.quick:  # a partial run updates its rows, keeps the others
        data = {**data, "specs": {**earlier["data"]["specs"], **data["specs"]},
                "worlds": {**earlier["data"]["worlds"], **data["worlds"]}}
    print(save_results("from_worlds", data, args.quick, time.perf_counter() - started))


if __name__ == "__main__":
    main()
