"""The report's measurements behind the real models' preset: causal tracing (which blocks to edit,
`benchmarks.real_trace`) and C0's sample size and the solves' ridge (`benchmarks.real_c0`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.real_sequence import SCORED as REAL_SEQUENCE_SCORED
from benchmarks.report_format import figure, pct_triple, rel_path, section_data, table

# What "a good default" means for C0's size and ridge (section 4g): every score within two facts of forty of the
# best configuration's, perplexity on held-out text within 10% of the unedited model's.
C0_SCORE_SLACK = 0.05
C0_PERPLEXITY_SLACK = 0.10


def trace_plot(record: dict[str, Any], plots_dir: Path) -> Path:
    """The mean restoring effect per block (± one standard error) for each number of facts traced."""
    data = record["data"]
    by_n = _by_n(data)

    def draw(figure):
        axes = figure.add_subplot(1, 1, 1)
        for position, (n, block) in enumerate(by_n.items()):
            axes.errorbar(range(len(block["effect"])), block["effect"], yerr=block["stderr"], marker="o",
                          markersize=3, capsize=2, color=f"C{position}", label=f"{n} facts")
        widest = list(by_n.values())[-1]
        axes.axhline(data["keep"] * max(widest["effect"]), color="0.5", linestyle="--", linewidth=0.8,
                     label=f"{data['keep']:.0%} of the peak ({widest['n']} facts)")
        low, high = data["preset_layers"][0], data["preset_layers"][-1]
        axes.axvspan(low - 0.5, high + 0.5, color="C7", alpha=0.15, label=f"preset blocks {low}-{high}")
        axes.set_xlabel("block whose state at the subject's last token is restored")
        axes.set_ylabel("P(true | restored) - P(true | corrupted)")
        axes.set_title(f"Causal tracing on {data['model'].split(' (')[0]}", fontsize=9)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    return figure(record, draw, plots_dir / "trace_real.png")


def _by_n(data: dict[str, Any]) -> dict[str, Any]:
    """The trace's summaries by number of facts, fewest first (a results file keeps its keys sorted as text)."""
    return dict(sorted(data["by_n"].items(), key=lambda item: int(item[0])))


def _most_often(counts: dict[str, int], resamples: int, shown: int = 4) -> str:
    ranked = sorted(counts.items(), key=lambda item: -item[1])[:shown]
    return ", ".join(f"{window} {count / resamples:.0%}" for window, count in ranked)


def _blocks(window: list[int]) -> str:
    return f"{window[0]}-{window[-1]}"


def trace_real_section(record: dict[str, Any] | None, out: Path, plots_dir: Path) -> list[str]:
    """Causal tracing on SmolLM2 over up to 200 known facts (`python -m benchmarks.real_trace`, run on its own)."""
    lines, data = section_data("4f. Causal tracing on SmolLM2", record, "python -m benchmarks.real_trace")
    if data is None:
        return lines
    by_n = _by_n(data)
    preset = _blocks(data["preset_layers"])
    plot = trace_plot(record, plots_dir)
    lines += [f"{data['model']}: one trace (`editor.tracing.trace_prompts`, noise {data['noise_scale']:g} σ on the "
              f"subject's embeddings, seed {data['seed']}) of the first {data['facts']} CounterFact facts the model "
              f"knows (true answer's first token in its top 5 and above the new one); each N below is the first N "
              f"of them, as a trace of N facts gives them. The rule (`TraceResult.window`): {data['width']} blocks "
              f"ending at the last block whose mean effect is at least {data['keep']:.0%} of the peak. Bootstrap: "
              f"{data['resamples']:,} resamples of the N prompts (seed {data['bootstrap_seed']}), the rule applied "
              f"to each resample's mean. The trace of {data['facts']} facts took {data['trace_seconds']:.0f} s "
              f"({data['trace_seconds'] / data['facts']:.2f} s a fact).", "",
              table(["facts", "P(true) clean", "P(true) corrupted", "peak block", "peak effect", "window",
                     "bootstrap: windows (share of resamples)"],
                    [[int(n), b["clean"], b["corrupted"], b["peak_block"], max(b["effect"]), _blocks(b["window"]),
                      _most_often(b["bootstrap"], data["resamples"])]
                     for n, b in by_n.items()]), "",
              f"![causal tracing]({rel_path(plot, out)})", "",
              "Mean restoring effect per block (± standard error over the prompts; % of that N's peak):", ""]
    header = ["block", *(f"{n} facts" for n in by_n)]
    rows = [[layer, *(f"{b['effect'][layer]:.4f} ± {b['stderr'][layer]:.4f} ({b['of_peak'][layer]:.0%})"
                      for b in by_n.values())] for layer in range(data["n_layers"])]
    lines += [table(header, rows), ""]
    large = {n: b for n, b in by_n.items() if int(n) >= 100}
    held = [n for n, b in large.items() if _blocks(b["window"]) == preset]
    widest = list(by_n.values())[-1]
    plateau = [layer for layer, share in enumerate(widest["of_peak"]) if share >= 0.8]
    share = widest["bootstrap"].get(preset, 0) / data["resamples"]
    verdict_word = ("holds" if large and len(held) == len(large) else "holds in part" if held else "does not hold")
    lowest = min(b["of_peak"][layer] for b in by_n.values() for layer in data["preset_layers"])
    lines += [f"Verdict: the `{data['preset']}` preset's window ({preset}) **{verdict_word}** at ≥ 100 facts: the "
              f"rule gives it at N = {', '.join(held) or 'none'} of {', '.join(large) or 'none measured'}; over "
              f"resamples of all {widest['n']} facts it gives {preset} in {share:.0%}. At {widest['n']} facts the "
              f"blocks at ≥ 80% of the peak (block {widest['peak_block']}) are "
              f"{', '.join(map(str, plateau))}: a plateau, over which where the 90% rule stops moves with the "
              f"sample; the preset's blocks are at ≥ {lowest:.0%} of the peak at every N.", ""]
    return lines


def c0_real_verdict(data: dict[str, Any], chosen: str = "2048:0.0001") -> tuple[str, str]:
    """Whether `chosen` (tokens:ridge) is a good default: each of its scores within C0_SCORE_SLACK of the best
    configuration's and its perplexity within C0_PERPLEXITY_SLACK of the base model's."""
    configs, base = data["configs"], data["base"]
    if chosen not in configs:
        return "not measured", f"{chosen} was not run"
    mine = configs[chosen]
    short = [m for m in REAL_SEQUENCE_SCORED
             if mine[m] < max(c[m] for c in configs.values()) - C0_SCORE_SLACK]
    perplexity_ok = mine["perplexity"] <= (1 + C0_PERPLEXITY_SLACK) * base["perplexity"]
    good = not short and perplexity_ok
    why = (f"its efficacy / generalization / specificity {pct_triple(mine)} are "
           + (f"below the best configuration's by more than {C0_SCORE_SLACK:.2f} in {', '.join(short)}" if short
              else f"within {C0_SCORE_SLACK:.2f} of the best configuration's")
           + f", and its perplexity {mine['perplexity']:.3g} is {mine['perplexity'] / base['perplexity'] - 1:+.1%} "
           f"against the base model's {base['perplexity']:.3g} (allowed: +{C0_PERPLEXITY_SLACK:.0%})")
    return ("good" if good else "not good"), why


def c0_real_section(record: dict[str, Any] | None) -> list[str]:
    """C0's sample size and the solves' ridge on SmolLM2 (`python -m benchmarks.real_c0`, run on its own)."""
    lines, data = section_data("4g. C0 sample size and the solves' ridge on SmolLM2", record,
                               "python -m benchmarks.real_c0", needs="configs")
    if data is None:
        return lines
    base = data["base"]
    lines += [f"{data['model']}, {data['method'].upper()} at the `{data['preset']}` preset with `solve_ridge` "
              f"set per row, on the first {data['facts']} CounterFact facts the model knows, in {data['rounds']} "
              f"rounds of {data['round_size']} through `Workspace.edit` into a fresh ledger per row; C0 from text "
              f"the model sampled ({data['tokens_per_text']} tokens a text, seed 0; the edited blocks' keys are "
              f"1,536 wide, so below 1,536 tokens C0 is singular). Measured on the last version: efficacy / "
              f"generalization / specificity in % (CounterFact protocol, no greedy generation) and perplexity on "
              f"held-out sampled text ({data['general_text']}, in no C0). Sampling time: the seconds to sample "
              f"that C0's text (one thread). Each row is one run: one fact of {data['facts']} is "
              f"{100 / data['facts']:.1f} points of efficacy.", ""]
    rows = [["base model (unedited)", "", "", pct_triple(base), base["perplexity"], "", ""]]
    for name, c in sorted(data["configs"].items(), key=lambda item: (item[1]["tokens"], item[1]["ridge"])):
        rows.append([name, c["tokens"], f"{c['ridge']:g}", pct_triple(c), c["perplexity"],
                     data["sampling_seconds"].get(str(c["tokens"])), c["edit_seconds"]])
    lines += [table(["tokens:ridge", "C0 tokens", "ridge", "eff / gen / spec", "perplexity", "sampling s",
                     "edit s (2 rounds)"], rows), ""]
    word, why = c0_real_verdict(data)
    lines += [f"Verdict: 2,048 tokens at ridge 1e-4 (the demo's C0 and the default ridge) is **{word}** as a "
              f"default: {why}.", ""]
    return lines
