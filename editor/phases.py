"""Where a round's time goes: the shared steps are named phases, timed only while a caller (a benchmark) asks.

A phase inside another counts for the outer one alone, so the totals add up to the time spent in phases.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import torch

P = ParamSpec("P")
R = TypeVar("R")

_totals: dict[str, float] | None = None  # seconds per phase while `timing_phases` is open
_depth = 0


def _synchronize() -> None:
    """Work queued on an accelerator belongs to the phase that queued it."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def phase(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: the function's calls count as phase `name`."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            global _depth
            if _totals is None or _depth:
                return function(*args, **kwargs)
            _synchronize()
            started = time.perf_counter()
            _depth += 1
            try:
                return function(*args, **kwargs)
            finally:
                _depth -= 1
                _synchronize()
                _totals[name] = _totals.get(name, 0.0) + time.perf_counter() - started

        return timed

    return decorate


@contextmanager
def timing_phases() -> Iterator[dict[str, float]]:
    """Seconds per phase of everything run inside the block (filled in as it runs)."""
    global _totals
    _totals = {}
    try:
        yield _totals
    finally:
        _totals = None
