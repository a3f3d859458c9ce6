"""Storage at real size: bytes per edit and per round of a ledger on a real model (the demo's SmolLM2 ledger, say),
against the floor (the changed values alone), from the ledger's artifact rows and recorded changes.

`python -m benchmarks.real_storage --ledger .demo/ledger --name smollm2` adds (or replaces) that model's row in
benchmarks/results/storage_real.json; `python -m benchmarks --report-only` shows it in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from editor.artifacts import changes_from_tensors, get_tensors
from ledger import Ledger

RESULTS = Path(__file__).resolve().parent / "results" / "storage_real.json"


def measure(ledger_dir: Path, branch: str = "main") -> dict[str, Any]:
    """Per edit version of `branch`: requests, changed columns, floor bytes, stored bytes by artifact role."""
    ledger = Ledger.open(Path(ledger_dir))
    rounds = []
    for version in reversed(ledger.log(branch, limit=100000)):
        if version.kind != "edit":
            continue
        shown = ledger.show(version.commit_hash)
        by_role: dict[str, int] = {}
        for artifact in shown.artifacts:
            role = artifact.role.split(".")[0]
            by_role[role] = by_role.get(role, 0) + artifact.size_bytes
        delta = next((a for a in shown.artifacts if a.role == "delta"), None)
        changes = changes_from_tensors(get_tensors(ledger.store, delta.sha256)).values() if delta else []
        rounds.append({"requests": len(shown.requests), "columns": sum(len(c.columns) for c in changes),
                       "floor_bytes": sum(c.new.numel() * c.new.element_size() for c in changes),
                       "bytes_by_role": by_role})
    edits = sum(r["requests"] for r in rounds) or 1
    per_edit = lambda key: sum(r[key] for r in rounds) / edits  # noqa: E731
    roles = sorted({role for r in rounds for role in r["bytes_by_role"]})
    return {"rounds": len(rounds), "edits": edits, "columns_per_edit": per_edit("columns"),
            "floor_bytes_per_edit": per_edit("floor_bytes"),
            "bytes_per_edit_by_role": {role: sum(r["bytes_by_role"].get(role, 0) for r in rounds) / edits
                                       for role in roles},
            "per_round": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ledger", type=Path, required=True)
    parser.add_argument("--name", required=True, help="the row's name: the model and setting")
    parser.add_argument("--note", default="", help="how the ledger was made")
    args = parser.parse_args()
    saved = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.is_file() else {"models": {}}
    saved["models"][args.name] = {**measure(args.ledger), "note": args.note}
    RESULTS.write_text(json.dumps(saved, indent=1, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
