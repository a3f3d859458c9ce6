"""Checkout at GPT2-XL size: is a verified checkout close to `from_pretrained` when edits touch a small part of
the model? Run alone: `python -m benchmarks.checkout_scale` (about 10 minutes and 20 GB of disk and memory on
2 cores; not part of `make bench`). Prints JSON and saves it as `benchmarks/results/checkout_scale.json`.

A GPT-2 of GPT2-XL's shape (48 blocks, d_model 1600, d_ff 6400; random weights, a 3,000-word vocabulary, so
1.5B parameters and 6 GB of float32) is made here, recorded as a base model, edited in two NSE rounds of 2
requests at layers 13-17 (GPT2-XL's published layers; 2 z* steps: the edits' quality is not measured), and
checked out. The numbers go to BENCHMARKS.md (section 2) at the next `python -m benchmarks` or `--report-only`.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from benchmarks.common import median_seconds, offline_and_threads, save_results, say, workspace
from benchmarks.engine_speed import corpus, make_requests

LAYERS = [13, 14, 15, 16, 17]


def make_xl_dir(root: Path) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from benchmarks.engine_speed import make_model_dir

    small = make_model_dir(root, quick=True)  # for its tokenizer
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(json.loads((small / "tokenizer.json").read_text())["model"]["vocab"]),
                        n_layer=48, n_embd=1600, n_head=25, n_positions=256, bos_token_id=0, eos_token_id=0,
                        pad_token_id=1)
    with torch.device("meta"):
        model = GPT2LMHeadModel(config)
    model = model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.02, generator=generator)
    path = root / "gpt2-xl-shape"
    model.save_pretrained(path, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (small / name).is_file():
            (path / name).write_bytes((small / name).read_bytes())
    return path


def run(repeats: int = 3) -> dict:
    offline_and_threads()
    from editor.model import load_model

    with tempfile.TemporaryDirectory(prefix="editledger-xl-") as tmp:
        root = Path(tmp)
        say("checkout_scale: making the model")
        path = make_xl_dir(root)
        corpus_path = root / "corpus.txt"
        corpus_path.write_text("\n".join(corpus(16)) + "\n", encoding="utf-8")
        info = type("Model", (), {"model_dir": path, "corpus_path": corpus_path})
        say("checkout_scale: recording the base")
        space = workspace(root / "ledger", info, name="gpt2-xl-shape")
        say("checkout_scale: two NSE rounds")
        overrides = {"layers": LAYERS, "v_num_grad_steps": 2, "mom2_n_samples": 16}
        versions = space.edit(make_requests(4, seed=3), method="nse", batch_size=2, overrides=overrides)
        head = versions[-1].commit_hash
        loaded = load_model(path, device="cpu")
        parameters = sum(p.numel() for p in loaded.model.parameters())
        del loaded
        say("checkout_scale: timing")
        load_s = median_seconds(lambda: load_model(path, device="cpu"), repeats)
        first_s = median_seconds(lambda: space.checkout_model(head), 1)
        checkout_s = median_seconds(lambda: space.checkout_model(head), repeats)
        space.full_verify = True
        full_s = median_seconds(lambda: space.checkout_model(head), 1)
        space.ledger.close()
    return {"parameters": parameters, "layers": LAYERS, "rounds": len(versions), "load_s": load_s,
            "first_checkout_s": first_s, "checkout_s": checkout_s, "ratio": checkout_s / load_s,
            "full_verify_s": full_s, "full_verify_ratio": full_s / load_s, "goal": 1.3}


if __name__ == "__main__":
    started = time.perf_counter()
    result = run()
    print(json.dumps(result, indent=1))
    print(save_results("checkout_scale", result, quick=False, seconds=time.perf_counter() - started))
