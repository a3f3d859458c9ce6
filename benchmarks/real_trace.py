"""Causal tracing on SmolLM2-135M-Instruct over many facts: does the window rule give the `smollm2-135m` preset's
blocks when it sees more facts than the 32 it was chosen on?

`python -m benchmarks.real_trace [--facts 200] [--work DIR] [--resamples 1000]`

- The model and the facts: SmolLM2 converted once into `<work>/smollm2`; the first `--facts` CounterFact records it
  knows (`known_requests`, the list the real-model benchmarks share, kept in `<work>/facts.json`).
- One trace (`editor.tracing.trace_prompts`, seed 0, noise 3 σ) over all of them, each prompt's result appended to
  `<work>/trace-prompts.json` as it comes: a rerun resumes after the last saved prompt (the noise generator is
  advanced past the prompts already traced, so the numbers are those of one uninterrupted trace).
- For N in NS (the first N facts of that one trace, as a trace of N facts would give them): per block the mean
  restoring effect and its standard error over the prompts, P(true) clean and corrupted, the window the rule
  (`TraceResult.window`: 3 blocks ending at the last block within 90% of the peak) gives, and how often it gives
  each window over `--resamples` bootstrap resamples of the N prompts (seed 0).

Results: benchmarks/results/trace_real.json; `python -m benchmarks --report-only` puts them in BENCHMARKS.md
(section 4f, with the plot benchmarks/plots/trace_real.png).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.common import REAL_WORK, known_counterfact, offline_and_threads, real_model_dir, save_results, say

SECTION = "trace_real"
NS = (32, 50, 100, 200)
RESAMPLES = 1000
BOOTSTRAP_SEED = 0
SAVE_EVERY = 5  # prompts between saves of the per-prompt file (each takes about a second)
PRESET = "smollm2-135m"


def window_counts(effects, resamples: int, seed: int) -> dict[str, int]:
    """How often the window rule gives each window over `resamples` bootstrap resamples of the prompts (rows of
    `effects`, one per prompt, one column per block)."""
    import numpy as np

    from editor.tracing import TraceResult

    rows = np.asarray(effects, dtype=np.float64)
    rng = np.random.default_rng(seed)
    counts: Counter[str] = Counter()
    for _ in range(resamples):
        mean = rows[rng.integers(0, len(rows), len(rows))].mean(axis=0)
        window = TraceResult(len(rows), 0.0, 0.0, mean.tolist(), 0.0, 0).window()
        counts[f"{window[0]}-{window[-1]}"] += 1
    return dict(counts.most_common())


def summary(prompts: list, resamples: int) -> dict[str, Any]:
    """The trace of `prompts` (PromptTrace), its spread over the prompts, its window and the bootstrap's."""
    import numpy as np

    from editor.tracing import combine

    result = combine(prompts)
    effects = np.asarray([p.effect for p in prompts], dtype=np.float64)
    stderr = effects.std(axis=0, ddof=1) / np.sqrt(len(prompts)) if len(prompts) > 1 else np.zeros(effects.shape[1])
    peak = max(result.effect)
    return {"n": len(prompts), "clean": result.clean, "corrupted": result.corrupted, "effect": result.effect,
            "stderr": stderr.tolist(), "peak_block": result.effect.index(peak),
            "of_peak": [value / peak for value in result.effect], "window": result.window(),
            "bootstrap": window_counts(effects, resamples, BOOTSTRAP_SEED)}


def load_traced(path: Path, keys: list[str]) -> list:
    """The per-prompt traces saved in `path`, when they are a prefix of this run's facts (else none: started over)."""
    from editor.tracing import PromptTrace

    if not path.is_file():
        return []
    saved = [PromptTrace(**row) for row in json.loads(path.read_text(encoding="utf-8"))]
    if [p.request_key for p in saved] != keys[:len(saved)]:
        say(f"{path.name}: traced other facts; tracing again")
        return []
    return saved


def save_traced(path: Path, traced: list) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps([p.to_dict() for p in traced]) + "\n", encoding="utf-8")
    partial.replace(path)


def run(args: argparse.Namespace) -> int:
    offline_and_threads()
    from transformers.utils import logging as hf_logging

    from editor.hparams import preset_overrides
    from editor.model import load_model
    from editor.tracing import KEEP_FRACTION, NOISE_SCALE, WINDOW_WIDTH, trace_prompts

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    loaded = load_model(real_model_dir(work), device="cpu")
    known = known_counterfact(work, loaded)
    if len(known) < args.facts:
        say(f"--facts {args.facts}: the model knows {len(known)} CounterFact facts; tracing those")
    facts = known[:args.facts]
    keys = [r.request_key for r in facts]
    per_prompt = work / "trace-prompts.json"
    times_path = work / "trace-seconds.json"  # the trace's seconds over every run that added prompts
    traced = load_traced(per_prompt, keys)
    seconds = json.loads(times_path.read_text(encoding="utf-8"))["seconds"] if traced and times_path.is_file() else 0.0
    say(f"tracing {len(facts)} facts ({len(traced)} already traced)")
    started = time.perf_counter()
    for prompt in trace_prompts(loaded, facts, skip=len(traced)):
        traced.append(prompt)
        if len(traced) % SAVE_EVERY == 0 or len(traced) == len(facts):
            save_traced(per_prompt, traced)
            elapsed = seconds + time.perf_counter() - started
            times_path.write_text(json.dumps({"seconds": elapsed}) + "\n", encoding="utf-8")
            say(f"  {len(traced)}/{len(facts)} traced ({elapsed:.0f} s)")
    seconds += time.perf_counter() - started
    ns = [n for n in NS if n < len(traced)] + [len(traced)]
    data = {"model": "SmolLM2-135M-Instruct (GGUF Q4_1, float32)", "n_layers": loaded.arch.n_layers,
            "facts": len(traced), "noise_scale": NOISE_SCALE, "seed": 0, "keep": KEEP_FRACTION,
            "width": WINDOW_WIDTH, "resamples": args.resamples, "bootstrap_seed": BOOTSTRAP_SEED,
            "preset": PRESET, "preset_layers": preset_overrides(PRESET, "nse")["layers"],
            "trace_seconds": seconds, "by_n": {str(n): summary(traced[:n], args.resamples) for n in ns}}
    for n, block in data["by_n"].items():
        say(f"{n} facts: window {block['window']}, peak block {block['peak_block']}, clean {block['clean']:.3f}, "
            f"corrupted {block['corrupted']:.3f}, bootstrap {block['bootstrap']}")
    print(save_results(SECTION, data, False, seconds))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.real_trace", description=__doc__.splitlines()[0])
    parser.add_argument("--facts", type=int, default=max(NS))
    parser.add_argument("--work", type=Path, default=REAL_WORK, help="conversion, known facts and per-prompt "
                                                                     "traces (default: bench-real in the temp dir)")
    parser.add_argument("--resamples", type=int, default=RESAMPLES)
    args = parser.parse_args(argv)
    for name in ("facts", "resamples"):
        if getattr(args, name) < 2:
            print(f"error: --{name} {getattr(args, name)}: must be at least 2", file=sys.stderr)
            return 2
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
