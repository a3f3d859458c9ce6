"""The fact world and the evaluation suite, measured as issue 4 asks (section `world`).

- Build time and knowledge of the `tiny` preset (built fresh here) and of the `default` world (its recorded build).
- On the default world, 10 rounds of 20 counterfactual edits with NSE, and the same edits with MEMIT: efficacy,
  generalization, specificity, fluency, perplexity change and retention after the last round, with the suite's
  published definitions (`editor.evaluate`), through `benchmarks.quality.run_sequence`.

Run alone: `python -m benchmarks.world_protocol [--quick]`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import offline_and_threads, say, section_main, world
from benchmarks.quality import METHODS, run_sequence

ROUNDS, ROUND_SIZE = 10, 20
COMPARED = ("nse", "memit")


def _world_facts(info) -> dict[str, Any]:
    return {"preset": info.preset, "n_facts": info.n_facts, "build_seconds": info.build_seconds,
            "accuracy": info.accuracy, "paraphrase_accuracy": info.paraphrase_accuracy,
            "state_hash": info.state_hash}


def run(quick: bool = False) -> dict[str, Any]:
    offline_and_threads()
    from editor.world import build_world

    with tempfile.TemporaryDirectory(prefix="editledger-world-") as scratch:
        say("world: building the tiny preset from scratch")
        tiny = _world_facts(build_world(Path(scratch) / "tiny", preset="tiny", progress=False, force=True))
    name = "small" if quick else "default"
    info = world(name)
    requests = info.requests()[: ROUNDS * ROUND_SIZE]
    runs = {}
    for variant in (v for v in METHODS if v.name in COMPARED):
        say(f"world: {name} / {variant.name}: {ROUNDS} rounds of {ROUND_SIZE}")
        runs[variant.name] = run_sequence(info, variant, requests, ROUND_SIZE)
    return {"worlds": {"tiny": tiny, name: _world_facts(info)}, "edited_world": name, "rounds": ROUNDS,
            "round_size": ROUND_SIZE, "runs": runs}


if __name__ == "__main__":
    section_main("world", run, __doc__.splitlines()[0])
