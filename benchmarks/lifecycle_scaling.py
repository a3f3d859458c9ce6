"""Scaling: how the lifecycle's operations grow with the length of a history.

On the tiny fact world, for N rounds of one request each (N = 10, 40, 160; quick: 10, 40), each operation's wall
time and SQL statement count (a `before_cursor_execute` listener, `ledger.db.StatementCounter`):

- revert of the first round (replays N-1 rounds) and of the last one (replays nothing), each on its own branch;
- `replay_same_base` (recomputes N rounds), `replay --onto` a second release of the model (N rounds, recorded);
- checkout (first: reads every round's change; again: from the snapshot it kept), `log` (a page), `show`,
  measured first, so the reverts find the head's snapshot as they would after any checkout;
- append (one more edit round at the head).

Growth per doubling = (value at N2 / value at N1) ^ (1 / log2(N2 / N1)): about 2 for an operation that must
replay N rounds, about 1 for the rest. The tiny world has 24 facts; rounds cycle through them, each round's
request made distinct by its `case_id`.

Run alone: `python -m benchmarks.lifecycle_scaling [--quick]`.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.common import WORLDS_DIR, offline_and_threads, say, section_main, workspace

FULL_SIZES = (10, 40, 160)
QUICK_SIZES = (10, 40)
REPLAY_OPS = ("revert_first", "replay_same_base", "replay_onto")  # must recompute N rounds
ORDER = (*REPLAY_OPS, "revert_last", "append", "checkout", "checkout_again", "log", "show")


def tiny_worlds():
    """The tiny fact world and a second release of it (same facts, another training seed), cached."""
    from editor.world import build_world

    first = build_world(WORLDS_DIR / "tiny", preset="tiny", seed=0, train_seed=0, progress=False)
    second = build_world(WORLDS_DIR / "tiny-release2", preset="tiny", seed=0, train_seed=1, progress=False)
    return first, second


def distinct_requests(info, n: int) -> list:
    facts = info.requests()
    return [replace(facts[i % len(facts)], case_id=f"scaling-{i}") for i in range(n)]


def measure(engine, fn: Callable[[], object]) -> dict[str, float]:
    from ledger.db import StatementCounter

    with StatementCounter(engine) as counter:
        started = time.perf_counter()
        fn()
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "statements": counter.count}


def at_size(info, release2, n: int) -> dict[str, dict[str, float]]:
    requests = distinct_requests(info, n + 1)
    with tempfile.TemporaryDirectory(prefix="editledger-scaling-") as tmp:
        space = workspace(Path(tmp), info, name="tiny")
        ledger = space.ledger
        started = time.perf_counter()
        space.edit(requests[:n], batch_size=1, author="bench")
        say(f"scaling: N={n}: edited {n} rounds in {time.perf_counter() - started:.1f}s")
        head = ledger.resolve("main").commit_hash
        ledger.create_branch("revert-first", head)
        ledger.create_branch("revert-last", head)
        ops: dict[str, dict[str, float]] = {}
        ops["checkout"] = measure(ledger.engine, lambda: space.checkout_model("main"))  # reads every change
        ops["checkout_again"] = measure(ledger.engine, lambda: space.checkout_model("main"))  # its snapshot
        ops["log"] = measure(ledger.engine, lambda: ledger.log("main", limit=20))
        ops["show"] = measure(ledger.engine, lambda: ledger.show("main"))
        ops["revert_first"] = measure(ledger.engine, lambda: space.revert(requests[0].request_key,
                                                                          branch="revert-first"))
        ops["revert_last"] = measure(ledger.engine, lambda: space.revert(requests[n - 1].request_key,
                                                                         branch="revert-last"))
        ops["replay_same_base"] = measure(ledger.engine, lambda: space.replay_same_base("main"))
        ops["replay_onto"] = measure(ledger.engine, lambda: space.replay_onto(
            "main", release2.model_dir, base_name="release-2", new_branch="release-2"))
        ops["append"] = measure(ledger.engine, lambda: space.edit([requests[n]], batch_size=1, author="bench"))
        ledger.close()
    for name, row in ops.items():
        say(f"scaling: N={n}: {name}: {row['seconds']:.3f}s, {row['statements']} statements")
    return ops


def growth_per_doubling(rows: dict[int, dict[str, dict[str, float]]], op: str, measure_name: str) -> float | None:
    sizes = sorted(rows)
    small, large = sizes[0], sizes[-1]
    a, b = rows[small][op][measure_name], rows[large][op][measure_name]
    if a <= 0 or large == small:
        return None
    return (b / a) ** (1 / math.log2(large / small))


def run(quick: bool = False, sizes: tuple[int, ...] | None = None) -> dict[str, Any]:
    offline_and_threads()
    info, release2 = tiny_worlds()
    sizes = sizes or (QUICK_SIZES if quick else FULL_SIZES)
    rows = {n: at_size(info, release2, n) for n in sizes}
    ops = list(next(iter(rows.values())))
    growth = {
        op: {m: growth_per_doubling(rows, op, m) for m in ("seconds", "statements")} | {"replays_n": op in REPLAY_OPS}
        for op in ops
    }
    return {"world": "tiny", "sizes": list(sizes), "ops": {str(n): row for n, row in rows.items()}, "growth": growth}


def table(data: dict[str, Any]) -> str:
    sizes = data["sizes"]
    header = ["operation", *[f"N={n} s" for n in sizes], *[f"N={n} SQL" for n in sizes],
              "growth/doubling (time)", "growth/doubling (SQL)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for op in sorted(data["growth"], key=lambda name: ORDER.index(name) if name in ORDER else len(ORDER)):
        growth = data["growth"][op]
        cells = [op + (" (replays N)" if growth["replays_n"] else "")]
        cells += [f"{data['ops'][str(n)][op]['seconds']:.3f}" for n in sizes]
        cells += [str(data["ops"][str(n)][op]["statements"]) for n in sizes]
        cells += [f"{g:.2f}x" if g is not None else "–" for g in (growth["seconds"], growth["statements"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    section_main("scaling", run, __doc__.splitlines()[0])
