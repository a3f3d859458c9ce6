"""`editledger report`: a static HTML audit report of one history, built from the ledger alone (no model).

The page (`index.html`) holds the version timeline (who, when, why, method, state hash; reverts and replays
marked), the scores, and every fact's history; the plots are PNG files beside it (a footprint heatmap of
layer x neuron and the score curves across versions), drawn with matplotlib's Agg canvas. Nothing is fetched:
the directory opens offline from the file system."""

from __future__ import annotations

import html
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ledger.api import Ledger
from ledger.errors import LedgerError
from ledger.infos import VersionDetail, VersionInfo
from ledger.values import utc_now

HEATMAP_FILE = "footprint.png"
CURVES_FILE = "scores.png"
SUMMARY_METRICS = ("efficacy", "generalization", "specificity")
KIND_COLOURS = {"revert": "#c0392b", "replay": "#8e44ad"}


@dataclass(frozen=True)
class ReportInfo:
    index: Path
    versions: int
    facts: int
    images: list[Path]
    seconds: float


@dataclass
class FactStory:
    key: str
    subject: str
    prompt: str
    target_true: str | None
    target_new: str
    round_number: int | None  # the edit round (1, 2, ...) that first made it
    events: list[tuple[int, str, str | None]]  # (version number, role, outcome status)
    live: bool = False
    efficacy: float | None = None  # at the newest version that scored it
    scored_at: int | None = None


def _e(value: Any) -> str:
    return html.escape(str(value if value is not None else ""))


def _d_ff(config: dict[str, Any]) -> int:
    """Width of the rewrite module (the footprint's neuron axis) from the base's config; 0 when unknown."""
    for key in ("n_inner", "intermediate_size", "ffn_dim", "d_ff"):
        if isinstance(config.get(key), int):
            return config[key]
    for key in ("n_embd", "hidden_size", "d_model"):
        if isinstance(config.get(key), int):
            return 4 * config[key]
    return 0


def _numbered(chain: list[VersionInfo]) -> dict[str, int]:
    return {v.commit_hash: number for number, v in enumerate(chain)}


def _stories(chain: list[VersionInfo], details: dict[str, VersionDetail]) -> dict[str, FactStory]:
    stories: dict[str, FactStory] = {}
    live: dict[str, None] = {}
    round_number = 0
    for number, version in enumerate(chain):
        detail = details[version.commit_hash]
        if version.kind in ("edit", "replay"):
            round_number += 1
        status_of = {o.request_key: o.status for o in detail.outcomes}
        for entry in detail.requests:
            r = entry.request
            story = stories.get(entry.request_key)
            if story is None:
                made = round_number if entry.role == "edited" or version.kind == "replay" else None
                story = stories[entry.request_key] = FactStory(
                    entry.request_key, r.subject, r.prompt, r.target_true, r.target_new, made, [])
            story.events.append((number, entry.role, status_of.get(entry.request_key)))
            if entry.role == "reverted":
                live.pop(entry.request_key, None)
            else:
                live[entry.request_key] = None
        for score in detail.scores:
            if score.request_key in stories and score.metric == "efficacy":
                stories[score.request_key].efficacy = score.value
                stories[score.request_key].scored_at = number
    for key in live:
        stories[key].live = True
    return stories


def _heatmap(chain: list[VersionInfo], details: dict[str, VersionDetail], d_ff: int, path: Path) -> str:
    touched: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for version in chain:
        per_layer: dict[int, set[int]] = defaultdict(set)
        for f in details[version.commit_hash].footprint:
            per_layer[f.layer].update(f.neurons)
        for layer, neurons in per_layer.items():
            for neuron in neurons:
                touched[layer][neuron] += 1  # versions that touched it, not passes
    figure = Figure(figsize=(10, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if not touched:
        axes.text(0.5, 0.5, "no version of this history changed a weight", ha="center", va="center")
        axes.set_axis_off()
        figure.savefig(path)
        return "No footprint recorded."
    layers = sorted(touched)
    seen = 1 + max(n for counts in touched.values() for n in counts)
    width = max(d_ff, seen)
    grid = np.zeros((len(layers), width))
    for row, layer in enumerate(layers):
        for neuron, count in touched[layer].items():
            grid[row, neuron] = count
    image = axes.imshow(grid, aspect="auto", interpolation="nearest", cmap="viridis",
                        extent=(-0.5, width - 0.5, len(layers) - 0.5, -0.5))
    axes.set_yticks(range(len(layers)), [f"L{layer}" for layer in layers])
    axes.set_xlabel("neuron (column of the rewrite module)")
    axes.set_ylabel("layer")
    axes.set_title("footprint: how many versions touched each neuron")
    figure.colorbar(image, ax=axes, label="versions")
    figure.tight_layout()
    figure.savefig(path)
    total = sum(len(counts) for counts in touched.values())
    most = max(max(counts.values()) for counts in touched.values())
    return (f"{total} distinct neurons touched in {len(layers)} layers (of {width} per layer); "
            f"the most-touched neuron was changed by {most} versions.")


def _curves(chain: list[VersionInfo], details: dict[str, VersionDetail], stories: dict[str, FactStory],
            path: Path) -> list[tuple[int, dict[str, float], dict[int, float]]]:
    """Summary scores per scored version and, per round, the mean efficacy of that round's facts (retention)."""
    points: list[tuple[int, dict[str, float], dict[int, float]]] = []
    for number, version in enumerate(chain):
        scores = details[version.commit_hash].scores
        summary = {s.metric: s.value for s in scores if s.request_key is None and s.metric in SUMMARY_METRICS}
        by_round: dict[int, list[float]] = defaultdict(list)
        for s in scores:
            story = stories.get(s.request_key or "")
            if s.metric == "efficacy" and story is not None and story.round_number is not None:
                by_round[story.round_number].append(s.value)
        if summary or by_round:
            points.append((number, summary, {r: sum(v) / len(v) for r, v in sorted(by_round.items())}))
    figure = Figure(figsize=(10, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    for metric in SUMMARY_METRICS:
        xs = [n for n, summary, _ in points if metric in summary]
        left.plot(xs, [summary[metric] for n, summary, _ in points if metric in summary], marker="o", label=metric)
    rounds = sorted({r for _, _, by_round in points for r in by_round})
    for r in rounds:
        xs = [n for n, _, by_round in points if r in by_round]
        right.plot(xs, [by_round[r] for n, _, by_round in points if r in by_round], marker="o", label=f"round {r}")
    for axes, title in ((left, "scores of the history's facts"), (right, "retention: efficacy of each round")):
        for number, version in enumerate(chain):
            if version.kind in KIND_COLOURS:
                axes.axvline(number, color=KIND_COLOURS[version.kind], linestyle="--", linewidth=1)
                axes.text(number, 1.02, version.kind, color=KIND_COLOURS[version.kind], ha="center", fontsize=8)
        axes.set_xlim(-0.5, len(chain) - 0.5)
        axes.set_ylim(-0.02, 1.1)
        axes.set_xlabel("version (0 = base)")
        axes.set_title(title, fontsize=10, pad=14)
        if axes.lines and any(line.get_label()[:1] != "_" for line in axes.lines):
            axes.legend(fontsize=7, loc="lower left")
    if not points:
        left.text(len(chain) / 2, 0.5, "no scores recorded (editledger eval REF)", ha="center")
    figure.tight_layout()
    figure.savefig(path)
    return points


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
code { font-size: 0.85em; word-break: break-all; }
tr.kind-revert { background: #fbe9e7; } tr.kind-replay { background: #f3e5f5; } tr.kind-base { background: #eef; }
.badge { padding: 0 0.4em; border-radius: 0.3em; color: white; background: #555; }
.badge.revert { background: #c0392b; } .badge.replay { background: #8e44ad; } .badge.edit { background: #27ae60; }
.gone { color: #c0392b; } img { max-width: 100%; border: 1px solid #ddd; }
"""


def _timeline(chain: list[VersionInfo], details: dict[str, VersionDetail], numbers: dict[str, int],
              stories: dict[str, FactStory]) -> str:
    rows = []
    for number, v in enumerate(chain):
        detail = details[v.commit_hash]
        roles: dict[str, int] = defaultdict(int)
        for entry in detail.requests:
            roles[entry.role] += 1
        what = ", ".join(f"{count} {role}" for role, count in roles.items()) or "—"
        notes = []
        if v.kind == "revert":
            gone = [stories[e.request_key] for e in detail.requests if e.role == "reverted"]
            notes += [f"reverted {_e(s.subject)} → {_e(s.target_new)} (<code>{s.key[:12]}</code>)" for s in gone]
            anchor = v.extra.get("anchor")
            if anchor:
                notes.append(f"replayed from version {numbers.get(anchor, '?')} (<code>{_e(anchor[:12])}</code>)")
        if v.kind == "replay" and v.extra.get("replay_of"):
            notes.append(f"replay of <code>{_e(v.extra['replay_of'][:12])}</code>")
        if detail.tags:
            notes.append("tags: " + ", ".join(_e(t) for t in detail.tags))
        rows.append(
            f'<tr class="version kind-{_e(v.kind)}" id="v{number}">'
            f"<td>{number}</td><td><code>{_e(v.commit_hash)}</code></td>"
            f'<td><span class="badge {_e(v.kind)}">{_e(v.kind)}</span></td><td>{_e(v.method or "")}</td>'
            f"<td>{what}</td><td>{_e(v.author)}</td><td>{_e(v.created_at[:19])}</td><td>{_e(v.reason)}"
            + ("<br>" + "<br>".join(notes) if notes else "")
            + f"</td><td><code>{_e(v.state_hash)}</code></td></tr>"
        )
    return (
        '<table id="timeline"><thead><tr><th>#</th><th>commit</th><th>kind</th><th>method</th><th>requests</th>'
        "<th>who</th><th>when (UTC)</th><th>why</th><th>state hash</th></tr></thead><tbody>"
        + "\n".join(rows)
        + "</tbody></table>"
    )


def _scores_table(points: list[tuple[int, dict[str, float], dict[int, float]]], chain: list[VersionInfo]) -> str:
    if not points:
        return "<p>No scores recorded in this history (<code>editledger eval REF</code> records them).</p>"
    rounds = sorted({r for _, _, by_round in points for r in by_round})
    head = "".join(f"<th>{m}</th>" for m in SUMMARY_METRICS) + "".join(f"<th>round {r}</th>" for r in rounds)
    rows = []
    for number, summary, by_round in points:
        cells = "".join(f"<td>{summary[m]:.3f}</td>" if m in summary else "<td></td>" for m in SUMMARY_METRICS)
        cells += "".join(f"<td>{by_round[r]:.3f}</td>" if r in by_round else "<td></td>" for r in rounds)
        rows.append(f"<tr><td>{number}</td><td><code>{_e(chain[number].commit_hash[:12])}</code></td>{cells}</tr>")
    return (f'<table id="scores"><thead><tr><th>#</th><th>commit</th>{head}</tr></thead><tbody>'
            + "".join(rows) + "</tbody></table>")


def _facts_table(stories: dict[str, FactStory], chain: list[VersionInfo]) -> str:
    rows = []
    for s in stories.values():
        events = " · ".join(f"{role} in {number}" + (f" ({status})" if status else "")
                            for number, role, status in s.events)
        state = "in effect" if s.live else '<span class="gone">reverted</span>'
        efficacy = f"{s.efficacy:.2f} at {s.scored_at}" if s.efficacy is not None else ""
        rows.append(
            f'<tr class="fact" id="fact-{s.key[:12]}"><td><code>{s.key[:12]}</code></td><td>{_e(s.subject)}</td>'
            f"<td>{_e(s.prompt.replace('{}', s.subject))}</td><td>{_e(s.target_true or '?')} → {_e(s.target_new)}"
            f"</td><td>{s.round_number or ''}</td><td>{events}</td><td>{state}</td><td>{efficacy}</td></tr>"
        )
    return (
        '<table id="facts"><thead><tr><th>request</th><th>subject</th><th>prompt</th><th>old → new</th>'
        "<th>round</th><th>history (version numbers)</th><th>at the head</th><th>efficacy</th></tr></thead>"
        "<tbody>" + "\n".join(rows) + "</tbody></table>"
    )


def build_report(ledger: Ledger, out: Path, ref: str = "main") -> ReportInfo:
    """Write `out/index.html` and its plots for the history of `ref`; returns what was written."""
    started = time.perf_counter()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LedgerError(f"--out {out}: exists and is not a directory")
    chain = ledger.ancestry(ref)
    details = {v.commit_hash: ledger.show(v.commit_hash) for v in chain}
    base = ledger.base_model(chain[0].base_model)
    numbers = _numbered(chain)
    stories = _stories(chain, details)
    out.mkdir(parents=True, exist_ok=True)
    heatmap_note = _heatmap(chain, details, _d_ff(base.config), out / HEATMAP_FILE)
    points = _curves(chain, details, stories, out / CURVES_FILE)
    head = chain[-1]
    live = sum(s.live for s in stories.values())
    marks = [f"{n} ({v.kind})" for n, v in enumerate(chain) if v.kind in KIND_COLOURS]
    seconds = time.perf_counter() - started
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>editledger audit report: {_e(ref)}</title>
<style>{STYLE}</style></head><body>
<h1>editledger audit report: {_e(ref)}</h1>
<p>Ledger <code>{_e(ledger.ledger_id)}</code>, head <code>{_e(head.commit_hash)}</code> ({_e(head.kind)}),
base model <b>{_e(base.name)}</b> (state <code>{_e(base.state_hash)}</code>).
{len(chain)} versions; {len(stories)} facts edited, {live} in effect at the head;
reverts and replays: {_e(", ".join(marks) or "none")}. Written {_e(utc_now()[:19])} UTC in
<span id="build-seconds">{seconds:.2f}</span> s from the ledger alone.</p>
<h2>Timeline</h2>
{_timeline(chain, details, numbers, stories)}
<h2>Footprint</h2>
<p>{_e(heatmap_note)}</p>
<img id="heatmap" src="{HEATMAP_FILE}" alt="footprint heatmap: layer x neuron, versions that touched each">
<h2>Scores</h2>
<img id="curves" src="{CURVES_FILE}" alt="score curves across versions, reverts and replays marked">
{_scores_table(points, chain)}
<h2>Facts</h2>
{_facts_table(stories, chain)}
</body></html>
"""
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return ReportInfo(index, len(chain), len(stories), [out / HEATMAP_FILE, out / CURVES_FILE],
                      time.perf_counter() - started)
