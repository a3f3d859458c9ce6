"""Build time and knowledge of the fact worlds too slow for the test suite: the default preset, and the true facts
of the first 500 CounterFact records. Run: `python -m benchmarks.world_build` (prints JSON)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from editor.world import build_world

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def run(presets: tuple[str, ...] = ("default",), counterfact_limit: int | None = 500) -> dict[str, Any]:
    """Build each world from scratch (force) in a temporary directory; report size, time and accuracies."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        builds: dict[str, dict[str, Any]] = {name: {"preset": name} for name in presets}
        if counterfact_limit:
            builds[f"counterfact-{counterfact_limit}"] = {
                "preset": "default", "from_file": DATA / "counterfact" / "counterfact-1936.json",
                "limit": counterfact_limit}
        for name, arguments in builds.items():
            info = build_world(Path(scratch) / name, progress=False, force=True, **arguments)
            results[name] = {"n_facts": info.n_facts, "build_seconds": round(info.build_seconds, 1),
                             "accuracy": info.accuracy, "paraphrase_accuracy": info.paraphrase_accuracy,
                             "state_hash": info.state_hash}
    return results


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
