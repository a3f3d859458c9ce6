"""Speed: seconds per edit by method and batch size, the engine's own speed goals, and the lifecycle's costs.

- Seconds per edit: `run_round` on a fact world's model (no ledger), by method and round size.
- Engine goals (z* batched vs one at a time, statistics of all layers in one pass): `benchmarks.engine_speed.run`.
- Lifecycle, on a real SQLite ledger: checkout of a version vs loading the base model with `from_pretrained`
  (goal: within 1.3x), replay with cached z* vs the original edits (goal: <= 0.3x), revert cost by the
  reverted round's position.

Run alone: `python -m benchmarks.lifecycle_speed [--quick]`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    edit_state,
    median_seconds,
    offline_and_threads,
    say,
    section_main,
    workspace,
    world,
)

METHODS = ("nse", "memit", "memit-cp", "alphaedit")
CHECKOUT_GOAL = 1.3
REPLAY_GOAL = 0.3


def seconds_per_edit(info, batch_sizes: tuple[int, ...], edits_per_setting: int) -> list[dict[str, Any]]:
    """Mean seconds per edit over enough rounds to edit `edits_per_setting` requests (at least two rounds)."""
    from editor.rounds import run_round

    requests = info.requests()
    rows = []
    settings = [(method, size) for method in METHODS for size in batch_sizes] + [("rome", 1)]
    for method, size in settings:
        state = edit_state(info, method)
        n_rounds = max(2, edits_per_setting // size) if method != "rome" else max(2, min(10, edits_per_setting))
        times = []
        for number in range(n_rounds):
            batch = requests[number * size : (number + 1) * size]
            started = time.perf_counter()
            run_round(state, batch, method)
            times.append(time.perf_counter() - started)
        row = {"method": method, "batch_size": size, "rounds": n_rounds,
               "seconds_per_round": statistics.mean(times), "seconds_per_edit": sum(times) / (n_rounds * size)}
        rows.append(row)
        say(f"speed: {method} batch {size}: {row['seconds_per_edit']:.3f} s/edit over {n_rounds} rounds")
    return rows


def _round_times(messages: list[tuple[float, str]], prefix: str, finished: float) -> list[float]:
    """Per-round durations from the timestamps of the lifecycle's progress messages starting with `prefix`."""
    starts = [t for t, message in messages if message.startswith(prefix)]
    return [b - a for a, b in zip(starts, [*starts[1:], finished], strict=True)]


def lifecycle_costs(info, n_rounds: int, round_size: int, repeats: int) -> dict[str, Any]:
    """Edit `n_rounds` NSE rounds into a fresh ledger, then time checkout, replay and revert against it."""
    from editor.model import load_model

    requests = info.requests()[: n_rounds * round_size]
    with tempfile.TemporaryDirectory(prefix="editledger-bench-") as tmp:
        root = Path(tmp)
        space = workspace(root, info)
        messages: list[tuple[float, str]] = []
        space.say = lambda message: messages.append((time.perf_counter(), message))

        started = time.perf_counter()
        versions = space.edit(requests, method="nse", batch_size=round_size)
        edit_total = time.perf_counter() - started
        edit_rounds = _round_times(messages, "round ", time.perf_counter())
        say(f"speed: lifecycle edit of {len(requests)} requests in {n_rounds} rounds: {edit_total:.1f}s")

        load_seconds = median_seconds(lambda: load_model(info.model_dir, device="cpu"), repeats)
        checkout_seconds = {
            str(depth): median_seconds(lambda v=version: space.checkout_model(v.commit_hash), repeats)
            for depth, version in enumerate(versions, 1) if depth in (1, len(versions))
        }
        say(f"speed: load {load_seconds:.3f}s, checkout {checkout_seconds}")

        messages.clear()
        started = time.perf_counter()
        steps = space.replay_same_base(versions[-1].commit_hash)
        replay_total = time.perf_counter() - started
        ends = [t for t, _ in messages]  # one message after each replayed version
        replay_rounds = [b - a for a, b in zip([started, *ends[:-1]], ends, strict=True)]
        say(f"speed: replay {replay_total:.1f}s vs edit {edit_total:.1f}s")

        reverts = []
        for position, version in enumerate(versions, 1):
            branch = f"revert-{position}"
            space.ledger.create_branch(branch, at=versions[-1].commit_hash)
            started = time.perf_counter()
            space.revert(version.commit_hash, branch=branch)
            seconds = time.perf_counter() - started
            reverts.append({"position": position, "rounds_replayed": n_rounds - position, "seconds": seconds})
            say(f"speed: revert of round {position}/{n_rounds}: {seconds:.1f}s")
        space.ledger.close()
    return {
        "n_rounds": n_rounds, "round_size": round_size, "method": "nse",
        "edit_seconds_total": edit_total, "edit_seconds_per_round": edit_rounds,
        "load_seconds": load_seconds, "checkout_seconds": checkout_seconds,
        "checkout_ratio": max(checkout_seconds.values()) / load_seconds, "checkout_goal": CHECKOUT_GOAL,
        "replay_seconds_total": replay_total, "replay_seconds_per_round": replay_rounds,
        "replay_same_hash": all(step.ok for step in steps),
        "replay_ratio": replay_total / edit_total, "replay_goal": REPLAY_GOAL,
        "replay_round_ratio": (statistics.median(replay_rounds) / statistics.median(edit_rounds)
                               if replay_rounds and edit_rounds else None),
        "reverts": reverts,
    }


def run(quick: bool = False) -> dict[str, Any]:
    offline_and_threads()
    from benchmarks import engine_speed

    info = world("small" if quick else "default")
    data: dict[str, Any] = {"world": {"preset": info.preset, "n_facts": info.n_facts}}
    say("speed: seconds per edit by method and batch size")
    data["per_edit"] = seconds_per_edit(info, (25,) if quick else (1, 10, 50, 100), 50 if quick else 100)
    say("speed: lifecycle (checkout, replay, revert)")
    data["lifecycle"] = lifecycle_costs(info, n_rounds=3 if quick else 5, round_size=25 if quick else 50,
                                        repeats=3 if quick else 5)
    say("speed: engine_speed.run")
    data["engine"] = engine_speed.run(quick=quick)
    return data


if __name__ == "__main__":
    section_main("speed", run, __doc__.splitlines()[0])
