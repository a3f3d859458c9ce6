"""BENCHMARKS.md and its plots, written from the sections' saved results (no measuring here): the fact-world
sections, goals, findings and `write_report`, which adds the real-model sections of `benchmarks.report_real`.

`write_report(results, out, plots_dir)` takes `{section: record}` where a record is what
`benchmarks.common.save_results` wrote: `{"quick", "seconds", "command", "environment", "data"}`. Missing sections
are reported as not run. Every figure carries the command and environment that produced its numbers.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from benchmarks.quality import EARLIER_CRITERION, SWEEP_CRITERION, best_setting
from benchmarks.real_sequence import RESULTS_PREFIX as REAL_SEQUENCE_PREFIX
from benchmarks.report_format import (
    Goal,
    env_line,
    figure,
    fmt,
    get_path,
    pct_triple,
    rel_path,
    section_data,
    table,
    verdict,
)
from benchmarks.report_real import paper_claim, real_sequence_finding, real_sequence_section
from benchmarks.report_real_costs import real_lifecycle_lines, real_storage_lines, reference_speed_lines
from benchmarks.report_real_settings import c0_real_section, trace_real_section

SECTIONS = ("quality", "world", "speed", "storage", "ledger", "scaling")
QUALITY_METRICS = (  # key, label, higher is better
    ("efficacy", "efficacy (all edits so far)", True),
    ("generalization", "generalization (paraphrases)", True),
    ("generation_efficacy", "generation efficacy (greedy, rewrite prompts)", True),
    ("specificity", "specificity (never-edited neighbours)", True),
    ("preserved_knowledge", "preserved knowledge (never-edited facts)", True),
    ("heldout_perplexity_change", "held-out perplexity change", False),
    ("general_perplexity_change", "general-text perplexity change", False),
    ("fluency", "fluency (n-gram entropy x100)", True),
    ("retention_first", "retention of the first round's edits", True),
)
LINE_STYLES = {"nse": ("C0", "-"), "memit": ("C1", "-"), "memit-cp": ("C2", "-"), "alphaedit": ("C3", "-"),
               "nse-no-rewind": ("C4", "--"), "nse-p1": ("C5", "--"), "nse-one-pass": ("C6", "--"),
               "memit-at-nse-lambda": ("C1", ":")}
QUERY_GOAL_MS = 50.0
CLAIM_MIN_EFFICACY = 0.5


def ordered_runs(runs: dict[str, Any]) -> dict[str, Any]:
    """Methods first, then ablations, in LINE_STYLES order (saved results have sorted keys)."""
    order = list(LINE_STYLES)
    return dict(sorted(runs.items(), key=lambda item: (order.index(item[0]) if item[0] in order else len(order),
                                                       item[0])))


# ------------------------------------------------------------------ plots
def _plot_runs(axes, runs: dict[str, Any], metric: str, label: str) -> None:
    for name, run in runs.items():
        history = [h for h in run["history"] if h.get(metric) is not None]
        if not history:
            continue
        color, style = LINE_STYLES.get(name, (None, ":"))
        axes.plot([h["n_edited"] for h in history], [h[metric] for h in history], style, color=color,
                  marker=".", label=name)
    axes.set_xlabel("edits applied")
    axes.set_title(label, fontsize=9)
    axes.grid(alpha=0.3)


MAIN_WORLDS = ("default", "small")  # the world the goals, findings and per-metric plots are about, when present


def ordered_worlds(worlds: dict[str, Any]) -> list[tuple[str, Any]]:
    """The main world first (results files keep their keys sorted), then the others in their order."""
    main = next((name for name in MAIN_WORLDS if name in worlds), next(iter(worlds), None))
    return sorted(worlds.items(), key=lambda item: item[0] != main)


def quality_plots(record: dict[str, Any], plots_dir: Path) -> dict[str, list[Path]]:
    """Per world: one figure per metric when it is the main world, else one grid of all metrics."""
    made: dict[str, list[Path]] = {}
    for index, (world_name, block) in enumerate(ordered_worlds(record["data"]["worlds"])):
        runs = ordered_runs(block["runs"])
        if index == 0:
            paths = []
            for metric, label, _ in QUALITY_METRICS:
                def draw(figure, metric=metric, label=label, runs=runs, world_name=world_name):
                    axes = figure.add_subplot(1, 1, 1)
                    _plot_runs(axes, runs, metric, f"{label} — {world_name} world")
                    axes.legend(fontsize=7)
                paths.append(figure(record, draw, plots_dir / f"quality_{world_name}_{metric}.png"))
            made[world_name] = paths
        else:
            def draw_grid(figure, runs=runs):
                for position, (metric, label, _) in enumerate(QUALITY_METRICS, 1):
                    axes = figure.add_subplot(3, 3, position)
                    _plot_runs(axes, runs, metric, label)
                    if position == 1:
                        axes.legend(fontsize=6)
            made[world_name] = [figure(record, draw_grid, plots_dir / f"quality_{world_name}_all.png",
                                       size=(11, 9.5))]
    return made


def speed_plots(record: dict[str, Any], plots_dir: Path) -> list[Path]:
    data = record["data"]
    paths = []
    per_edit = data.get("per_edit") or []
    if per_edit:
        def draw(figure):
            axes = figure.add_subplot(1, 1, 1)
            for method in dict.fromkeys(row["method"] for row in per_edit):
                rows = sorted((r for r in per_edit if r["method"] == method), key=lambda r: r["batch_size"])
                axes.plot([r["batch_size"] for r in rows], [r["seconds_per_edit"] for r in rows], marker="o",
                          label=method, color=LINE_STYLES.get(method, (None,))[0])
            axes.set_xscale("log")
            axes.set_yscale("log")
            axes.set_xlabel("requests per round")
            axes.set_ylabel("seconds per edit")
            axes.set_title("Seconds per edit by method and round size", fontsize=9)
            axes.grid(alpha=0.3, which="both")
            axes.legend(fontsize=7)
        paths.append(figure(record, draw, plots_dir / "speed_per_edit.png"))
    reverts = get_path(data, "lifecycle", "reverts") or []
    if reverts:
        def draw_reverts(figure):
            axes = figure.add_subplot(1, 1, 1)
            axes.bar([r["position"] for r in reverts], [r["seconds"] for r in reverts], color="C0")
            axes.set_xlabel("position of the reverted round (1 = oldest)")
            axes.set_ylabel("seconds")
            axes.set_title("Revert cost by the reverted round's position", fontsize=9)
            axes.grid(alpha=0.3, axis="y")
        paths.append(figure(record, draw_reverts, plots_dir / "speed_revert.png"))
    return paths


def storage_plot(record: dict[str, Any], plots_dir: Path) -> Path | None:
    rows = record["data"].get("methods") or []
    if not rows:
        return None

    def draw(figure):
        axes = figure.add_subplot(1, 1, 1)
        names = [r["method"] for r in rows]
        positions = range(len(rows))
        axes.bar([p - 0.2 for p in positions], [r["delta_bytes_per_edit"] / 1024 for r in rows], 0.4,
                 label="stored delta")
        axes.bar([p + 0.2 for p in positions], [r["floor_bytes_per_edit"] / 1024 for r in rows], 0.4,
                 label="floor (touched columns x rows x dtype)")
        axes.set_xticks(list(positions), names)
        axes.set_ylabel("KiB per edit")
        axes.set_title("Weight-change bytes per edit", fontsize=9)
        axes.legend(fontsize=7)
        axes.grid(alpha=0.3, axis="y")
    return figure(record, draw, plots_dir / "storage_per_edit.png")


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


def query_rows(ledger_data: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Flatten ledger_queries.run's dict to rows {backend, metric, value} (ms or versions/s)."""
    rows: list[dict[str, Any]] = []
    if not ledger_data:
        return rows
    backends = ledger_data.get("backends", ledger_data)
    for backend, values in backends.items():
        if not isinstance(values, dict):
            continue
        for metric, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                rows.append({"backend": backend, "metric": metric, "value": float(value)})
    return rows


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
def quality_section(record: dict[str, Any] | None, out: Path, plots_dir: Path) -> list[str]:
    lines = ["## 1. Sequential editing quality", ""]
    if record is None:
        return [*lines, "Not run (`python -m benchmarks --sections quality`).", ""]
    lines += [env_line(record), "",
              "Counterfactual edits applied in rounds with the engine (`EditState` + `run_round`). The edits are the "
              "world's editable facts; every preservation metric reads facts that no edit touches (the world keeps "
              "them apart: `preserved.json`). After every round the model is scored on every request edited so far "
              "(efficacy and generalization: CounterFact protocol, teacher forced, mean per-token NLL of the new vs "
              "the true object; generation efficacy: the greedy continuation of the rewrite prompt starts with the "
              "new object; specificity: neighbourhood prompts, all never-edited facts), on the first round's "
              "requests (retention), on every never-edited fact (preserved knowledge: its rewrite prompt still says "
              "its true object first), on held-out text of filler and never-edited facts and on general text of "
              "filler only (perplexity change against the unedited model), and on "
              f"{record['data'].get('fluency_tokens', '?')}-token sampled generations of "
              f"{record['data'].get('fluency_prompts', '?')} generation prompts (fluency).", "",
              "Ablations of NSE (with NSE's swept λ): `nse-no-rewind` computes z* on the current model each round "
              "(the benchmark sets `EditState.original_weights` to the current weights and clears the z* cache "
              "before each round); `nse-p1` sets `neuron_threshold` = 1 (no neuron selection); `nse-one-pass` sets "
              "`max_iterations` = 2 (one update pass).", ""]
    plots = quality_plots(record, plots_dir)
    for world_name, block in ordered_worlds(record["data"]["worlds"]):
        info = block["world"]
        source = f"from `{Path(info['source']).name}`" if info.get("source") else f"preset `{info['preset']}`"
        split = (f" ({info['n_editable']:,} editable, {info['n_preserved']:,} never edited)"
                 if info.get("n_editable") else "")
        lines += [f"### World `{world_name}` ({source})", "",
                  f"{info['n_facts']:,} facts{split} known at {fmt(info['accuracy'])} (paraphrases "
                  f"{fmt(info['paraphrase_accuracy'])}); {block['n_edits']:,} counterfactual edits per method "
                  + (f"and {block['n_ablation_edits']:,} per ablation " if block.get("n_ablation_edits") else "")
                  + f"in rounds of {block['round_size']}"
                  + (f", with the hyperparameters the world records: {_settings(info['edit_hparams'])}."
                     if info.get("edit_hparams") else "."), ""]
        lines += sweep_lines(block.get("sweep"))
        lines += ["Final scores (after the last round):", ""]
        header = ["variant", "edits", *(label.split(" (")[0] for _, label, _ in QUALITY_METRICS), "edit s (total)",
                  "note"]
        rows = []
        for name, run in ordered_runs(block["runs"]).items():
            final = run["final"]
            rows.append([name, final.get("n_edited"), *(final.get(metric) for metric, _, _ in QUALITY_METRICS),
                         run.get("edit_seconds_total"), run.get("error") or ""])
        base = next(iter(block["runs"].values()))["history"][0]
        rows.append(["(unedited)", 0, *(base.get(m) for m, _, _ in QUALITY_METRICS), None, ""])
        lines += [table(header, rows), ""]
        lines += claim_lines(block)
        for path in plots.get(world_name, []):
            lines += [f"![{path.stem}]({rel_path(path, out)})", ""]
    return lines


def _listed(metrics: tuple[str, ...]) -> str:
    names = [m.replace("_", " ") for m in metrics]
    return f"{', '.join(names[:-1])} and {names[-1]}"


def _setting(overrides: dict[str, Any], d_ff: int) -> str:
    return ", ".join(f"{k} = {v:g}" if not k.startswith("mom2") else f"λ = {v:g} ({v / d_ff:.2g} d_ff)"
                     for k, v in overrides.items())


def sweep_lines(swept: dict[str, Any] | None) -> list[str]:
    """The sweep that set each method's hyperparameters: every setting tried and its validation scores."""
    if not swept:
        return []
    criterion = tuple(swept.get("criterion", EARLIER_CRITERION))
    lines = [f"Hyperparameters: one sweep for every method on {swept['n_validation']} validation edits (editable "
             f"facts the sequence never edits) in rounds of {swept['round_size']}, scored by the harmonic mean of "
             f"{_listed(criterion)} at the end; λ in units of d_ff = "
             f"{swept['d_ff']}. The chosen setting is in bold.", ""]
    if criterion != SWEEP_CRITERION:  # a run made before the criterion took preserved knowledge in
        now = {name: best_setting(entry["trials"]) for name, entry in swept["methods"].items()}
        changed = [f"{name}: {_setting(now[name], swept['d_ff'])}" for name, entry in swept["methods"].items()
                   if now[name] != entry["best"]]
        lines += [f"Scored as sweeps now are (the harmonic mean of {_listed(SWEEP_CRITERION)}), these trials "
                  f"would choose otherwise for {len(changed)} of {len(swept['methods'])} methods "
                  f"({'; '.join(changed) or 'none'}). The runs below used the bold settings; they were not rerun.",
                  ""]
    rows = []
    for name, entry in swept["methods"].items():
        for trial in entry["trials"]:
            setting = _setting(trial["overrides"], swept["d_ff"])
            if trial["overrides"] == entry["best"]:
                setting = f"**{setting}**"
            rows.append([name, setting, trial.get("score"), trial.get("efficacy"), trial.get("generalization"),
                         trial.get("generation_efficacy"), trial.get("specificity"),
                         trial.get("preserved_knowledge")])
    return [*lines, table(["method", "setting", "score (HM)", "efficacy", "generalization", "generation",
                           "specificity", "preserved"], rows), ""]


def claim_lines(block: dict[str, Any]) -> list[str]:
    """The paper's claim (NSE keeps earlier edits and neighbours better than MEMIT over many rounds), read off the
    final scores and the mean over every scored round."""
    runs = block["runs"]
    if "nse" not in runs or "memit" not in runs:
        return []

    def mean_over_rounds(run: dict[str, Any], metric: str) -> float | None:
        values = [h[metric] for h in run["history"][1:] if h.get(metric) is not None]
        return sum(values) / len(values) if values else None

    names = [name for name in ("nse", "memit", "memit-at-nse-lambda", "memit-cp", "alphaedit") if name in runs]

    def keeps_better(other: str) -> bool:
        return all((runs["nse"]["final"].get(m) or 0) >= (runs[other]["final"].get(m) or 0)
                   for m in ("retention_first", "specificity"))

    rows = []
    for metric in ("retention_first", "specificity", "preserved_knowledge", "efficacy", "generation_efficacy"):
        rows.append([metric, *(value for name in names for value in (runs[name]["final"].get(metric),
                                                                     mean_over_rounds(runs[name], metric)))])
    verdicts = [f"vs `{other}`: **{'met' if keeps_better(other) else 'not met'}**"
                for other in ("memit", "memit-at-nse-lambda") if other in runs]
    header = ["metric"] + [f"{name} {when}" for name in names for when in ("end", "mean")]
    return [f"The paper's claim (NSE keeps earlier edits and never-edited neighbours better than MEMIT over many "
            f"rounds), on these clean metrics, at the end of the sequence (retention and specificity both at least "
            f"MEMIT's): {'; '.join(verdicts)}. The table gives each metric at the end and as the mean over every "
            "round; what the measurements say about why is in docs/design-notes.md (\"What 2,000 edits say\").",
            "", table(header, rows), ""]


def _settings(values: dict[str, Any]) -> str:
    return ", ".join(f"`{key}` = {json.dumps(value)}" for key, value in values.items())


def world_section(record: dict[str, Any] | None) -> list[str]:
    lines = ["## 1b. The fact world and the evaluation suite", ""]
    if record is None:
        return [*lines, "Not run (`python -m benchmarks --sections world`).", ""]
    data = record["data"]
    lines += [env_line(record), "",
              table(["world", "preset", "facts", "build s", "knows (rewrite prompt)", "knows (paraphrases)",
                     "state hash"],
                    [[name, w["preset"], w["n_facts"], w["build_seconds"], w["accuracy"], w["paraphrase_accuracy"],
                      f"`{w['state_hash'][:12]}`"] for name, w in data["worlds"].items()]), "",
              f"`tiny` was built from scratch in this run; `{data['edited_world']}` reports the build time recorded "
              "when its cache was made.", "",
              f"On the `{data['edited_world']}` world, {data['rounds']} rounds of {data['round_size']} counterfactual "
              "edits (the same requests for each method), scored after the last round with `editor.evaluate` "
              "(CounterFact protocol; retention = efficacy of the first round's requests at the end):", ""]
    header = ["method", "edits", *(label.split(" (")[0] for _, label, _ in QUALITY_METRICS), "edit s (total)"]
    rows = [[name, run["final"].get("n_edited"), *(run["final"].get(m) for m, _, _ in QUALITY_METRICS),
             run.get("edit_seconds_total")] for name, run in ordered_runs(data["runs"]).items()]
    base = next(iter(data["runs"].values()))["history"][0]
    rows.append(["(unedited)", 0, *(base.get(m) for m, _, _ in QUALITY_METRICS), None])
    return [*lines, table(header, rows), ""]


def speed_section(record: dict[str, Any] | None, out: Path, plots_dir: Path,
                  scale: dict[str, Any] | None = None, reference: dict[str, Any] | None = None) -> list[str]:
    lines = ["## 2. Speed", ""]
    if record is None:
        return [*lines, "Not run (`python -m benchmarks --sections speed`).", ""]
    data = record["data"]
    lines += [env_line(record), ""]
    plots = speed_plots(record, plots_dir)
    if data.get("per_edit"):
        world_name = get_path(data, "world", "preset")
        lines += [f"### Seconds per edit (engine only, `{world_name}` world, CPU)", "",
                  table(["method", "requests per round", "rounds", "s per round", "s per edit"],
                        [[r["method"], r["batch_size"], r["rounds"], r["seconds_per_round"], r["seconds_per_edit"]]
                         for r in data["per_edit"]]), ""]
    lifecycle = data.get("lifecycle")
    if lifecycle:
        checkout = lifecycle["checkout_seconds"]
        lines += ["### Lifecycle on a real SQLite ledger", "",
                  f"{lifecycle['n_rounds']} NSE rounds of {lifecycle['round_size']} recorded with "
                  f"`Workspace.edit` ({fmt(lifecycle['edit_seconds_total'], 1)} s).", "",
                  table(["measure", "seconds", "ratio", "goal", "verdict"], [
                      ["load base model (`load_model` = `from_pretrained` + tokenizer), median",
                       lifecycle["load_seconds"], None, "", ""],
                      *[[f"checkout of version {depth} (median)", seconds, seconds / lifecycle["load_seconds"],
                         f"≤ {lifecycle['checkout_goal']}x", verdict(seconds / lifecycle["load_seconds"]
                                                                    <= lifecycle["checkout_goal"])]
                        for depth, seconds in checkout.items()],
                      ["replay of all rounds with cached z* (`replay_same_base`)", lifecycle["replay_seconds_total"],
                       lifecycle["replay_ratio"], f"≤ {lifecycle['replay_goal']}x",
                       verdict(lifecycle["replay_ratio"] <= lifecycle["replay_goal"])],
                      ["replay, median round vs median original round", None, lifecycle.get("replay_round_ratio"),
                       "", ""],
                  ]), "",
                  f"Replay reproduced every recorded state hash: {fmt(lifecycle.get('replay_same_hash'))}.", "",
                  "Revert cost by the reverted round's position (a revert replays every later round):", "",
                  table(["reverted round", "rounds replayed", "seconds"],
                        [[r["position"], r["rounds_replayed"], r["seconds"]] for r in lifecycle["reverts"]]), ""]
    engine = data.get("engine")
    if engine:
        from benchmarks.engine_speed import markdown

        lines += ["### Engine (`benchmarks.engine_speed.run`)", ""]
        try:
            lines += [markdown(engine), ""]
        except (KeyError, TypeError):  # results saved by an older engine_speed: show them as they are
            lines += [table(["measure", "value"], _flatten(engine)), ""]
    lines += checkout_scale_lines(scale)
    lines += reference_speed_lines(reference)
    for path in plots:
        lines += [f"![{path.stem}]({rel_path(path, out)})", ""]
    return lines


def checkout_scale_lines(record: dict[str, Any] | None) -> list[str]:
    if record is None:
        return []
    c = record["data"]
    return ["### Checkout at GPT2-XL size (`python -m benchmarks.checkout_scale`, run on its own)", "",
            env_line(record), "",
            f"A GPT-2 of GPT2-XL's shape ({c['parameters'] / 1e9:.2f}B parameters, random weights), {c['rounds']} NSE "
            f"rounds recorded at layers {c['layers']}:", "",
            table(["measure", "seconds", "ratio to `from_pretrained`"], [
                ["`load_model` (`from_pretrained` + tokenizer), median", c["load_s"], None],
                ["first checkout of the last version (reads every round's change, keeps a snapshot)",
                 c["first_checkout_s"], c["first_checkout_s"] / c["load_s"]],
                ["checkout of the last version, median", c["checkout_s"], c["ratio"]],
                ["the same with `--full-verify` (every base tensor hashed)", c["full_verify_s"],
                 c["full_verify_ratio"]],
            ]), "",
            "`from_pretrained` maps the safetensors file and reads its bytes only when they are used, so any "
            "verified checkout costs at least reading and hashing the tensors that edits wrote (here 5 of 48 "
            "blocks' MLP output weights, 205 MB); `--full-verify` reads and hashes all of them.", ""]


def _flatten(node: Any, prefix: str = "") -> list[list[Any]]:
    rows: list[list[Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            rows += _flatten(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}")
    elif isinstance(node, list) and node and all(isinstance(v, dict) for v in node):
        for index, value in enumerate(node):
            rows += _flatten(value, f"{prefix}[{index}]")
    else:
        rows.append([prefix, node if not isinstance(node, list) else ", ".join(fmt(v) for v in node)])
    return rows


def storage_section(record: dict[str, Any] | None, out: Path, plots_dir: Path) -> list[str]:
    lines = ["## 3. Storage", ""]
    if record is None:
        return [*lines, "Not run (`python -m benchmarks --sections storage`).", ""]
    rows = record["data"]["methods"]
    roles = sorted({k for r in rows for k in r["bytes_per_edit_by_role"]} - {"c0", "templates"})
    lines += [env_line(record), "",
              "Bytes written per edit, from the ledger's artifact rows of each edit version. Floor = touched "
              "columns x d_model x dtype bytes (the new values alone). The stored delta keeps the column indices, "
              "the exact old values and the new values (safetensors), so ~2x the floor is expected. Keys (to rebuild "
              "Cp) and z* (NSE, to replay without recomputing) are stored beside it. Per-base blobs (C0, templates) "
              "are not counted. SQLite size after a WAL checkpoint.", "",
              table(["method", "edits", "round size", "columns per edit", "delta KiB/edit", "floor KiB/edit",
                     "delta / floor", "all blobs KiB/edit", "blobs MiB / 1,000 edits", "SQLite MiB / 1,000 edits"],
                    [[r["method"], r["n_edits"], r["round_size"], r["columns_per_edit"],
                      r["delta_bytes_per_edit"] / 1024, r["floor_bytes_per_edit"] / 1024, r["delta_over_floor"],
                      r["blob_bytes_per_edit"] / 1024, r["blob_bytes_per_1000_edits"] / 2**20,
                      r["sqlite_bytes_per_1000_edits"] / 2**20]
                     for r in rows]), "",
              "KiB per edit by artifact role (C0 and templates are per base model and not counted):", "",
              table(["method", *roles], [[r["method"], *(r["bytes_per_edit_by_role"].get(k, 0) / 1024
                                                          for k in roles)] for r in rows]), ""]
    path = storage_plot(record, plots_dir)
    if path is not None:
        lines += [f"![{path.stem}]({rel_path(path, out)})", ""]
    return lines


def ledger_section(record: dict[str, Any] | None) -> list[str]:
    lines = ["## 4. Ledger queries", ""]
    if record is None:
        return [*lines, "Not run (`python -m benchmarks --sections ledger`).", ""]
    data = record["data"]
    lines += [env_line(record), ""]
    from benchmarks.ledger_queries import table as queries_table

    with contextlib.suppress(KeyError, TypeError):  # an odd record: the verdict table below still shows it all
        lines += [queries_table(data), ""]
    rows = [r for r in query_rows(data) if r["metric"].endswith("_ms")]
    if rows:
        lines += [f"Medians of repeated runs; goal: each query < {QUERY_GOAL_MS:.0f} ms.", "",
                  table(["backend", "query", "ms", "verdict"],
                        [[r["backend"], r["metric"].removesuffix("_ms"), r["value"],
                          verdict(r["value"] < QUERY_GOAL_MS)] for r in rows]), ""]
    else:
        lines += [table(["measure", "value"], _flatten(data)), ""]
    return lines


def scaling_section(record: dict[str, Any] | None) -> list[str]:
    lines = ["## 4b. Lifecycle costs by history length", ""]
    if record is None:
        return [*lines, "Not run (`python -m benchmarks --sections scaling`).", ""]
    from benchmarks.lifecycle_scaling import table as scaling_table

    lines += [env_line(record), "",
              "N rounds of one request on the tiny world. Wall seconds and SQL statements per operation; growth per "
              "doubling of N: about 2x for an operation that replays N rounds, about 1x for the rest.", ""]
    with contextlib.suppress(KeyError, TypeError):
        lines += [scaling_table(record["data"]), ""]
    return lines


def spread_section(record: dict[str, Any] | None, sweep: dict[str, Any] | None) -> list[str]:
    """The spread the test thresholds and the derived λ were chosen from (`python -m benchmarks.spread`)."""
    lines = ["## 4c. Editing scores across worlds and CPU kernels (test thresholds, derived λ)", ""]
    if record is None:
        return [*lines, "Not run (`python -m benchmarks.spread`).", ""]
    configs = ", ".join(f"{name} ({' '.join(f'{k}={v}' for k, v in env.items()) or 'as the CPU chooses'})"
                        for name, env in record["data"]["kernel_configs"].items())
    lines += [env_line(record), "",
              f"Tiny worlds of seeds {record['data']['seeds']} (each the same weights on any machine), each scored "
              f"under the kernel configurations {configs}. The kernels changed no score; the worlds did. The suite's "
              "thresholds are the least values here (tests/editor/test_world_efficacy.py).", ""]
    for source in (record, sweep):
        for factor, rows in ((source or {}).get("data", {}).get("metrics") or {}).items():
            lines += [f"λ = {factor} d_ff:", "", table(["metric", "min", "median", "max", "n"],
                                                       [[m, r["min"], r["median"], r["max"], r["n"]]
                                                        for m, r in rows.items()]), ""]
    return lines


def from_worlds_section(record: dict[str, Any] | None) -> list[str]:
    """`--from` worlds from fact sets of our own making and from CounterFact (`python -m benchmarks.from_worlds`)."""
    lines, data = section_data("4e. Worlds built `--from` other fact sets", record, "python -m benchmarks.from_worlds")
    if data is None:
        return lines
    targets = data["targets"]
    lines += [f"Each fact set (`benchmarks/fact_sets.py`) and the first records of CounterFact, built into a world "
              f"(default preset, one thread) and edited once: one round of {data['round_size']} requests with the "
              f"hyperparameters the world records. Knowledge: rewrite / paraphrase prompts whose first token is the "
              f"true object; before edits: share of rewrite prompts preferring target_new. Target: knowledge >= "
              f"{targets['accuracy']}, NSE efficacy >= {targets['efficacy']}. Neighbours gated: the set's names "
              f"tell each other apart by their first word more often than by their last, so its neighbourhood "
              f"prompts are trained gated and cut after the name, as the subjects' are (docs/design-notes.md).", ""]
    rows = []
    for name, world in data["worlds"].items():
        spec = data["specs"].get(name)
        shape = (f"{spec['name_shape']} names, {spec['n_relations']} relations, {spec['prompt_length']} prompts"
                 + (", distractors" if spec["distractors"] else "")) if spec else "CounterFact"
        nse, memit = world["methods"]["nse"], world["methods"]["memit"]
        rows.append([name, shape, world["records"], round(world["build_seconds"]),
                     f"{fmt(world['accuracy'])} / {fmt(world['paraphrase_accuracy'])}",
                     {True: "yes", False: "no"}.get(world.get("neighbours_gated"), ""),
                     fmt(world["before"]["efficacy"]),
                     f"{fmt(nse['efficacy'])} / {fmt(nse['generalization'])} / {fmt(nse['specificity'])}",
                     f"{fmt(memit['efficacy'])} / {fmt(memit['generalization'])} / {fmt(memit['specificity'])}",
                     verdict(world["meets_targets"])])
    lines += [table(["fact set", "shape", "records", "build (s)", "knowledge (rewrite / paraphrase)",
                     "neighbours gated", "prefers new before edits", "NSE eff. / gen. / spec.",
                     "MEMIT eff. / gen. / spec.", "meets target"], rows), ""]
    return lines


def remote_store_section(record: dict[str, Any] | None) -> list[str]:
    """Checkout and edit with the blob store on an S3 server (`python -m benchmarks.remote_store`)."""
    lines, data = section_data("4d. A blob store on S3", record, "python -m benchmarks.remote_store")
    if data is None:
        return lines
    local, s3 = data["local"], data["s3"]
    lines += [f"A {data['model_parameters'] / 1e6:.0f}M-parameter GPT-2-style model, {data['rounds']} rounds of "
              f"{data['round_size']} NSE edits, moto's S3 server on loopback (no network latency: add the transfer "
              f"of the bytes fetched on a real bucket). `from_pretrained` alone: {fmt(data['from_pretrained_s'])} s.",
              "", table(["measurement", "local store", "S3 store"], [
                  ["checkout, warm (s)", local["checkout_warm_s"], s3["checkout_warm_s"]],
                  ["checkout, cold blob cache (s)", "", s3["checkout_cold_cache_s"]],
                  ["checkout on a new machine: nothing cached, base hashed in full (s)", "",
                   s3["checkout_new_machine_s"]],
                  ["bytes a cold checkout fetches", "", s3["cold_checkout_bytes_fetched"]],
                  ["edit round (s)", local["round_s"], s3["round_s"]],
                  ["first round, with C0 (s)", local["first_round_with_c0_s"], s3["first_round_with_c0_s"]],
              ]), ""]
    return lines


def gpu_section() -> list[str]:
    return ["## 5. GPU", "",
            "No GPU figure exists yet: this run had no GPU machine. Every number above is CPU-only.", ""]


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
