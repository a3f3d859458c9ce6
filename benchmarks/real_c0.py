"""C0's sample size and the solves' ridge on SmolLM2-135M-Instruct: how many tokens of model-sampled text C0
needs, and what `solve_ridge` does when it has fewer tokens than the edited blocks' d_ff (1,536).

`python -m benchmarks.real_c0 [--configs 256:0,256:1e-6,...] [--work DIR]`

- The model and the facts: SmolLM2 converted once into `<work>/smollm2`; the first FACTS CounterFact records it
  knows (`known_requests`, the list the real-model benchmarks share).
- Each configuration (tokens of C0, ridge): C0 from `tokens / 64` texts of 64 tokens the model sampled (seed 0,
  written once into `<work>`; the seconds sampling took are recorded), then NSE at the `smollm2-135m` preset with
  `solve_ridge` = ridge, in ROUNDS rounds of ROUND_SIZE, through `editor.lifecycle.Workspace.edit` into a fresh
  SQLite ledger of its own (the path a user's edit takes: C0 computed and stored by the ledger, every round a
  recorded version), then the last version checked out and measured: efficacy / generalization / specificity of
  the FACTS requests (CounterFact protocol, `evaluate_requests`, no greedy generation), and perplexity on held-out
  text the model sampled (16 x 64 tokens, seed 1, the text `real_sequence` measures; never in any C0).
- The base model is measured the same way once.

Resumable: each configuration's result is written to benchmarks/results/c0_real.json as soon as it is measured,
and a rerun skips the configurations the file holds. `python -m benchmarks --report-only` puts them in
BENCHMARKS.md (section 4g).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    REAL_WORK,
    known_counterfact,
    load_results,
    offline_and_threads,
    real_model_dir,
    sampled_text,
    save_results,
    say,
)
from benchmarks.real_sequence import GENERAL_SEED, GENERAL_TEXTS, GENERAL_TOKENS, SCORED

SECTION = "c0_real"
PRESET = "smollm2-135m"
FACTS, ROUNDS = 40, 2
ROUND_SIZE = FACTS // ROUNDS
TOKENS_PER_TEXT = 64  # as the demo samples (32 x 64)
CONFIGS = ((256, 0.0), (256, 1e-6), (256, 1e-4), (1024, 1e-6), (1024, 1e-4), (2048, 1e-6), (2048, 1e-4),
           (4096, 1e-4), (8192, 1e-4))


class C0Error(Exception):
    """Bad arguments: one line, exit 2."""


def config_name(tokens: int, ridge: float) -> str:
    return f"{tokens}:{ridge:g}"


def parse_configs(text: str) -> list[tuple[int, float]]:
    """`TOKENS:RIDGE,...`, each TOKENS a positive multiple of TOKENS_PER_TEXT and RIDGE >= 0."""
    configs = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        try:
            tokens_text, ridge_text = item.split(":")
            tokens, ridge = int(tokens_text), float(ridge_text)
        except ValueError:
            raise C0Error(f"--configs {item!r}: expected TOKENS:RIDGE (e.g. 2048:1e-4)") from None
        if tokens < TOKENS_PER_TEXT or tokens % TOKENS_PER_TEXT or ridge < 0:
            raise C0Error(f"--configs {item!r}: TOKENS must be a positive multiple of {TOKENS_PER_TEXT}, "
                          f"RIDGE at least 0")
        configs.append((tokens, ridge))
    if not configs:
        raise C0Error("--configs: no configuration given")
    return configs


def scores(model, tokenizer, facts: list, general: list[str]) -> dict[str, Any]:
    from editor.evaluate import evaluate_requests, perplexity

    report = evaluate_requests(model, tokenizer, facts, generation=False)
    return {**{metric: report.aggregate.get(metric) for metric in SCORED},
            "perplexity": perplexity(model, tokenizer, general)}


def edit_and_measure(work: Path, model_dir: Path, facts: list, corpus: Path, ridge: float,
                     general: list[str]) -> dict[str, Any]:
    """The configuration's rounds in a fresh ledger, then the last version's scores (the ledger is removed)."""
    from editor.hparams import preset_overrides
    from editor.lifecycle import Workspace
    from ledger import Ledger

    root = work / f"ledger-{corpus.stem}-ridge{ridge:g}"
    if root.exists():  # a run killed in this configuration: its rounds are edited again
        shutil.rmtree(root)
    root.mkdir(parents=True)
    ws = Workspace(Ledger.init(root), device="cpu", progress=lambda line: say(f"  {line}"))
    ws.add_model("smollm2", model_dir, corpus=corpus, author="benchmark")
    overrides = {**preset_overrides(PRESET, "nse"), "solve_ridge": ridge}
    started = time.perf_counter()
    versions = ws.edit(facts, method="nse", batch_size=ROUND_SIZE, author="benchmark", corpus=corpus,
                       overrides=overrides, reason=f"real_c0: {corpus.name}, ridge {ridge:g}")
    edit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    edited, _ = ws.checkout_model(versions[-1].commit_hash)
    measured = scores(edited.model, edited.tokenizer, facts, general)
    del edited, ws
    shutil.rmtree(root)
    return {**measured, "edit_seconds": edit_seconds, "measure_seconds": time.perf_counter() - started,
            "rounds": len(versions), "overrides": overrides}


def run(args: argparse.Namespace, configs: list[tuple[int, float]]) -> int:
    offline_and_threads()
    for variable in ("EDITLEDGER_DB", "EDITLEDGER_STORE"):  # a benchmark ledger never goes to a shared database
        os.environ.pop(variable, None)
    from transformers.utils import logging as hf_logging

    from editor.model import load_model

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model_dir = real_model_dir(work)
    base = load_model(model_dir, device="cpu")
    facts = known_counterfact(work, base)[:FACTS]
    general_path, _ = sampled_text(base, work, GENERAL_TEXTS, GENERAL_TOKENS, GENERAL_SEED)
    general = [line for line in general_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    record = load_results(SECTION)
    data: dict[str, Any] = record["data"] if record else {
        "model": "SmolLM2-135M-Instruct (GGUF Q4_1, float32)", "method": "nse", "preset": PRESET, "facts": FACTS,
        "rounds": ROUNDS, "round_size": ROUND_SIZE, "tokens_per_text": TOKENS_PER_TEXT,
        "general_text": f"{GENERAL_TEXTS} x {GENERAL_TOKENS} tokens sampled, seed {GENERAL_SEED}",
        "fact_keys": [r.request_key for r in facts], "configs": {}, "sampling_seconds": {}}
    if data["fact_keys"] != [r.request_key for r in facts]:
        print(f"error: {SECTION}.json holds a run on other facts; move it away to measure again", file=sys.stderr)
        return 2
    seconds = record["seconds"] if record else 0.0

    def save() -> None:
        save_results(SECTION, data, False, seconds)

    if "base" not in data:
        started = time.perf_counter()
        data["base"] = scores(base.model, base.tokenizer, facts, general)
        seconds += time.perf_counter() - started
        save()
        say(f"base: {data['base']}")
    for tokens, ridge in configs:
        name = config_name(tokens, ridge)
        if name in data["configs"]:
            say(f"{name}: measured already, skipped")
            continue
        corpus, sampling = sampled_text(base, work, tokens // TOKENS_PER_TEXT, TOKENS_PER_TEXT, 0)
        if sampling is not None:
            data["sampling_seconds"][str(tokens)] = sampling
        say(f"{name}: {ROUNDS} NSE rounds of {ROUND_SIZE}")
        result = edit_and_measure(work, model_dir, facts, corpus, ridge, general)
        data["configs"][name] = {"tokens": tokens, "ridge": ridge, **result}
        seconds += (sampling or 0.0) + result["edit_seconds"] + result["measure_seconds"]
        save()
        say(f"{name}: eff/gen/spec " + " / ".join(f"{result[m]:.3f}" for m in SCORED)
            + f", perplexity {result['perplexity']:.4g}, edit {result['edit_seconds']:.0f} s")
    save()  # the command that completed the configurations asked, even when none was left to run
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.real_c0", description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(config_name(t, r) for t, r in CONFIGS),
                        help="TOKENS:RIDGE,... in the order to run them")
    parser.add_argument("--work", type=Path, default=REAL_WORK, help="conversion, sampled text, known facts and "
                                                                     "the ledgers (default: bench-real in the "
                                                                     "temp dir)")
    args = parser.parse_args(argv)
    try:
        configs = parse_configs(args.configs)
    except C0Error as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return run(args, configs)


if __name__ == "__main__":
    raise SystemExit(main())
