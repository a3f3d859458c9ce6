"""BENCHMARKS.md and its plots, written from the sections' saved results (no measuring here): the goals, the
findings and `write_report`, which puts together the fact-world sections (`benchmarks.report_world`), the costs
(`benchmarks.report_costs`) and the real-model sections (`benchmarks.report_real*`).

`write_report(results, out, plots_dir)` takes `{section: record}` where a record is what
`benchmarks.common.save_results` wrote: `{"quick", "seconds", "command", "environment", "data"}`. Missing sections
are reported as not run. Every figure carries the command and environment that produced its numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.real_sequence import RESULTS_PREFIX as REAL_SEQUENCE_PREFIX
from benchmarks.report_costs import (
    QUERY_GOAL_MS,
    gpu_section,
    ledger_section,
    query_rows,
    remote_store_section,
    scaling_section,
    speed_section,
    storage_section,
)
from benchmarks.report_format import (
    Goal,
    fmt,
    get_path,
    pct_triple,
    table,
    verdict,
)
from benchmarks.report_real import paper_claim, real_sequence_finding, real_sequence_section
from benchmarks.report_real_costs import real_lifecycle_lines, real_storage_lines
from benchmarks.report_real_settings import c0_real_section, trace_real_section
from benchmarks.report_world import (
    from_worlds_section,
    ordered_runs,
    ordered_worlds,
    quality_section,
    spread_section,
    world_section,
)

SECTIONS = ("quality", "world", "speed", "storage", "ledger", "scaling")
CLAIM_MIN_EFFICACY = 0.5


# ------------------------------------------------------------------ goals and findings
def _final(record: dict[str, Any] | None, variant: str) -> dict[str, Any] | None:
    worlds = get_path(record, "data", "worlds") or {}
    if not worlds:
        return None
    return get_path(ordered_worlds(worlds)[0][1], "runs", variant, "final")


def _ratio_goal(name: str, value: float | None, goal: float, at_most: bool, unit: str = "x") -> Goal:
    if value is None:
        return Goal(name, f"{'≤' if at_most else '≥'} {goal}{unit}", "–", None)
    met = value <= goal if at_most else value >= goal
    return Goal(name, f"{'≤' if at_most else '≥'} {goal}{unit}", f"{value:.2f}{unit}", met)


def engine_speedups(engine: dict[str, Any] | None) -> tuple[float | None, float | None]:
    """(z* batched speedup, statistics one-pass speedup) from `benchmarks.engine_speed.run`'s dict."""
    return get_path(engine, "zstar", "speedup"), get_path(engine, "stats", "speedup")




def goals(results: dict[str, dict[str, Any]]) -> list[Goal]:
    speed = get_path(results.get("speed"), "data") or {}
    lifecycle = speed.get("lifecycle") or {}
    zstar, stats = engine_speedups(speed.get("engine"))
    out = [
        _ratio_goal("checkout of a version vs `from_pretrained` of the base", lifecycle.get("checkout_ratio"),
                    lifecycle.get("checkout_goal", 1.3), at_most=True),
        _ratio_goal("replay with cached z* vs the original edits", lifecycle.get("replay_ratio"),
                    lifecycle.get("replay_goal", 0.3), at_most=True),
        _ratio_goal("z* batched vs one request at a time (32 requests)", zstar, 5, at_most=False),
        _ratio_goal("statistics: all layers in one pass vs one pass per layer", stats, 3, at_most=False),
    ]
    scale = get_path(results.get("checkout_scale"), "data")
    if scale:
        out.insert(1, _ratio_goal(f"{scale['parameters'] / 1e9:.1f}B-parameter model (GPT2-XL shape): checkout of a "
                                  "version vs `from_pretrained`", scale["ratio"], scale["goal"], at_most=True))
    big_checkout = get_path(speed.get("engine"), "checkout")
    if big_checkout:
        out.insert(1, _ratio_goal(f"{get_path(speed.get('engine'), 'parameters') / 1e6:.0f}M-parameter model: checkout "
                                  "of a version vs `from_pretrained`", big_checkout["ratio"], big_checkout["goal"],
                                  at_most=True))
    queries = [r for r in query_rows(get_path(results.get("ledger"), "data")) if r["metric"].endswith("_ms")]
    if queries:
        worst = max(queries, key=lambda r: r["value"])
        out.append(Goal("each ledger query at the measured size", f"< {QUERY_GOAL_MS:.0f} ms",
                        f"slowest {worst['value']:.1f} ms ({worst['backend']} {worst['metric']})",
                        worst["value"] < QUERY_GOAL_MS))
    else:
        out.append(Goal("each ledger query at 100,000 versions", f"< {QUERY_GOAL_MS:.0f} ms", "–", None))
    nse, memit = _final(results.get("quality"), "nse"), _final(results.get("quality"), "memit")
    if nse and memit:
        keeps = (nse.get("efficacy") or 0) >= CLAIM_MIN_EFFICACY and \
            (nse.get("retention_first") or 0) >= (memit.get("retention_first") or 0) and \
            (nse.get("specificity") or 0) >= (memit.get("specificity") or 0)
        out.append(Goal("paper's claim: after the sequence NSE keeps earlier edits and specificity at least as "
                        "well as MEMIT", f"NSE efficacy ≥ {CLAIM_MIN_EFFICACY}, NSE ≥ MEMIT on retention and "
                        "specificity",
                        f"NSE efficacy {fmt(nse.get('efficacy'))}; "
                        f"retention {fmt(nse.get('retention_first'))} vs {fmt(memit.get('retention_first'))}; "
                        f"specificity {fmt(nse.get('specificity'))} vs {fmt(memit.get('specificity'))}", keeps))
    claim = paper_claim(sequence_records(results))
    if claim is not None:
        out.append(Goal(f"paper's claim on the real model: after {claim.edits:,} CounterFact edits NSE is ahead of "
                        "MEMIT, each at its swept setting", "NSE ≥ MEMIT on efficacy, generalization and specificity",
                        f"{claim.labels[0]} {pct_triple(claim.rows[0]['all_scores'])} vs {claim.labels[1]} "
                        f"{pct_triple(claim.rows[1]['all_scores'])}", claim.met))
    return out


def sequence_records(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The real_sequence results files, by their name after the prefix."""
    return {name.removeprefix(REAL_SEQUENCE_PREFIX): record for name, record in results.items()
            if name.startswith(REAL_SEQUENCE_PREFIX) and record}


def findings(results: dict[str, dict[str, Any]], goal_list: list[Goal]) -> list[str]:
    """The findings at the top, written from the numbers."""
    lines = []
    real = real_sequence_finding(sequence_records(results))
    if real:
        lines.append(real)
    quality = results.get("quality")
    worlds = get_path(quality, "data", "worlds") or {}
    if worlds:
        world_name, block = ordered_worlds(worlds)[0]
        finals = {name: run["final"] for name, run in ordered_runs(block["runs"]).items()}
        longest = max(final.get("n_edited") or 0 for final in finals.values())
        retention = {name: final.get("retention_first") or 0.0 for name, final in finals.items()
                     if final.get("n_edited") == longest}  # ablations run shorter sequences: not comparable
        best = [name for name, value in retention.items() if value == max(retention.values())]
        best_text = (f"Best first-round retention: {', '.join(best)}." if max(retention.values()) > 0
                     else "No method kept its first-round edits: the edits did not take (see the table).")
        parts = [f"{name} {fmt(f.get('efficacy'))} / {fmt(f.get('retention_first'))} / {fmt(f.get('specificity'))}"
                 for name, f in finals.items() if name in ("nse", "memit", "memit-cp", "alphaedit")]
        lines.append(f"**Sequential quality ({finals['nse']['n_edited'] if 'nse' in finals else block['n_edits']} "
                     f"edits in rounds of {block['round_size']}, "
                     f"{world_name} world)** — efficacy / first-round retention / specificity at the end: "
                     + "; ".join(parts) + f". {best_text}")
    rebuild = [g for g in goal_list if ("checkout" in g.name or g.name.startswith("replay")) and g.met is not None]
    if rebuild:
        lines.append("**Rebuilds** — " + "; ".join(f"{g.name}: {g.measured} (goal {g.target}, {verdict(g.met)})"
                                                   for g in rebuild) + ".")
    storage_rows = get_path(results.get("storage"), "data", "methods") or []
    nse_storage = next((r for r in storage_rows if r["method"] == "nse"), None)
    if nse_storage:
        lines.append(f"**Storage** — an NSE edit stores {nse_storage['delta_bytes_per_edit'] / 1024:.1f} KiB of "
                     f"weight change ({fmt(nse_storage['delta_over_floor'], 2)}x the floor of "
                     f"{nse_storage['floor_bytes_per_edit'] / 1024:.1f} KiB: old and new values are both kept), "
                     f"{nse_storage['blob_bytes_per_1000_edits'] / 2**20:.1f} MiB of blobs and "
                     f"{nse_storage['sqlite_bytes_per_1000_edits'] / 2**20:.2f} MiB of SQLite per 1,000 edits.")
    return lines[:4] or ["No section has been run yet."]


# ------------------------------------------------------------------ sections
def write_report(results: dict[str, dict[str, Any]], out: Path, plots_dir: Path) -> Path:
    """Write BENCHMARKS.md (and the plots it shows) from saved section records."""
    out, plots_dir = Path(out), Path(plots_dir)
    goal_list = goals(results)
    quick = [name for name, record in results.items() if record and record.get("quick")]
    lines = ["# editledger benchmarks", "",
             "Generated by `python -m benchmarks` (`make bench`; `--quick` for the short run, `--report-only` to "
             "rewrite this file from `benchmarks/results/*.json`). Do not edit by hand.", ""]
    if quick:
        lines += [f"> **Quick run** for: {', '.join(quick)}. These numbers come from the short configuration "
                  "(smaller world, fewer edits); the full run is `python -m benchmarks`.", ""]
    lines += ["## Findings", "", *[f"{i}. {line}" for i, line in enumerate(findings(results, goal_list), 1)], "",
              "## Goals", "", table(["goal", "target", "measured", "verdict"],
                                    [[g.name, g.target, g.measured, verdict(g.met)] for g in goal_list]), ""]
    lines += quality_section(results.get("quality"), out, plots_dir)
    lines += world_section(results.get("world"))
    lines += real_sequence_section(sequence_records(results), out, plots_dir, results.get("real_key_space"))
    lines += speed_section(results.get("speed"), out, plots_dir, results.get("checkout_scale"),
                           results.get("speed_reference_real"))
    lines += storage_section(results.get("storage"), out, plots_dir)
    lines += real_storage_lines(results.get("storage_real"))
    lines += real_lifecycle_lines({name: record for name, record in results.items()
                                   if name.startswith("real_lifecycle-") and record})
    lines += ledger_section(results.get("ledger"))
    lines += scaling_section(results.get("scaling"))
    lines += spread_section(results.get("spread"), results.get("spread-sweep"))
    lines += remote_store_section(results.get("remote_store"))
    lines += from_worlds_section(results.get("from_worlds"))
    lines += trace_real_section(results.get("trace_real"), out, plots_dir)
    lines += c0_real_section(results.get("c0_real"))
    lines += gpu_section()
    timed = {name: record for name, record in results.items() if record and name in SECTIONS}
    runtimes = [[name, record.get("seconds"), fmt(record.get("quick"))] for name, record in timed.items()]
    total = sum(record.get("seconds") or 0.0 for record in timed.values())
    worlds = get_path(results.get("quality"), "data", "worlds") or {}
    builds = [[f"build of world `{name}` (once; cached in `.worlds/`)", block["world"].get("build_seconds"), ""]
              for name, block in ordered_worlds(worlds)]
    lines += ["## Runtimes", "", table(["section", "seconds", "quick"], runtimes + builds), "",
              f"Sections: {total / 60:.1f} minutes in all. The quality section includes building each fact world "
              f"that `.worlds/` does not hold yet ({sum(row[1] or 0.0 for row in builds) / 60:.1f} minutes for all "
              "of them, as measured when they were built).", ""]
    for rerun in get_path(results.get("quality"), "data", "reruns") or []:
        lines += [f"After that run, the quality section's world(s) {', '.join(f'`{w}`' for w in rerun['worlds'])} "
                  f"were run again alone (`python -m benchmarks.quality --world ...`, {rerun['seconds']:.0f} s, their "
                  "builds not included); the section's time above is the full run's.", ""]
    out.write_text("\n".join(lines), encoding="utf-8")
    return out
