"""Engine speed on a GPT-2-style model of about 100M parameters (random weights, word tokenizer), made here.

Measures seconds per request for a round of 32 with each method and where they go (seconds per phase: z*,
keys, hidden states, solve, write, Cp, the outcome measurements); z* for 32 requests batched vs one request
at a time (goal >= 5x); C0 statistics for 5 layers in one pass vs one pass per layer (goal >= 3x);
checkout of a recorded version vs `from_pretrained` of the base on this model size (goal <= 1.3x); peak memory.
`python -m benchmarks.engine_speed [--quick]`; `run(quick) -> dict`.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import offline_and_threads

ROUND_SIZE = 32
EDIT_LAYERS = [3, 4, 5, 6, 7]
CHECKOUT_ROUNDS = 3
N_WORDS = 3000
FIRST = ("Anna", "Boris", "Clara", "David", "Elena", "Felix", "Greta", "Hugo")
PROMPTS = ("{} lives in the city of", "The mother tongue of {} is", "{} works as a", "{} plays the")


def make_model_dir(root: Path, quick: bool = False) -> Path:
    """GPT2Config(n_layer=12, n_embd=768) with a 3000-word word-level tokenizer: about 90M parameters
    (quick: n_embd=256, about 10M, to check that the benchmark runs)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = sorted(
        {w for p in PROMPTS for w in p.replace("{}", "").split()}
        | set(FIRST)
        | {f"w{i}" for i in range(N_WORDS)}
    )
    vocab = {"<|endoftext|>": 0, "<pad>": 1, "<unk>": 2, ".": 3}
    for word in words:
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        pad_token="<pad>",
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
    )
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(vocab),
            n_layer=12,
            n_embd=256 if quick else 768,
            n_head=4 if quick else 12,
            n_positions=256,
            bos_token_id=0,
            eos_token_id=0,
            pad_token_id=1,
        )
    )
    path = root / "gpt2-100m"
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def make_requests(count: int, seed: int = 0):
    from ledger.records import EditRequest

    rng = random.Random(seed)
    return [
        EditRequest(
            subject=f"{rng.choice(FIRST)} w{rng.randrange(N_WORDS)}",
            prompt=rng.choice(PROMPTS),
            target_new=f"w{rng.randrange(N_WORDS)}",
            case_id=str(i),
        )
        for i in range(count)
    ]


def corpus(count: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [
        " ".join(f"w{rng.randrange(N_WORDS)}" for _ in range(rng.randint(20, 60))) + " ."
        for _ in range(count)
    ]


def say(message: str) -> None:
    print(f"[engine_speed] {message}", file=sys.stderr, flush=True)


def timed(function, *args, **kwargs) -> tuple[Any, float]:
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - started


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def checkout_cost(path: Path, texts: list[str], grad_steps: int, repeats: int = 5) -> dict:
    """Record CHECKOUT_ROUNDS NSE rounds of 8 requests on a real SQLite ledger, then time the checkout of the
    last version (rebuilt from the base and the recorded changes, state hash verified) against `load_model`."""
    from benchmarks.common import median_seconds, workspace
    from editor.model import load_model

    with tempfile.TemporaryDirectory(prefix="editledger-bench-") as tmp:
        root = Path(tmp)
        corpus_path = root / "corpus.txt"
        corpus_path.write_text("\n".join(texts) + "\n", encoding="utf-8")
        info = type("Model", (), {"model_dir": path, "corpus_path": corpus_path})
        space = workspace(root / "ledger", info, name="gpt2-100m")
        overrides = {"layers": EDIT_LAYERS, "v_num_grad_steps": grad_steps, "mom2_n_samples": len(texts)}
        requests = make_requests(8 * CHECKOUT_ROUNDS, seed=7)
        versions = space.edit(requests, method="nse", batch_size=8, overrides=overrides)
        head = versions[-1].commit_hash
        space.checkout_model(head)  # the first checkout hashes the base in full and remembers its digests
        load_s = median_seconds(lambda: load_model(path, device="cpu"), repeats)
        checkout_s = median_seconds(lambda: space.checkout_model(head), repeats)
        space.full_verify = True
        full_s = median_seconds(lambda: space.checkout_model(head), repeats)
        delta_bytes = sum(a.size_bytes for v in versions for a in space.ledger.artifacts(v.commit_hash)
                          if a.role == "delta")
        space.ledger.close()
    return {"rounds": CHECKOUT_ROUNDS, "load_s": load_s, "checkout_s": checkout_s, "ratio": checkout_s / load_s,
            "full_verify_s": full_s, "full_verify_ratio": full_s / load_s, "delta_bytes": delta_bytes,
            "goal": 1.3}


def run(quick: bool = False) -> dict:
    offline_and_threads()
    from editor.determinism import apply_determinism
    from editor.engine import EditState
    from editor.hparams import derive_hparams
    from editor.model import load_model
    from editor.phases import timing_phases
    from editor.rounds import METHODS, run_round
    from editor.stats import second_moments, second_moments_one_layer_per_pass
    from editor.templates import generate_context_templates
    from editor.zstar import compute_zstar

    apply_determinism(0)
    # z* costs the same per step whatever the step count, so on 2 CPU cores the full run times 5 steps (seconds
    # per request scale linearly with v_num_grad_steps; the published 20-25 would take ~20 minutes here), and
    # times one request at a time on 8 of the 32 requests, scaled to 32.
    grad_steps = 3 if quick else 5
    stats_samples = 64 if quick else 256
    alone_count = 8
    with tempfile.TemporaryDirectory() as root:
        say("making the model")
        path = make_model_dir(Path(root), quick)
        loaded = load_model(path, device="auto")
        n_parameters = sum(p.numel() for p in loaded.model.parameters())
        texts = corpus(stats_samples)
        say("statistics")
        # A warm-up pass first: the first forward of a new model pays for allocations and thread start-up, which
        # would otherwise count against whichever variant runs first.
        second_moments(loaded, EDIT_LAYERS, texts[:16], 16, progress=False)
        c0_one_pass, one_pass_s = timed(
            second_moments, loaded, EDIT_LAYERS, texts, stats_samples, progress=False
        )
        _, per_layer_s = timed(
            second_moments_one_layer_per_pass, loaded, EDIT_LAYERS, texts, stats_samples, progress=False
        )
        templates = generate_context_templates(loaded, seed=0)
        hp = derive_hparams(loaded, "nse", layers=EDIT_LAYERS, v_num_grad_steps=grad_steps)
        requests = make_requests(ROUND_SIZE)
        say("z* batched and one at a time")
        _, batched_s = timed(compute_zstar, loaded, requests, templates, hp)
        alone_s = sum(timed(compute_zstar, loaded, [r], templates, hp)[1] for r in requests[:alone_count])
        alone_s *= ROUND_SIZE / alone_count
        methods = {}
        original = {name: w.clone() for name, w in loaded.model.state_dict().items()}
        for method in METHODS:
            say(f"round with {method}")
            loaded.model.load_state_dict(original)
            method_hp = derive_hparams(
                loaded,
                method,
                layers=EDIT_LAYERS if method != "rome" else EDIT_LAYERS[-1:],
                v_num_grad_steps=grad_steps,
            )
            state = EditState(loaded, method_hp, templates, c0_one_pass)
            batches = [[r] for r in requests[:4]] if method == "rome" else [requests]
            edited = sum(len(b) for b in batches)
            started = time.perf_counter()
            with timing_phases() as phases:
                for batch in batches:
                    run_round(state, batch, method)
            methods[method] = {
                "requests": edited,
                "seconds_per_request": (time.perf_counter() - started) / edited,
                "phase_seconds": dict(phases),
            }
        say("checkout of a recorded version vs from_pretrained")
        checkout = checkout_cost(path, texts, grad_steps)
    return {
        "quick": quick,
        "device": str(loaded.device),
        "parameters": n_parameters,
        "round_size": ROUND_SIZE,
        "v_num_grad_steps": grad_steps,
        "edit_layers": EDIT_LAYERS,
        "stats_samples": stats_samples,
        "methods": methods,
        "zstar": {
            "batched_s": batched_s,
            "one_at_a_time_s": alone_s,
            "speedup": alone_s / batched_s,
            "one_at_a_time_measured_on": alone_count,
            "goal": 5.0,
        },
        "stats": {
            "one_pass_s": one_pass_s,
            "one_pass_per_layer_s": per_layer_s,
            "speedup": per_layer_s / one_pass_s,
            "layers": len(EDIT_LAYERS),
            "goal": 3.0,
        },
        "checkout": checkout,
        "peak_rss_mb": peak_rss_mb(),
    }


def markdown(result: dict) -> str:
    lines = [
        f"Engine speed: GPT-2-style model, {result['parameters'] / 1e6:.0f}M parameters, "
        f"{result['device']}, {result['v_num_grad_steps']} z* steps, layers {result['edit_layers']}"
        f"{' (quick)' if result['quick'] else ''}",
        "",
        "| method | requests | s / request |",
        "|---|---|---|",
    ]
    for method, row in result["methods"].items():
        lines.append(f"| {method} | {row['requests']} | {row['seconds_per_request']:.2f} |")
    names = sorted({name for row in result["methods"].values() for name in row.get("phase_seconds", {})})
    if names:
        lines += ["", "Seconds per phase of those rounds (a phase inside another counts for the outer one):", "",
                  f"| method | {' | '.join(names)} |", "|---|" + "---|" * len(names)]
        for method, row in result["methods"].items():
            cells = [f"{row.get('phase_seconds', {}).get(name, 0.0):.2f}" for name in names]
            lines.append(f"| {method} | {' | '.join(cells)} |")
    z, s = result["zstar"], result["stats"]
    lines += [
        "",
        "| measurement | value | goal |",
        "|---|---|---|",
        f"| z* for {result['round_size']}: batched | {z['batched_s']:.1f} s | |",
        f"| z* for {result['round_size']}: one at a time | {z['one_at_a_time_s']:.1f} s | |",
        f"| z* speedup | {z['speedup']:.1f}x | >= {z['goal']:.0f}x |",
        f"| C0 for {s['layers']} layers: one pass | {s['one_pass_s']:.1f} s | |",
        f"| C0: one pass per layer | {s['one_pass_per_layer_s']:.1f} s | |",
        f"| C0 speedup | {s['speedup']:.1f}x | >= {s['goal']:.0f}x |",
    ]
    if "checkout" in result:
        c = result["checkout"]
        lines += [
            f"| `from_pretrained` of the base (load_model) | {c['load_s'] * 1000:.0f} ms | |",
            f"| checkout of version {c['rounds']} (NSE rounds of 8; {c['delta_bytes'] / 2**20:.1f} MiB of recorded "
            f"changes) | {c['checkout_s'] * 1000:.0f} ms ({c['ratio']:.2f}x) | <= {c['goal']}x |",
            f"| the same with `--full-verify` (every base tensor hashed) | {c['full_verify_s'] * 1000:.0f} ms "
            f"({c['full_verify_ratio']:.2f}x) | |",
        ]
    lines += [
        f"| peak RSS | {result['peak_rss_mb']:.0f} MB | |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer z* steps and samples")
    print(markdown(run(quick=parser.parse_args().quick)))


if __name__ == "__main__":
    main()
