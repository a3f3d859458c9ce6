"""The formatting helpers every report module shares: numbers, tables, verdicts, environment lines, the Goal
record, paths into results and plots drawn with their command and environment."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.real_sequence import SCORED as REAL_SEQUENCE_SCORED


@dataclass(frozen=True)
class Goal:
    name: str
    target: str
    measured: str
    met: bool | None  # None: not measured


# ------------------------------------------------------------------ small formatting helpers
def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 10_000 or abs(value) < 10 ** -digits):
            return f"{value:.3g}"
        return f"{value:,.{digits}f}"
    return str(value)


def table(header: list[str], rows: Iterable[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(met: bool | None) -> str:
    return "not measured" if met is None else ("**met**" if met else "**not met**")


def env_line(record: dict[str, Any]) -> str:
    env = record.get("environment", {})
    return (f"`{record.get('command', '?')}` · Python {env.get('python', '?')}, torch {env.get('torch', '?')}, "
            f"torch threads {env.get('threads', '?')}, {env.get('cpu', '?')}, {env.get('date', '?')}"
            + (" · **quick run**" if record.get("quick") else ""))


def get_path(mapping: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(mapping, dict) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


# ------------------------------------------------------------------ plots and paths
def figure(record: dict[str, Any], draw: Callable[[Any], None], path: Path, size=(6.4, 4.2)) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=size)
    draw(figure)
    env = record.get("environment", {})
    footer = (f"{record.get('command', '?')} | Python {env.get('python', '?')}, torch {env.get('torch', '?')}, "
              f"torch threads {env.get('threads', '?')} | {env.get('cpu', '?')} | {env.get('date', '?')}"
              + (" | QUICK" if record.get("quick") else ""))
    figure.text(0.01, 0.005, footer, fontsize=5.5, color="0.35", ha="left", va="bottom")
    figure.tight_layout(rect=(0, 0.035, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def rel_path(path: Path, out: Path) -> str:
    return os.path.relpath(path, out.parent).replace(os.sep, "/")


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def pct_triple(scores: dict[str, float | None], metrics: tuple[str, ...] = REAL_SEQUENCE_SCORED) -> str:
    return " / ".join(pct(scores.get(metric)) for metric in metrics)


def section_data(title: str, record: dict[str, Any] | None, command: str,
                 needs: str | None = None) -> tuple[list[str], dict[str, Any] | None]:
    """A section's heading, the line naming where its results were measured, and their data; without data (or
    without its `needs` key), the heading and "Not run (`command`)" with None."""
    data = (record or {}).get("data")
    if not data or (needs is not None and not data.get(needs)):
        return [f"## {title}", "", f"Not run (`{command}`).", ""], None
    return [f"## {title}", "", env_line(record), ""], data
