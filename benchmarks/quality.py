"""Sequential editing quality: the paper's claim in miniature.

Counterfactual edits are applied in rounds to a fact world's model with each method (the engine directly:
`EditState` + `run_round`, no ledger); after every round the model is scored on every request edited so far
(efficacy, generalization, specificity), on the first round's requests (retention), on sampled generations
(fluency) and on held-out text (perplexity change against the unedited model).

Run alone: `python -m benchmarks.quality [--quick]`; `--world counterfact` runs that world's plan again and
updates the saved results.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import (
    edit_state,
    load_results,
    offline_and_threads,
    portable_path,
    save_results,
    say,
    section_main,
    world,
)

METRICS = ("efficacy", "generalization", "specificity", "fluency", "perplexity_change", "retention_first")
FLUENCY_PROMPTS = 10
FLUENCY_TOKENS = 30


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


def _fluency_prompts(requests: list) -> list[str]:
    prompts = [p.text for r in requests for p in r.prompts("generation")]
    return (prompts or [r.text for r in requests])[:FLUENCY_PROMPTS]


def _scores(model, tokenizer, edited: list, first_round: list, fluency_prompts: list[str], heldout: list[str],
            base_perplexity: float) -> dict[str, float | None]:
    from editor.evaluate import evaluate_requests, fluency_score, perplexity

    everything = evaluate_requests(model, tokenizer, edited).aggregate if edited else {}
    first = evaluate_requests(model, tokenizer, first_round).aggregate if first_round else {}
    ppl = perplexity(model, tokenizer, heldout)
    return {
        "efficacy": everything.get("efficacy"),
        "generalization": everything.get("generalization"),
        "specificity": everything.get("specificity"),
        "efficacy_argmax": everything.get("efficacy_argmax"),
        "specificity_argmax": everything.get("specificity_argmax"),
        "retention_first": first.get("efficacy"),
        "fluency": fluency_score(model, tokenizer, fluency_prompts, seed=0, max_new_tokens=FLUENCY_TOKENS),
        "perplexity": ppl,
        "perplexity_change": ppl / base_perplexity - 1.0,
    }


def run_sequence(info, variant: Variant, requests: list, round_size: int) -> dict[str, Any]:
    """Apply `requests` in rounds with one variant; score after every round. An engine error ends the sequence
    (recorded, so the report shows how far it got) instead of the whole benchmark."""
    from editor.engine import rewrite_weights_copy
    from editor.evaluate import evaluate_requests, perplexity
    from editor.rounds import run_round

    state = edit_state(info, variant.method, variant.overrides)
    model, tokenizer = state.loaded.model, state.loaded.tokenizer
    heldout = [line for line in info.heldout_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    base_perplexity = perplexity(model, tokenizer, heldout)
    rounds = [requests[i : i + round_size] for i in range(0, len(requests), round_size)]
    fluency_prompts = _fluency_prompts(requests)
    history = [{"round": 0, "n_edited": 0, "edit_seconds": 0.0, "round_efficacy": None,
                **_scores(model, tokenizer, [], [], fluency_prompts, heldout, base_perplexity)}]
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
        round_efficacy = evaluate_requests(model, tokenizer, batch).aggregate.get("efficacy")
        statuses = Counter(o.status for o in outcome.outcomes)
        history.append({"round": number, "n_edited": len(edited), "edit_seconds": seconds,
                        "round_efficacy": round_efficacy, "statuses": dict(statuses),
                        "neurons_touched": sum(len(f.neurons) for f in outcome.footprint),
                        **_scores(model, tokenizer, edited, rounds[0], fluency_prompts, heldout, base_perplexity)})
        last = history[-1]
        say(f"  {variant.name} round {number}/{len(rounds)}: {seconds:.1f}s edit, efficacy {last['efficacy']:.3f}, "
            f"retention {last['retention_first']:.3f}, specificity {last['specificity'] or 0:.3f}")
    result["edit_seconds_total"] = sum(h["edit_seconds"] for h in history)
    result["final"] = history[-1]
    return result


def plans(quick: bool) -> list[tuple[str, int, list[tuple[Variant, int]]]]:
    """(world, round size, [(variant, edits)]). Full: the default world, 1,000 edits per method and 500 per
    ablation, rounds of 50; the first 500 CounterFact records, 100 edits per method (its 8-layer model with 50 z*
    steps edits about 4x slower than the default world's). Quick: the small world, 100 edits in rounds of 25.
    Sized so the full run fits in about an hour on 2 cores."""
    if quick:
        return [("small", 25, [(v, 100) for v in METHODS + ABLATIONS])]
    return [("default", 50, [(v, 1000) for v in METHODS] + [(v, 500) for v in ABLATIONS]),
            ("counterfact", 50, [(v, 100) for v in METHODS])]


def run(quick: bool = False, only: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every plan, or only the worlds named in `only`."""
    offline_and_threads()
    worlds: dict[str, Any] = {}
    for world_name, round_size, chosen in plans(quick):
        if only and world_name not in only:
            continue
        started = time.perf_counter()
        say(f"quality: building/loading world {world_name!r}")
        info = world(world_name)
        requests = info.requests()
        say(f"quality: world {world_name!r}: {info.n_facts} facts, rounds of {round_size}")
        runs = {}
        for variant, n_edits in chosen:
            say(f"quality: {world_name} / {variant.name}: {min(n_edits, len(requests))} edits")
            runs[variant.name] = run_sequence(info, variant, requests[:n_edits], round_size)
        worlds[world_name] = {
            "world": {"preset": info.preset, "source": portable_path(info.source), "n_facts": info.n_facts,
                      "accuracy": info.accuracy, "paraphrase_accuracy": info.paraphrase_accuracy,
                      "build_seconds": info.build_seconds, "state_hash": info.state_hash,
                      "edit_hparams": info.edit_hparams},
            "n_edits": max(run["n_requests"] for run in runs.values()), "round_size": round_size, "runs": runs,
            "seconds": time.perf_counter() - started,
        }
    return {"worlds": worlds, "fluency_prompts": FLUENCY_PROMPTS, "fluency_tokens": FLUENCY_TOKENS}


def rerun_worlds(names: tuple[str, ...]) -> Path:
    """Run the full plans of some worlds again and put them into the saved results beside the others."""
    previous = load_results("quality")
    if previous is None or previous.get("quick"):
        raise SystemExit("--world: needs a saved full quality run to update (python -m benchmarks.quality)")
    started = time.perf_counter()
    fresh = run(only=names)
    data = previous["data"]
    data["worlds"].update(fresh["worlds"])
    data.setdefault("reruns", []).append({"worlds": list(names), "seconds": time.perf_counter() - started})
    return save_results("quality", data, False, previous["seconds"])


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--world", nargs="+", default=[], help="run only these worlds' full plans again and put "
                        "them into the saved results (e.g. --world counterfact)")
    worlds = parser.parse_args().world
    if worlds:
        print(rerun_worlds(tuple(worlds)))
    else:
        section_main("quality", run, __doc__.splitlines()[0])
