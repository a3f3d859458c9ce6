"""The report's section on sequential editing of real models (SmolLM2, Gemma; `benchmarks.real_sequence`): every
run side by side with the paper, the goal and the paper's claim judged, the ablations, the sweeps and the key space.
The real models' other sections: `report_real_costs` (speed, storage, lifecycle) and `report_real_settings`
(causal tracing, C0)."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.real_sequence import ARGMAX as REAL_SEQUENCE_ARGMAX
from benchmarks.real_sequence import DEFAULT_MODEL as REAL_SEQUENCE_MODEL
from benchmarks.real_sequence import KEY_HASH, PLANNED_ORDER, VALIDATION_AFTER, sample_rule_of
from benchmarks.real_sequence import METHODS as REAL_SEQUENCE_METHODS
from benchmarks.real_sequence import SCORED as REAL_SEQUENCE_SCORED
from benchmarks.report_format import env_line, figure, pct, pct_triple, table


def real_sequence_verdict(data: dict[str, Any]) -> str:
    """`not reached` while fewer edits than asked were measured; else `met` when the last round's scores over all
    edits are at or above the paper's for the same method, `not met` below, and no verdict without a paper figure
    (a variant, zsRE or another round size has none: the paper's figure is its plain method's on CounterFact)."""
    if data["edits_reached"] < data["edits_asked"]:
        return "not reached"
    paper = _paper_figure(data)
    if paper is None:
        return "reached (no paper figure to compare)"
    last = last_full(data)["all_scores"]
    met = all(last.get(metric) is not None and 100 * last[metric] >= paper[metric] for metric in paper)
    return "met" if met else "not met"


def last_full(data: dict[str, Any]) -> dict[str, Any] | None:
    """The last round measured with all metrics (`--full-every`: the others have efficacy, retention, knowledge,
    perplexity and fluency only); rounds saved before the option count as full."""
    return next((row for row in reversed(data["rounds"]) if row.get("full", True)), None)


def _paper_scores(paper: dict[str, Any], method: str) -> dict[str, float]:
    """The paper's published scores of `method`, as fractions like ours."""
    return {metric: value / 100 for metric, value in paper["methods"][method].items()}


def _variant(data: dict[str, Any]) -> str:
    """A run's variant name; "(preset)" for a run without one."""
    return data.get("variant") or "(preset)"


def _paper_figure(data: dict[str, Any]) -> dict[str, float] | None:
    if data.get("variant") or data.get("dataset", "counterfact") != "counterfact" or _is_validation(data):
        return None
    return data["paper"]["methods"].get(data["method"])


SEQUENCE_COLLAPSE_EFFICACY = 0.5  # the collapse point: efficacy over all edits below this,
SEQUENCE_COLLAPSE_PERPLEXITY = 1.0  # or general-text perplexity up by this (doubled)
SEQUENCE_GOAL = {"efficacy": 0.9, "generalization": 0.7}  # NSE's goal after the sequence ...
SEQUENCE_SPECIFICITY_SLACK = 0.1  # ... with specificity within this of the unedited model's
SWEEP_SCORES = ("efficacy", "generalization", "specificity", "knowledge_preserved")  # a sweep picks the best mean
NSE_ABLATIONS = {  # variant: what it takes out of NSE (the paper's ablations; `under`: the reference code's rule)
    "no-rewind": "without rewinding (z* on each round's starting weights)",
    "p1": "p = 1 (every neuron: no selection)",
    "one-pass": "one pass (`max_iterations` 2)",
    "under": "the reference code's neuron rule `under`",
}
NSE_PRESET_RERUN = "preset"  # `--variant preset` without --set: NSE's preset again, as the ablations' baseline
NSE_PARTS = {*NSE_ABLATIONS, NSE_PRESET_RERUN}  # NSE's parts, judged in their own table, not against the goal


def sequence_label(data: dict[str, Any], round_sizes: Counter) -> str:
    """`nse`, `nse + nas`, `nse, zsRE`, `nse, rounds of 40` (the round size only where a method ran at several)."""
    label = data["method"] + (f" + {data['variant']}" if data.get("variant") else "")
    if _other_model(data):
        label += f", {data['model_name']}"
    if data.get("dataset", "counterfact") != "counterfact":
        label += f", {data['dataset']}"
    if _is_validation(data):
        label += ", validation"
    if round_sizes[_run_kind(data)] > 1:
        label += f", rounds of {data['round_size']}"
    return label


def _run_kind(data: dict[str, Any]) -> tuple[str, str, str, str, bool]:
    return (data.get("model_name", REAL_SEQUENCE_MODEL), data["method"], data.get("variant") or "",
            data.get("dataset", "counterfact"), _is_validation(data))


def _other_model(data: dict[str, Any]) -> bool:
    """A run of another model than SmolLM2 (results saved before `--model` are SmolLM2's)."""
    return data.get("model_name", REAL_SEQUENCE_MODEL) != REAL_SEQUENCE_MODEL


def _is_validation(data: dict[str, Any]) -> bool:
    return data.get("split", "test") == "validation"


def _counterfact_test(data: dict[str, Any]) -> bool:
    """A run the goal, the ablations, the plot and the missing-methods line read: SmolLM2 on CounterFact's test
    split."""
    return data.get("dataset", "counterfact") == "counterfact" and not _is_validation(data) and not _other_model(data)


def _smollm2_validation(data: dict[str, Any]) -> bool:
    """A run a sweep reads: SmolLM2 on CounterFact's validation split."""
    return _is_validation(data) and not _other_model(data)


def collapse_point(data: dict[str, Any]) -> str:
    """The edits at the first round whose efficacy over all edits fell below 0.5 or whose general-text perplexity
    doubled; else that it held to the last round measured."""
    for row in data["rounds"]:
        efficacy = row["all_scores"].get("efficacy")
        if (efficacy is not None and efficacy < SEQUENCE_COLLAPSE_EFFICACY) or (
                row["perplexity_change"] >= SEQUENCE_COLLAPSE_PERPLEXITY):
            return f"{row['edits_so_far']:,}"
    return f"none in {data['edits_reached']:,}" if data["rounds"] else "–"


def _sequence_metrics(data: dict[str, Any]) -> tuple[str, ...]:
    # zsRE is scored by top-1 token accuracy; CounterFact by the new answer's probability against the true one's
    return REAL_SEQUENCE_ARGMAX if data.get("dataset") == "zsre" else REAL_SEQUENCE_SCORED


def _sequence_row(label: Any, edits: Any, row: dict[str, Any], metrics: tuple[str, ...]) -> list[Any]:
    return [label, edits, f"{row['known_facts']}/{row['requests']}" if "known_facts" in row else "–",
            pct(row.get("preferred_new_before")), pct_triple(row["round_scores"], metrics),
            pct_triple(row["all_scores"], metrics) if "all_scores" in row else "–", row.get("all_measured", "–"),
            pct(row["all_scores"].get("generation_efficacy")) if "all_scores" in row else "–",
            pct(row.get("retention_first")), pct(row.get("knowledge_preserved")),
            f"{100 * row['perplexity_change']:+.1f}%",
            "–" if row.get("fluency") is None else f"{row['fluency']:.1f}",
            None if row.get("edit_seconds") is None else row["edit_seconds"] / row["requests"],
            row.get("measure_seconds")]


def sequence_plot(runs: list[tuple[str, dict[str, Any]]], plots_dir: Path, record: dict[str, Any]) -> Path:
    """Per round, every CounterFact run: efficacy, generalization and specificity over all edits, retention of
    round 1, and the general-text perplexity change."""
    panels = [("efficacy", "efficacy, all edits"), ("generalization", "generalization, all edits"),
              ("specificity", "specificity, all edits"), ("retention_first", "retention of round 1"),
              ("knowledge_preserved", "knowledge preserved"), ("perplexity_change", "perplexity change")]

    def draw(figure) -> None:
        for index, (metric, title) in enumerate(panels, 1):
            axes = figure.add_subplot(2, 3, index)
            for label, data in runs:
                points = [(r["edits_so_far"], r["all_scores"].get(metric) if metric in r["all_scores"]
                           else r.get(metric)) for r in data["rounds"]]
                points = [(x, y) for x, y in points if y is not None]
                if points:
                    axes.plot(*zip(*points, strict=True), "-" if "+" not in label else "--", marker=".",
                              label=label)
            axes.set_title(title, fontsize=8)
            axes.set_xlabel("edits", fontsize=7)
            axes.tick_params(labelsize=6)
            axes.grid(alpha=0.3)
            if index == 1:
                axes.legend(fontsize=5)

    return figure(record, draw, plots_dir / "real_sequence.png", size=(9.6, 5.6))


def _round_specificity(row: dict[str, Any] | None) -> float | None:
    """Specificity of a round's own requests (the "unedited" row: the base model on round 1's)."""
    return (row or {}).get("round_scores", {}).get("specificity")


def _judged_by_goal(data: dict[str, Any]) -> bool:
    """An NSE run the goal judges: NSE's parts (ablations, the preset's re-run) have their own table."""
    return data["method"] == "nse" and data.get("variant") not in NSE_PARTS


def _edits_reached(data: dict[str, Any]) -> set[int]:
    return {r["edits_so_far"] for r in data["rounds"]}


def _sequence_claim(runs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The issue's goal, stated met or not met with the numbers for each NSE run (with or without NAS): efficacy
    >= 0.9 and generalization >= 0.7 after the whole sequence, specificity within 0.1 of the unedited model's, and
    no run of the table (NSE's ablations aside: they are NSE's parts, in their own table) keeping round 1's edits
    better at the same number of edits."""
    ended = [(label, data) for label, data in runs if last_full(data)]
    lines = []
    for label, data in ((label, data) for label, data in ended if _judged_by_goal(data)):
        last = last_full(data)
        shortfalls = [f"{metric} {pct(last['all_scores'][metric])} < {100 * goal:.0f}"
                      for metric, goal in SEQUENCE_GOAL.items() if (last["all_scores"].get(metric) or 0.0) < goal]
        unedited = _round_specificity(data.get("unedited"))
        specificity = last["all_scores"].get("specificity")
        if unedited is not None and specificity is not None and specificity < unedited - SEQUENCE_SPECIFICITY_SLACK:
            shortfalls.append(f"specificity {pct(specificity)} more than {100 * SEQUENCE_SPECIFICITY_SLACK:.0f} "
                              f"below the unedited model's {pct(unedited)}")
        edits = last["edits_so_far"]
        better = []
        for other_label, other in ended:
            same = next((r for r in other["rounds"] if r["edits_so_far"] == edits), None)
            if (other is not data and other.get("variant") not in NSE_PARTS and same
                    and (same["retention_first"] or 0) > (last["retention_first"] or 0)):
                better.append(f"{other_label} {pct(same['retention_first'])}")
        if better:
            shortfalls.append(f"retention of round 1 {pct(last['retention_first'])} at {edits:,} edits, below "
                              + ", ".join(better))
        reached = edits >= data["edits_asked"]
        verdict_word = "met" if reached and not shortfalls else "not met"
        measured = (f"{label} at {edits:,} edits: all edits {pct_triple(last['all_scores'])}"
                    + (f" (unedited specificity {pct(unedited)})" if unedited is not None else ""))
        lines.append(f"- {label}: **{verdict_word}** — {measured}"
                     + (f"; short by: {'; '.join(shortfalls)}" if shortfalls else "")
                     + ("" if reached else f"; {edits:,} of the {data['edits_asked']:,} edits asked were measured")
                     + ".")
    if not lines:
        return []
    return [f"**Goal** (NSE keeps efficacy ≥ {100 * SEQUENCE_GOAL['efficacy']:.0f} and generalization ≥ "
            f"{100 * SEQUENCE_GOAL['generalization']:.0f} after the sequence, specificity within "
            f"{100 * SEQUENCE_SPECIFICITY_SLACK:.0f} of the unedited model's, no method keeping round 1 better):", "",
            *lines, ""]


def goal_gap_lines(runs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Why NSE's goal is not met, read from the runs' rounds: how much specificity the first round alone takes in
    every run, and, for each NSE run short of the goal's efficacy, how well each round's edits took when written
    against how many were kept."""
    pairs = [(data, (_round_specificity(data.get("unedited")), _round_specificity(data["rounds"][0])))
             for _, data in runs if data["rounds"]]
    pairs = [(data, pair) for data, pair in pairs if None not in pair]  # runs with both measured
    measured, first = [data for data, _ in pairs], [pair for _, pair in pairs]
    lines = []
    if first:
        drops = [unedited - after for unedited, after in first]
        unedited = sorted({pct(unedited) for unedited, _ in first})
        methods = ", ".join(dict.fromkeys(data["method"] for data in measured))
        lines.append(f"- **Specificity goes in the first round.** After round 1 alone, the specificity of its "
                     f"requests is {pct(min(a for _, a in first))}–{pct(max(a for _, a in first))} in all "
                     f"{len(first)} runs of every setting ({methods}; unedited: {', '.join(unedited)}): the first "
                     f"{runs[0][1]['round_size']} edits take {pct(min(drops))}–{pct(max(drops))} of the "
                     f"{100 * SEQUENCE_SPECIFICITY_SLACK:.0f} points the goal allows.")
    for label, data in runs:
        last = last_full(data)
        if not _judged_by_goal(data) or last is None or last["all_scores"]["efficacy"] >= SEQUENCE_GOAL["efficacy"]:
            continue
        written = [r["round_scores"]["efficacy"] for r in data["rounds"] if r["edits_so_far"] <= last["edits_so_far"]]
        lines.append(f"- **{label}: its edits took, then were lost.** Each round's own efficacy when written: "
                     f"{pct(min(written))}–{pct(max(written))}; over all {last['edits_so_far']:,} edits at the end: "
                     f"{pct(last['all_scores']['efficacy'])}, and round 1's edits kept fell from "
                     f"{pct(data['rounds'][0]['retention_first'])} to {pct(last['retention_first'])}. The last "
                     f"round's own generalization was {pct(last['round_scores'].get('generalization'))}, over all "
                     f"edits {pct(last['all_scores'].get('generalization'))}.")
    return ["**Why, measured** (from the rounds above):", "", *lines, ""] if lines else []


def _full_at(data: dict[str, Any], edits: int) -> bool:
    """Whether the run's round at `edits` was measured with all metrics."""
    return any(r["edits_so_far"] == edits and r.get("full", True) for r in data["rounds"])


def ablation_lines(runs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """NSE beside each of its ablations (results records of CounterFact test runs) at the most edits all of them
    reached: what each part of NSE is worth."""
    ablated = [(NSE_ABLATIONS[record["data"]["variant"]], record) for _, record in runs
               if record["data"]["method"] == "nse" and record["data"].get("variant") in NSE_ABLATIONS
               and record["data"]["rounds"]]
    reached = [_edits_reached(record["data"]) for _, record in ablated]
    # the preset's baseline: its plain run or a re-run of it (`--variant preset`), preferring one measured in full
    # at the edits every run reached
    baselines = [(label, record, max(set.intersection(*reached, _edits_reached(record["data"])), default=0))
                 for label, record in runs
                 if record["data"]["method"] == "nse" and record["data"].get("variant") in (None, NSE_PRESET_RERUN)]
    baselines = [baseline for baseline in baselines if baseline[2]]
    if not ablated or not baselines:
        return []
    plain_label, plain, edits = max(baselines, key=lambda item: (item[2], _full_at(item[1]["data"], item[2]),
                                                                 not item[1]["data"].get("variant")))
    compared = [("NSE (rewinding, p = 0.8, two passes, `reach`)", plain), *ablated]
    rows = []
    for what, record in compared:
        done = [r for r in record["data"]["rounds"] if r["edits_so_far"] <= edits]
        row, full = done[-1], done[-1].get("full", True)
        seconds = [r["edit_seconds"] / r["requests"] for r in done if r.get("edit_seconds") is not None]
        rows.append([what, pct(row["all_scores"]["efficacy"]),
                     pct(row["all_scores"].get("generalization")) if full else "–",
                     pct(row["all_scores"].get("specificity")) if full else "–",
                     pct(row.get("retention_first")), pct(row.get("knowledge_preserved")),
                     f"{100 * row['perplexity_change']:+.1f}%",
                     "–" if row.get("fluency") is None else f"{row['fluency']:.1f}",
                     sum(seconds) / len(seconds) if seconds else None,
                     record.get("environment", {}).get("cpu", "?")])
    return ["### NSE's ablations", "",
            f"Each run takes one part out of NSE (`--set ... --variant NAME`), at {edits:,} CounterFact edits, the "
            f"most every run reached; the same requests, order and preset otherwise. Scores over all edits in %; "
            f"\"–\": that round was measured by efficacy, retention, knowledge, perplexity and fluency only "
            f"(`--full-every`). s/edit: mean of the rounds' edit seconds per request, on the CPU named. NSE's row: "
            f"the run `{plain_label}` (of the preset's runs, the one measured in full there).", "",
            table(["NSE", "efficacy", "generalization", "specificity", "retention r1", "knowledge preserved",
                   "perplexity change", "fluency", "s/edit", "CPU"], rows), ""]


@dataclass
class Sweep:
    """One method's runs on the validation split at the most edits all of them measured in full, and the choice."""

    edits: int
    swept: list[str]  # the hyperparameters whose values differ between the runs
    scored: list[tuple[str, dict[str, Any], dict[str, Any], float | None]]  # (variant, overrides, row, mean)
    chosen: str | None  # the variant with the best mean ("(preset)": the run without one)
    chosen_hparams: dict[str, Any] | None = None  # the hyperparameters its first round recorded, where saved

    @property
    def chosen_overrides(self) -> dict[str, Any]:
        """The chosen run's values over the defaults (its preset's and its --set's)."""
        return next((overrides for name, overrides, _, _ in self.scored if name == self.chosen), {})


def sweep_of(method: str, validation: list[dict[str, Any]]) -> Sweep | None:
    """The setting chosen for `method`: the best mean of efficacy, generalization, specificity (all edits) and
    knowledge preserved, at the most edits every validation run of it measured in full."""
    runs = [data for data in validation if data["method"] == method and data["rounds"]]
    common = set.intersection(*({r["edits_so_far"] for r in data["rounds"] if r.get("full", True)}
                                for data in runs)) if runs else set()
    if not common:
        return None
    edits = max(common)
    settings = [data.get("settings", {}).get("overrides", {}) for data in runs]
    swept = sorted({key for one in settings for key in one if any(o.get(key) != one.get(key) for o in settings)})
    scored, recorded = [], {}
    for data, overrides in zip(runs, settings, strict=True):
        row = next(r for r in data["rounds"] if r["edits_so_far"] == edits)
        values = [row["all_scores"].get(m) if m in row["all_scores"] else row.get(m) for m in SWEEP_SCORES]
        name = _variant(data)
        scored.append((name, overrides, row, sum(values) / len(values) if None not in values else None))
        recorded[name] = data.get("hparams")
    best = max((item for item in scored if item[3] is not None), key=lambda item: item[3], default=None)
    return Sweep(edits, swept, scored, best[0] if best else None, recorded.get(best[0]) if best else None)


def chosen_test_run(method: str, sweep: Sweep | None, tested: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The test run of the setting the sweep chose, if there is one: the same hyperparameters recorded (a variant
    that sets the preset's own value is the preset's run); for a sweep's run saved before they were, a test run
    whose recorded hyperparameters hold each of its values and that sets nothing else; else the same variant."""

    def chosen(hparams: dict[str, Any]) -> dict[str, Any]:  # NAS's anchor is measured by each run, not chosen
        return {key: value for key, value in hparams.items() if key != "norm_anchor_norm"}

    def same_setting(data: dict[str, Any]) -> bool:
        if sweep.chosen_hparams is not None and data.get("hparams") is not None:
            return chosen(data["hparams"]) == chosen(sweep.chosen_hparams)
        if data.get("hparams") is not None:
            wanted, own = sweep.chosen_overrides, data.get("settings", {}).get("overrides", {})
            return (all(data["hparams"].get(key) == value for key, value in wanted.items())
                    and all(wanted.get(key) == value for key, value in own.items()))
        return _variant(data) == sweep.chosen

    if sweep is None or sweep.chosen is None:
        return None
    return next((data for data in tested if data["method"] == method and same_setting(data)), None)


def _with_variant(method: str, variant: str) -> str:
    return method + (f" + {variant}" if variant != "(preset)" else "")


def sweep_lines(validation: list[dict[str, Any]], tested: list[dict[str, Any]]) -> list[str]:
    """Per method, its runs on the validation split side by side and the setting chosen (`sweep_of`), with the
    test run that uses it, if there is one."""
    lines = []
    for method in REAL_SEQUENCE_METHODS:
        sweep = sweep_of(method, validation)
        if sweep is None:
            continue
        rows = [[f"**{name}**" if name == sweep.chosen else name,
                 *[json.dumps(overrides.get(key)) for key in sweep.swept], pct_triple(row["all_scores"]),
                 pct(row.get("knowledge_preserved")), f"{100 * row['perplexity_change']:+.1f}%",
                 "–" if mean is None else f"{100 * mean:.1f}"] for name, overrides, row, mean in sweep.scored]
        lines += [f"**{method}** on the validation split at {sweep.edits:,} edits (the most every setting "
                  f"reached):", "",
                  table(["variant", *sweep.swept, "all eff / gen / spec", "knowledge preserved", "perplexity change",
                         "mean"], rows), ""]
        if sweep.chosen is not None:
            test_run = chosen_test_run(method, sweep, tested)
            lines += [f"Chosen: **{sweep.chosen}**. "
                      + (f"Its test run: `{_with_variant(method, _variant(test_run))}` "
                         f"({test_run['edits_reached']:,} edits measured)." if test_run else
                         "No test run with it yet."), ""]
    if not lines:
        return []
    return ["### Settings swept on the validation split", "",
            "Runs with `--split validation` edit the last records of the order, none of which a test run of up to "
            "1,000 edits touches. The setting chosen for a method is the one with the best mean of efficacy, "
            "generalization and specificity over all edits and knowledge preserved (\"mean\", %).", "", *lines]


def _run_summary(data: dict[str, Any], label: str) -> str:
    last = last_full(data)
    collapse = collapse_point(data)
    return (f"{label} {pct_triple(last['all_scores'])} at {last['edits_so_far']:,} edits"
            + ("" if collapse.startswith("none") else f" (collapsed at {collapse})"))


def real_sequence_finding(records: dict[str, dict[str, Any]]) -> str | None:
    """The finding at the top: each plain method's CounterFact test run at its last full measure, its collapse
    point, the test runs of the settings swept on the validation split, and the paper's NSE figure."""
    everything = [record["data"] for record in records.values()]
    tested = [data for data in everything if _counterfact_test(data) and last_full(data)]
    plain = sorted((data for data in tested if not data.get("variant")),
                   key=lambda data: REAL_SEQUENCE_METHODS.index(data["method"]))
    if not plain:
        return None
    parts = [_run_summary(data, data["method"]) for data in plain]
    validation = [data for data in everything if _smollm2_validation(data)]
    swept = []
    for method in REAL_SEQUENCE_METHODS:
        sweep = sweep_of(method, validation)
        test_run = chosen_test_run(method, sweep, tested)
        if test_run is not None and test_run.get("variant"):
            swept.append(_run_summary(test_run, _with_variant(method, test_run["variant"])))
    paper = plain[0]["paper"]
    return (f"**Real model ({plain[0]['model'].split(' (')[0]}, CounterFact)** — efficacy / generalization / "
            f"specificity over all edits at each method's last full measure: " + "; ".join(parts)
            + (f"; at the setting swept on the validation split: {'; '.join(swept)}" if swept else "")
            + f". The NSE paper on {paper['model']}, {paper['edits']:,} edits: "
            + pct_triple(_paper_scores(paper, "nse")) + " (section 1c).")


CLAIM_SCORES = ("efficacy", "generalization", "specificity")  # where the paper puts NSE ahead of MEMIT


@dataclass
class Claim:
    """The paper's claim on the real model: NSE against MEMIT, each at the setting its sweep chose (else its
    preset), at the most edits both measured in full."""

    edits: int
    labels: tuple[str, str]
    rows: tuple[dict[str, Any], dict[str, Any]]  # NSE's round, MEMIT's round
    behind: list[str]  # the claimed scores where NSE is below MEMIT

    @property
    def met(self) -> bool:
        return not self.behind


def paper_claim(records: dict[str, dict[str, Any]]) -> Claim | None:
    """`Claim` from the results records, or None before NSE and MEMIT have a full measure at the same edits."""
    everything = [record["data"] for record in records.values()]
    tested = [data for data in everything if _counterfact_test(data)]
    validation = [data for data in everything if _smollm2_validation(data)]
    runs = []
    for method in ("nse", "memit"):
        chosen = chosen_test_run(method, sweep_of(method, validation), tested)
        run = chosen or next((data for data in tested if data["method"] == method and not data.get("variant")), None)
        if run is None:
            return None
        runs.append(run)
    full = [{row["edits_so_far"]: row for row in run["rounds"] if row.get("full", True)} for run in runs]
    common = set(full[0]) & set(full[1])
    if not common:
        return None
    edits = max(common)
    rows = (full[0][edits], full[1][edits])
    behind = [metric for metric in CLAIM_SCORES
              if (rows[0]["all_scores"].get(metric) or 0.0) < (rows[1]["all_scores"].get(metric) or 0.0)]
    labels = tuple(_with_variant(run["method"], _variant(run)) for run in runs)
    return Claim(edits, labels, rows, behind)  # type: ignore[arg-type]


def claim_lines(claim: Claim | None, paper: dict[str, Any]) -> list[str]:
    """The claim's verdict with every score of both runs, the model's health included."""
    if claim is None:
        return []
    nse, memit = claim.rows
    published = " against ".join(pct_triple(_paper_scores(paper, method)) for method in ("nse", "memit"))

    def versus(label: str, ours: float | None, theirs: float | None, change: bool = False) -> str:
        shown = (lambda v: f"{100 * v:+.1f}%") if change else pct
        return f"{label} {shown(ours)} against {shown(theirs)}"

    health = [versus("round 1 kept", nse.get("retention_first"), memit.get("retention_first")),
              versus("knowledge preserved", nse.get("knowledge_preserved"), memit.get("knowledge_preserved")),
              versus("perplexity change", nse["perplexity_change"], memit["perplexity_change"], change=True)]
    verdict_word = "met" if claim.met else "not met"
    return [f"**The paper's claim** (after a long sequence NSE is ahead of MEMIT in efficacy, generalization and "
            f"specificity: {published} on {paper['model']} at {paper['edits']:,} edits), here with each method at "
            f"the setting its sweep chose, at {claim.edits:,} edits, the most both measured in full: "
            f"{claim.labels[0]} {pct_triple(nse['all_scores'])} against {claim.labels[1]} "
            f"{pct_triple(memit['all_scores'])}: **{verdict_word}**"
            + (f" (NSE behind on {', '.join(claim.behind)})" if claim.behind else "")
            + f". The model's health, NSE against MEMIT: {'; '.join(health)}.", ""]


def key_space_lines(record: dict[str, Any] | None) -> list[str]:
    """Per run and round, how much of each edited block's key space the edits hold (`benchmarks.real_key_space`)."""
    data = (record or {}).get("data")
    if not data or not data.get("runs"):
        return []
    rows = []
    for name, run in sorted(data["runs"].items()):
        for at in run["rounds"]:
            layers = at["layers"]
            rows.append([name, f"{at['edits']:,}", " / ".join(str(v["rank"]) for v in layers.values()),
                         " / ".join(str(v["k99"]) for v in layers.values()),
                         " / ".join(f"{v['held']} ({100 * v['held_share']:.1f}%)" for v in layers.values())])
    first = next(iter(data["runs"].values()))
    blocks = ", ".join(next(iter(first["rounds"]))["layers"])
    return ["### Why: the key space the edits hold", "", env_line(record), "",
            f"Read from each run's ledger (`python -m benchmarks.real_key_space`): after each round, per edited "
            f"block ({blocks}; keys {first['d_ff']:,} wide), the rank of Cp (the recorded keys' Σ K Kᵀ), the "
            f"eigenvectors carrying {100 * data['energy']:.0f}% of its trace (k99), and the directions where the "
            f"edits' keys outweigh general text's (generalized eigenvalues of Cp against λ·C0 above 1): a later "
            f"update is kept out of those, so what is left to write the next fact shrinks with every round. The "
            f"paper's 2,000 edits on Llama3-8B hold at most 2,000 of 14,336 key directions (14%).", "",
            table(["run", "edits", "rank", "k99", "held by edits"], rows), ""]


def sample_rule_sentence(records: dict[str, dict[str, Any]]) -> str:
    """How the runs drew their sample of all edits (`real_sequence.sample_rule_of`)."""
    rules = Counter(sample_rule_of(record["data"]) for record in records.values())
    parts = []
    if rules[PLANNED_ORDER]:
        parts.append(f"{rules[PLANNED_ORDER]} of the {len(records)} runs drew it from a seeded shuffle of the "
                     f"edits they planned (`--edits`), so two runs planned to other lengths measure other samples "
                     f"after the same rounds")
    if rules[KEY_HASH]:
        parts.append(f"{rules[KEY_HASH]} by each edit's seeded key hash, the same sample whatever was planned")
    return f"The sample of all edits: {'; '.join(parts)}."


def real_sequence_section(records: dict[str, dict[str, Any]], out: Path, plots_dir: Path,
                          key_space: dict[str, Any] | None = None) -> list[str]:
    """Sequential editing on SmolLM2 (`python -m benchmarks.real_sequence`): a summary of every run side by side
    with the paper's figures, the goal's verdict, a plot per round, then one table per results file."""
    lines = ["## 1c. Sequential editing on a real model (SmolLM2-135M, CounterFact and zsRE)", ""]
    if not records:
        return [*lines, "Not run (`python -m benchmarks.real_sequence --method nse --edits 1000 --round-size 100`).",
                ""]
    first = next((record["data"] for record in records.values() if not _other_model(record["data"])),
                 next(iter(records.values()))["data"])
    paper = first["paper"]
    lines += [f"{first['model']}, each method at its `smollm2-135m` preset (a variant: with the `--set` values it "
              f"names, e.g. `nas`: `norm_anchor=true`), edited in rounds recorded in a ledger "
              f"(`editor.lifecycle.Workspace.edit`), every round measured on the recorded version as soon as it was "
              f"recorded. CounterFact edits: records the model knows ({first['n_known']:,} of {first['n_records']:,}: "
              f"the true answer's first token in its top 5 and above the new one), the last {first['heldout']} of "
              f"them held out; once the known ones run out, the other records in file order (column \"known\"; "
              f"\"new before\": the share of the round's requests whose rewrite prompt the base model already "
              f"scored new over true). zsRE edits: its records in file order. Scores in % (`editor.evaluate`): "
              f"efficacy / generalization / specificity of the round's requests and of all edited so far (a fixed "
              f"sample of {first['all_sample']} once there are more; n): for CounterFact its protocol (the new "
              f"answer's probability against the true one's; specificity: the neighbourhood prompts' true answer "
              f"against the new), for zsRE top-1 token accuracy of the new answer and of the locality answer; gen. "
              f"eff.: the greedy continuation of the rewrite prompt says the new answer (all edits); retention: "
              f"efficacy of round 1's requests (the new answer likelier than the old, zsRE's too); knowledge "
              f"preserved: share of the held-out CounterFact facts still "
              f"known; perplexity change against the base model on text the model itself sampled "
              f"({first['general_text']}; no other English text ships here, so this is in-distribution text for "
              f"the base); fluency: the n-gram entropy score of sampled continuations of 10 held-out facts' "
              f"generation prompts. Row \"unedited\": the base model on round 1's requests. C0: {first['corpus']}. "
              f"A run labelled with another model (`--model`) edits that model at its own preset, on the records it "
              f"knows; the goal, the ablations, the sweep and the plot read SmolLM2's runs. "
              f"s/edit: the round's edit (ledger included) per request; measure: seconds of the round's "
              f"measurements. Collapse point: edits at the first round whose efficacy over all edits fell below "
              f"{SEQUENCE_COLLAPSE_EFFICACY} or whose perplexity doubled. Test runs stop at {VALIDATION_AFTER:,} "
              f"edits, not the paper's {paper['edits']:,}: the validation split edits records after the first "
              f"{VALIDATION_AFTER:,}, and the {first['n_records']:,} CounterFact records here, less the held-out "
              f"facts and their subjects, could not give {paper['edits']:,} edits anyway. "
              f"{sample_rule_sentence(records)}", ""]
    round_sizes = Counter(_run_kind(record["data"]) for record in records.values())

    def order(item: tuple[str, dict[str, Any]]) -> tuple[bool, str, bool, str, int, str, int]:
        data = item[1]["data"]
        return (_other_model(data), data.get("model_name", REAL_SEQUENCE_MODEL), _is_validation(data),
                data.get("dataset", "counterfact"), REAL_SEQUENCE_METHODS.index(data["method"]),
                data.get("variant") or "", data["round_size"])

    runs = [(sequence_label(record["data"], round_sizes), record) for _, record in sorted(records.items(), key=order)]
    summary = []
    for label, record in runs:
        data = record["data"]
        last = last_full(data)
        metrics = _sequence_metrics(data)
        summary.append([label, f"{last['edits_so_far'] if last else 0:,} / {data['edits_asked']:,}",
                        pct_triple(last["all_scores"], metrics) if last else "–",
                        pct(last["all_scores"].get("generation_efficacy")) if last else "–",
                        pct(last["retention_first"]) if last else "–",
                        pct(last["knowledge_preserved"]) if last else "–",
                        f"{100 * last['perplexity_change']:+.1f}%" if last else "–",
                        "–" if not last or last.get("fluency") is None else f"{last['fluency']:.1f}",
                        collapse_point(data), record.get("environment", {}).get("cpu", "?")])
    for name in REAL_SEQUENCE_METHODS:
        if name in paper["methods"]:
            paper_scores = _paper_scores(paper, name)
            summary.append([f"{name} (paper, {paper['model']})", f"{paper['edits']:,}", pct_triple(paper_scores),
                            "–", "–", "–", "–", "–", "–", "–"])
    lines += ["### After the sequence, side by side", "",
              table(["run", "edits measured / asked", "all eff / gen / spec", "gen. eff.", "retention r1",
                     "knowledge preserved", "perplexity change", "fluency", "collapse point", "CPU"], summary), ""]
    tested = [(label, record) for label, record in runs if _counterfact_test(record["data"])]
    lines += _sequence_claim([(label, record["data"]) for label, record in tested])
    lines += goal_gap_lines([(label, record["data"]) for label, record in tested])
    lines += claim_lines(paper_claim(records), paper)
    lines += ablation_lines(tested)
    lines += sweep_lines([record["data"] for _, record in runs if _smollm2_validation(record["data"])],
                         [record["data"] for _, record in tested])
    counterfact = [(label, record["data"]) for label, record in runs
                   if _counterfact_test(record["data"]) and record["data"]["rounds"]]
    if counterfact:
        plot = sequence_plot(counterfact, plots_dir, runs[0][1])
        lines += [f"![real_sequence]({os.path.relpath(plot, out.parent)})", ""]
    lines += key_space_lines(key_space)
    for label, record in runs:
        data = record["data"]
        metrics = _sequence_metrics(data)
        rows = []
        if data.get("unedited"):
            rows.append(_sequence_row("unedited", 0, data["unedited"], metrics))
        rows += [_sequence_row(f"{r['round']}" + ("" if r.get("full", True) else "*"), r["edits_so_far"], r, metrics)
                 for r in data["rounds"]]
        overrides = {k: v for k, v in data.get("settings", {}).get("overrides", {}).items()}
        rounds = f"{len(data['rounds'])} round{'' if len(data['rounds']) == 1 else 's'}"
        lines += [f"### {label}", "", env_line(record), "",
                  f"**{data['edits_reached']:,} of the {data['edits_asked']:,} edits asked** were reached and "
                  f"measured ({rounds} of {data['round_size']}"
                  + ("" if data["finished"] else "; not every round asked was measured") + ")."
                  + (f" Hyperparameters over the defaults: `{json.dumps(overrides, sort_keys=True)}`."
                     if overrides else ""), ""]
        if rows:
            lines += [table(["round", "edits so far", "known", "new before", "round eff / gen / spec",
                             "all eff / gen / spec", "n", "gen. eff.", "retention r1", "knowledge preserved",
                             "perplexity change", "fluency", "s/edit", "measure s"], rows), ""]
            if not all(r.get("full", True) for r in data["rounds"]):
                lines += ["\\* efficacy of the rewrite prompts only (`--full-every`); generalization, specificity "
                          "and generation efficacy at the other rounds.", ""]
        last = last_full(data)
        measured = (f"at {last['edits_so_far']:,} edits, all edits {pct_triple(last['all_scores'], metrics)}"
                    if last else "nothing measured")
        against = (f" against the paper's {pct_triple(_paper_scores(data['paper'], data['method']))} "
                   f"({data['paper']['model']}, {data['paper']['edits']:,} edits)" if _paper_figure(data) else "")
        lines += [f"Verdict: **{real_sequence_verdict(data)}** — {measured}{against}.", ""]
    ran = {record["data"]["method"] for record in records.values()
           if _counterfact_test(record["data"]) and not record["data"].get("variant")}
    missing = [method for method in REAL_SEQUENCE_METHODS if method not in ran]
    if missing:
        lines += [f"Not run yet: {', '.join(missing)} (`python -m benchmarks.real_sequence --method METHOD`).", ""]
    return lines
