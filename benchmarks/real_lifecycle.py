"""The lifecycle on a real pretrained model from its PyPI package, end to end through `editor.lifecycle.Workspace`,
asserted and timed: the check for a model whose run does not fit the test suite's 10 minutes (Gemma-3-270m).

`python -m benchmarks.real_lifecycle --model gemma3-270m [--edits 20] [--quick] [--work DIR]`

- The model's GGUF file from its package (`editor.gguf.packaged_gguf`: Gemma's four chunk packages are joined and
  checked by SHA-256), converted once into `<work>/base` and recorded as a base model.
- C0 from text the model samples itself (`editor.corpus`), `--c0-texts` x 64 tokens, seed 0, kept in `<work>`.
- `--edits` CounterFact facts the model knows (`known_requests`), edited in one NSE round at the model's preset
  (`editor.hparams.MODEL_PRESETS`); `--quick`: the smallest lifecycle a test would run instead (2 facts, the
  preset's last 2 blocks, 12 z* steps, 1 context template, C0 from 8 x 32 tokens).
- Efficacy / generalization / specificity (`evaluate_requests`, no generation) before and after, on the version
  checked out and verified against its recorded state hash; one request reverted (its fact must answer otherwise
  than in the edited model); the branch replayed on its base bit for bit; `ledger.verify()`.

Fails (exit 1, naming the check) when any of those does not hold; the timed steps (wall and CPU seconds) and the
scores go to benchmarks/results/real_lifecycle-<model>[-quick].json, which `python -m benchmarks --report-only`
shows in BENCHMARKS.md. The ledger stays in `--work` (default a directory ignored by git) for
`python -m benchmarks.real_storage --ledger <work>/ledger --name NAME`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR, counterfact_file, offline_and_threads, save_results, say

SAMPLED_TOKENS = 64
QUICK = {"edits": 2, "texts": 8, "tokens": 32, "overrides": {"v_num_grad_steps": 12,
                                                            "extra": {"context_templates": 1}}}
SCORED = ("efficacy", "generalization", "specificity")


class LifecycleCheckError(Exception):
    """A lifecycle property that did not hold on the real model."""


def check(condition: bool, what: str) -> None:
    if not condition:
        raise LifecycleCheckError(what)


def run(model: str, work: Path, edits: int, c0_texts: int, quick: bool) -> dict[str, Any]:
    from transformers.utils import logging as hf_logging

    from editor.corpus import write_sampled_corpus
    from editor.demo import StepClock
    from editor.evaluate import evaluate_requests, score_targets
    from editor.gguf import SOURCE_KEY, packaged_gguf
    from editor.hparams import preset_overrides
    from editor.lifecycle import Workspace
    from editor.model import load_model
    from editor.readers import read_requests
    from editor.tracing import known_requests
    from ledger import Ledger

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    overrides = preset_overrides(model, "nse")
    texts, tokens = (QUICK["texts"], QUICK["tokens"]) if quick else (c0_texts, SAMPLED_TOKENS)
    if quick:
        edits = QUICK["edits"]
        overrides = {**overrides, "layers": overrides["layers"][-2:], **QUICK["overrides"]}
    ledger_dir = work / "ledger"
    if ledger_dir.exists():
        shutil.rmtree(ledger_dir)  # the run's own ledger: the conversion and the corpus beside it are kept
    ledger_dir.mkdir(parents=True)
    clock = StepClock()
    ledger = Ledger.init(ledger_dir)
    ws = Workspace(ledger, device="cpu")

    say(f"{model}: GGUF from its package, converted once into {work / 'base'}")
    with clock.step("GGUF (assembled) and base model (converted once)"):
        gguf = packaged_gguf(model, work)
        base = ws.add_model_gguf(model, gguf, out=work / "base", author="benchmark")
    with clock.step(f"C0 text sampled ({texts} x {tokens} tokens, once) and known facts found"):
        loaded = load_model(work / "base", device="cpu")
        corpus = work / f"sampled-{texts}x{tokens}-seed0.txt"
        if not corpus.is_file():
            write_sampled_corpus(loaded, corpus, texts, tokens, seed=0)
        facts = known_requests(loaded, read_requests(counterfact_file()), edits)
    check(len(facts) == edits, f"only {len(facts)} CounterFact facts the model knows (wanted {edits})")
    with clock.step("evaluation before"):
        before = evaluate_requests(loaded.model, loaded.tokenizer, facts, generation=False)
    del loaded

    say(f"one NSE round of {edits} facts at {overrides}")
    with clock.step("edit (C0 statistics included)"):
        (version,) = ws.edit(facts, batch_size=edits, author="benchmark", corpus=corpus, overrides=overrides,
                             reason="real lifecycle check")
    with clock.step("checkout (verified) and evaluation after"):
        edited, checked = ws.checkout_model(version.commit_hash)
        after = evaluate_requests(edited.model, edited.tokenizer, facts, generation=False)
    check(checked.state_hash == version.state_hash != base.state_hash,
          "checkout: the edited model's state hash is not the recorded one, or equals the base's")
    check(after.aggregate["efficacy"] > before.aggregate["efficacy"], "edit: efficacy did not rise")

    reverted_fact = facts[0]
    asked = [(reverted_fact.text, reverted_fact.target_new)]
    edited_nll = score_targets(edited.model, edited.tokenizer, asked)[0].nll
    with clock.step("revert one request and check it out"):
        reverted = ws.revert(reverted_fact.request_key, author="benchmark", reason="wrong source")
        back, _ = ws.checkout_model(reverted.commit_hash)
        back_scores = evaluate_requests(back.model, back.tokenizer, facts, generation=False).per_request
        back_nll = score_targets(back.model, back.tokenizer, asked)[0].nll
    check(reverted.state_hash not in (version.state_hash, base.state_hash),
          "revert: its state hash is the edited model's or the base's")
    check(back_nll != edited_nll, "revert: the reverted fact's new answer scores as in the edited model")
    with clock.step("replay bit-exact and verify"):
        steps = ws.replay_same_base("main")
        verified = ledger.verify()
    check(bool(steps) and all(step.ok for step in steps), "replay: a version's state hash was not reproduced")
    check(verified.ok, "verify: the ledger did not verify")

    return {
        "model": model, "quick": quick, "edits": edits, "c0_tokens_per_text": tokens, "c0_texts": texts,
        "overrides": overrides, "base_state_hash": base.state_hash,
        "gguf_sha256": ledger.base_model(model).config[SOURCE_KEY]["sha256"],
        "scores_before": {k: before.aggregate.get(k) for k in SCORED},
        "scores_after": {k: after.aggregate.get(k) for k in SCORED},
        "reverted_fact": {"case_id": reverted_fact.case_id, "efficacy_before": before.per_request[0].get("efficacy"),
                          "efficacy_edited": after.per_request[0].get("efficacy"),
                          "efficacy_after_revert": back_scores[0].get("efficacy"),
                          "new_answer_nll_edited": edited_nll, "new_answer_nll_after_revert": back_nll},
        "others_efficacy_after_revert": sum(r.get("efficacy", 0.0) for r in back_scores[1:]) / max(1, edits - 1),
        "replayed": len(steps), "replayed_ok": sum(step.ok for step in steps), "verify_ok": verified.ok,
        "steps": [{"step": s.step, "wall_seconds": round(s.wall_seconds, 1), "cpu_seconds": round(s.cpu_seconds, 1)}
                  for s in clock.steps],
        "wall_seconds": round(sum(s.wall_seconds for s in clock.steps), 1),
        "cpu_seconds": round(sum(s.cpu_seconds for s in clock.steps), 1),
    }


def main() -> None:
    from editor.gguf import PACKAGED_MODELS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(PACKAGED_MODELS), default="gemma3-270m")
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--c0-texts", type=int, default=32, help="sampled texts of 64 tokens for C0")
    parser.add_argument("--quick", action="store_true", help="the smallest lifecycle (what a test would run)")
    parser.add_argument("--work", type=Path, help="default benchmarks/results/real_lifecycle-<model>-work/")
    args = parser.parse_args()
    if args.edits < 2 or args.c0_texts < 1:
        parser.error("--edits must be at least 2 (one is reverted) and --c0-texts positive")
    offline_and_threads()
    work = args.work or RESULTS_DIR / f"real_lifecycle-{args.model}-work"
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        data = run(args.model, work, args.edits, args.c0_texts, args.quick)
    except LifecycleCheckError as error:
        print(f"real lifecycle on {args.model}: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    section = f"real_lifecycle-{args.model}" + ("-quick" if args.quick else "")
    # Not the report's "quick run" of its sections: --quick is a size of this check, kept in its data and name.
    print(save_results(section, data, False, time.perf_counter() - started))


if __name__ == "__main__":
    main()
