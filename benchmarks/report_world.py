"""BENCHMARKS.md's fact-world sections: sequential editing quality on the built-in worlds (tables, plots, the
sweep, the paper's claim), the world itself, the spread over seeds and kernels, and the `--from` worlds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.quality import EARLIER_CRITERION, SWEEP_CRITERION, best_setting
from benchmarks.report_format import (
    env_line,
    figure,
    fmt,
    rel_path,
    section_data,
    table,
    verdict,
)

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


