"""Sequential editing quality: the paper's claim in miniature, on clean preservation metrics.

Counterfactual edits are applied in rounds to a fact world's model with each method (the engine directly:
`EditState` + `run_round`, no ledger). The edits come from the world's editable facts (`facts.json`); everything
that measures preservation reads facts no edit touches (`preserved.json`, see `editor.world`). After every round:
- on every request edited so far: efficacy, generalization (teacher forced, CounterFact protocol), generation
  efficacy and generalization (greedy continuation starts with the new object), specificity (neighbourhood prompts,
  all of them never-edited facts);
- retention: efficacy on the first round's requests;
- preserved knowledge: the share of never-edited facts whose rewrite prompt still says their true object first;
- perplexity change against the unedited model on held-out text (filler and never-edited facts) and on general
  text (filler only); fluency (n-gram entropy of sampled generations).
Each method's hyperparameters come from one small sweep, the same for every method (`sweep`): λ for NSE, MEMIT
and MEMIT-Cp, the null-space threshold and L2 for AlphaEdit, each scored on a validation split of editable facts
that the sequence never edits, by the harmonic mean of efficacy, generalization and specificity.

Run alone: `python -m benchmarks.quality [--quick]`.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from benchmarks.common import edit_state, offline_and_threads, portable_path, say, section_main, world

FLUENCY_PROMPTS = 10
FLUENCY_TOKENS = 30
LAMBDA_GRID = (0.03, 0.1, 0.3, 1.0)  # λ in units of d_ff (the derived default is 0.3)
NULLSPACE_GRID = (0.005, 0.02, 0.1)  # AlphaEdit: eigenvalues of C0 below this share of the largest span its null space
L2_GRID = (0.1, 1.0, 10.0)  # the published 10 is 23-34% of |k|^2 at the fact worlds' edited layers 1-2


@dataclass(frozen=True)
class Variant:
    """One line in the plots: a method, hyperparameter overrides, and whether z* is rewound to the base model."""

    name: str
    method: str
    overrides: dict[str, Any] = field(default_factory=dict)
    rewind: bool = True  # False: z* on the current model each round (NSE's "without rewinding" ablation)
    description: str = ""


METHODS = (
    Variant("nse", "nse", description="NSE (rewinding, neuron selection, up to max_iterations passes)"),
    Variant("memit", "memit", description="MEMIT, sequential rounds, no Cp"),
    Variant("memit-cp", "memit-cp", description="MEMIT with Cp (earlier edits' keys in the solve)"),
    Variant("alphaedit", "alphaedit", description="AlphaEdit (null-space projection of C0)"),
)
ABLATIONS = (
    Variant("nse-no-rewind", "nse", rewind=False, description="NSE without rewinding: z* on the current model"),
    Variant("nse-p1", "nse", {"neuron_threshold": 1.0}, description="NSE without neuron selection (p = 1)"),
    Variant("nse-one-pass", "nse", {"max_iterations": 2}, description="NSE with a single update pass"),
)
# MEMIT with NSE's swept λ over the whole sequence: the claim compared at the same λ (the sweep's scores for MEMIT
# lie within 0.001 of each other at 0.03 and 0.1 d_ff, so its own choice is a coin toss between them).
MATCHED = (Variant("memit-at-nse-lambda", "memit", description="MEMIT with NSE's swept λ"),)


@dataclass
class Preservation:
    """What the preservation metrics read, and the unedited model's perplexities to compare with."""

    preserved: list
    heldout: list[str]
    general: list[str]
    base_heldout: float = 0.0
    base_general: float = 0.0


def _lines(path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def preservation(info, model, tokenizer) -> Preservation:
    from editor.evaluate import perplexity

    kept = Preservation(info.preserved_requests(), _lines(info.heldout_path), _lines(info.general_path))
    kept.base_heldout = perplexity(model, tokenizer, kept.heldout)
    kept.base_general = perplexity(model, tokenizer, kept.general)
    return kept


def _fluency_prompts(requests: list) -> list[str]:
    prompts = [p.text for r in requests for p in r.prompts("generation")]
    return (prompts or [r.text for r in requests])[:FLUENCY_PROMPTS]


def harmonic_mean(values: list[float | None]) -> float:
    present = [v for v in values if v is not None]
    return statistics.harmonic_mean(present) if present and min(present) > 0 else 0.0


# What a sweep maximises (their harmonic mean): edits that hold and generalize, neighbours that keep their answers,
# and never-edited facts still known. A saved sweep without a recorded criterion used the first three only.
SWEEP_CRITERION = ("efficacy", "generalization", "specificity", "preserved_knowledge")
EARLIER_CRITERION = SWEEP_CRITERION[:3]


def sweep_score(trial: dict[str, Any], criterion: tuple[str, ...] = SWEEP_CRITERION) -> float:
    return harmonic_mean([trial.get(metric) for metric in criterion])


def best_setting(trials: list[dict[str, Any]], criterion: tuple[str, ...] = SWEEP_CRITERION) -> dict[str, Any]:
    """The overrides of the best-scoring trial (ties: the first)."""
    return max(trials, key=lambda trial: sweep_score(trial, criterion))["overrides"]


def _scores(model, tokenizer, edited: list, first_round: list, fluency_prompts: list[str],
            kept: Preservation) -> dict[str, float | None]:
    from editor.evaluate import evaluate_requests, fluency_score, perplexity, score_targets

    everything = evaluate_requests(model, tokenizer, edited).aggregate if edited else {}
    first = evaluate_requests(model, tokenizer, first_round).aggregate if first_round else {}
    known = score_targets(model, tokenizer, [(r.text, r.target_true) for r in kept.preserved])
    heldout, general = perplexity(model, tokenizer, kept.heldout), perplexity(model, tokenizer, kept.general)
    return {
        **{metric: everything.get(metric) for metric in ("efficacy", "generalization", "generation_efficacy",
                                                         "generation_generalization", "specificity",
                                                         "efficacy_argmax", "specificity_argmax")},
        "retention_first": first.get("efficacy"),
        "preserved_knowledge": sum(s.first_token_correct for s in known) / max(len(known), 1),
        "fluency": fluency_score(model, tokenizer, fluency_prompts, seed=0, max_new_tokens=FLUENCY_TOKENS),
        "heldout_perplexity": heldout,
        "heldout_perplexity_change": heldout / kept.base_heldout - 1.0,
        "general_perplexity_change": general / kept.base_general - 1.0,
        "score": harmonic_mean([everything.get("efficacy"), everything.get("generalization"),
                                everything.get("specificity")]) if edited else None,
    }


def run_sequence(info, variant: Variant, requests: list, round_size: int, *,
                 every_round: bool = True) -> dict[str, Any]:
    """Apply `requests` in rounds with one variant; score after every round (or, `every_round=False`, only after
    the last). An engine error ends the sequence (recorded, so the report shows how far it got)."""
    from editor.engine import rewrite_weights_copy
    from editor.evaluate import evaluate_requests
    from editor.rounds import run_round

    state = edit_state(info, variant.method, variant.overrides)
    model, tokenizer = state.loaded.model, state.loaded.tokenizer
    kept = preservation(info, model, tokenizer)
    rounds = [requests[i : i + round_size] for i in range(0, len(requests), round_size)]
    fluency_prompts = _fluency_prompts(requests)
    history = [{"round": 0, "n_edited": 0, "edit_seconds": 0.0, "round_efficacy": None,
                **_scores(model, tokenizer, [], [], fluency_prompts, kept)}]
    result: dict[str, Any] = {"variant": variant.name, "method": variant.method, "overrides": variant.overrides,
                              "rewind": variant.rewind, "description": variant.description,
                              "hparams": state.hparams.to_dict(), "round_size": round_size,
                              "n_requests": len(requests), "history": history, "error": None}
    edited: list = []
    for number, batch in enumerate(rounds, 1):
        if not variant.rewind:
            # z* on the current model: make the current weights the ones NSE rewinds to, and forget cached z*.
            state.original_weights = rewrite_weights_copy(state.loaded)
            state.zstar_cache.clear()
        started = time.perf_counter()
        try:
            outcome = run_round(state, batch, variant.method)
        except Exception as error:  # a failing method is a result to report, not a crash
            result["error"] = f"round {number}: {type(error).__name__}: {error}"
            say(f"  {variant.name}: {result['error']}")
            break
        seconds = time.perf_counter() - started
        edited.extend(batch)
        if not every_round and number < len(rounds):
            history.append({"round": number, "n_edited": len(edited), "edit_seconds": seconds})
            continue
        round_efficacy = evaluate_requests(model, tokenizer, batch).aggregate.get("efficacy")
        statuses = Counter(o.status for o in outcome.outcomes)
        history.append({"round": number, "n_edited": len(edited), "edit_seconds": seconds,
                        "round_efficacy": round_efficacy, "statuses": dict(statuses),
                        "neurons_touched": sum(len(f.neurons) for f in outcome.footprint),
                        **_scores(model, tokenizer, edited, rounds[0], fluency_prompts, kept)})
        last = history[-1]
        say(f"  {variant.name} round {number}/{len(rounds)}: {seconds:.1f}s edit, efficacy {last['efficacy']:.3f}, "
            f"generation {last['generation_efficacy']:.3f}, retention {last['retention_first']:.3f}, "
            f"specificity {last['specificity'] or 0:.3f}, preserved {last['preserved_knowledge']:.3f}")
    result["edit_seconds_total"] = sum(h["edit_seconds"] for h in history)
    result["final"] = history[-1]
    return result


def sweep_grid(method: str, d_ff: int) -> list[dict[str, Any]]:
    """The overrides one sweep tries for `method`: the same few λ for the methods that have one, the null-space
    threshold x L2 for AlphaEdit (whose update has no λ)."""
    if method == "alphaedit":
        return [{"nullspace_threshold": t, "L2": l2} for t in NULLSPACE_GRID for l2 in L2_GRID]
    return [{"mom2_update_weight": float(round(f * d_ff))} for f in LAMBDA_GRID]


def sweep(info, validation: list, round_size: int, variants: tuple[Variant, ...] | list[Variant] = METHODS,
          ) -> dict[str, Any]:
    """Each method's grid on the validation requests (in rounds of `round_size`), scored at the end by
    `sweep_score`; the best setting per method."""
    from editor.model import load_model

    d_ff = load_model(info.model_dir, device="cpu").arch.d_ff
    chosen: dict[str, Any] = {}
    for variant in variants:
        trials = []
        for overrides in sweep_grid(variant.method, d_ff):
            run = run_sequence(info, replace(variant, overrides=overrides), validation, round_size,
                               every_round=False)
            final = run["final"]
            trial = {"overrides": overrides, **{m: final.get(m) for m in ("efficacy", "generalization",
                                                                         "generation_efficacy", "specificity",
                                                                         "preserved_knowledge")}}
            trials.append({**trial, "score": sweep_score(trial)})
            say(f"  sweep {variant.name} {overrides}: score {trials[-1]['score']:.3f}")
        chosen[variant.name] = {"trials": trials, "best": best_setting(trials)}
    return {"d_ff": d_ff, "n_validation": len(validation), "round_size": round_size,
            "criterion": list(SWEEP_CRITERION), "methods": chosen}


@dataclass(frozen=True)
class Plan:
    world: str
    round_size: int
    n_edits: int  # per method: the world's first editable facts
    n_ablation_edits: int
    n_validation: int  # the sweep's requests: the editable facts after the sequence's, never edited by it


def plan(quick: bool) -> Plan:
    """Full: the default world, 2,000 edits per method and 1,000 per NSE ablation in rounds of 100, a sweep on
    200 other editable facts. Quick: the small world, 100 edits in rounds of 25, a sweep on 50."""
    return Plan("small", 25, 100, 100, 50) if quick else Plan("default", 100, 2000, 1000, 200)


def run(quick: bool = False, variants: tuple[str, ...] = ()) -> dict[str, Any]:
    """Sweep, then the sequence, for every variant (or those named in `variants`; an NSE ablation uses NSE's
    sweep, as does `memit-at-nse-lambda`, run only when named; sweeps a saved run of this world made are reused)."""
    offline_and_threads()
    chosen = plan(quick)
    started = time.perf_counter()
    say(f"quality: building/loading world {chosen.world!r}")
    info = world(chosen.world)
    requests = info.requests()
    if len(requests) < chosen.n_edits + chosen.n_validation:
        raise SystemExit(f"world {chosen.world!r}: {len(requests)} editable facts, the plan needs "
                         f"{chosen.n_edits + chosen.n_validation}")
    sequence = requests[: chosen.n_edits]
    validation = requests[chosen.n_edits : chosen.n_edits + chosen.n_validation]
    wanted = [v for v in METHODS + ABLATIONS + MATCHED if (v not in MATCHED and not variants) or v.name in variants]
    swept_names = {v.name for v in wanted if v in METHODS} | ({"nse"} if any(v not in METHODS for v in wanted)
                                                              else set())
    saved = _saved_sweeps(info.state_hash, quick)
    say(f"quality: world {chosen.world!r}: {info.n_facts} facts, sweeping {sorted(swept_names - set(saved))} on "
        f"{len(validation)} validation edits (saved: {sorted(swept_names & set(saved))})")
    swept = sweep(info, validation, chosen.round_size,
                  [v for v in METHODS if v.name in swept_names and v.name not in saved])
    for name in swept_names & set(saved):  # rescored: a saved sweep may have used an earlier criterion
        trials = [{**trial, "score": sweep_score(trial)} for trial in saved[name]["trials"]]
        swept["methods"][name] = {"trials": trials, "best": best_setting(trials)}
    runs = {}
    for variant in wanted:
        best = swept["methods"][variant.name if variant in METHODS else "nse"]["best"]
        tuned = replace(variant, overrides={**best, **variant.overrides})
        n_edits = chosen.n_ablation_edits if variant in ABLATIONS else chosen.n_edits
        say(f"quality: {chosen.world} / {variant.name} {tuned.overrides}: {n_edits} edits")
        runs[variant.name] = run_sequence(info, tuned, sequence[:n_edits], chosen.round_size)
    block = {
        "world": {"preset": info.preset, "source": portable_path(info.source), "n_facts": info.n_facts,
                  "n_editable": len(requests), "n_preserved": len(info.preserved_requests()),
                  "accuracy": info.accuracy, "paraphrase_accuracy": info.paraphrase_accuracy,
                  "build_seconds": info.build_seconds, "state_hash": info.state_hash,
                  "edit_hparams": info.edit_hparams},
        "n_edits": chosen.n_edits, "n_ablation_edits": chosen.n_ablation_edits, "round_size": chosen.round_size,
        "sweep": swept, "runs": runs, "seconds": time.perf_counter() - started,
    }
    return {"worlds": {chosen.world: block}, "fluency_prompts": FLUENCY_PROMPTS, "fluency_tokens": FLUENCY_TOKENS}


def _saved_sweeps(state_hash: str, quick: bool) -> dict[str, Any]:
    """The sweeps a saved run of the same world already made (a part run later reuses them)."""
    from benchmarks.common import load_results

    previous = load_results("quality")
    if previous is None or bool(previous.get("quick")) != quick:
        return {}
    return next((block.get("sweep", {}).get("methods", {}) for block in previous["data"]["worlds"].values()
                 if block["world"]["state_hash"] == state_hash), {})


def run_part(variants: tuple[str, ...], quick: bool) -> None:
    """Run some variants and merge them into the saved results (one process per core: `--variants nse
    nse-no-rewind ...` beside `--variants memit ...`), under a lock so two parts finishing together both land."""
    import fcntl

    from benchmarks.common import RESULTS_DIR, load_results, save_results

    fresh = run(quick=quick, variants=variants)
    with open(RESULTS_DIR / ".quality.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        previous = load_results("quality")
        if previous is None or bool(previous.get("quick")) != quick:
            save_results("quality", fresh, quick, sum(b["seconds"] for b in fresh["worlds"].values()))
            return
        data = previous["data"]
        for name, block in fresh["worlds"].items():
            old = data["worlds"].get(name)
            if old is None or old["world"]["state_hash"] != block["world"]["state_hash"]:
                data["worlds"][name] = block
                continue
            old["runs"].update(block["runs"])
            old["sweep"]["methods"].update(block["sweep"]["methods"])
            old["seconds"] = old["seconds"] + block["seconds"]
        save_results("quality", data, quick, previous["seconds"] + sum(b["seconds"] for b in fresh["worlds"].values()))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--variants", nargs="+", default=[], help="run only these variants and merge them into "
                        "the saved results (e.g. --variants memit memit-cp alphaedit)")
    arguments = parser.parse_args()
    if arguments.variants:
        run_part(tuple(arguments.variants), arguments.quick)
    else:
        section_main("quality", run, __doc__.splitlines()[0])
