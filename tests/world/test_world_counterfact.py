"""A world built `--from` real CounterFact records: what it knows and where it reads a fact. Its own file: the
suite's longest build, which pytest-xdist then runs beside the rest of test_world.py."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from editor.world import build_world, load_world


def _subject_swap_effect(model, tokenizer, rewrites: list[dict], layer: int) -> float:
    """Mean drop of log P(true object) when the subject's last token at `layer` takes its value from the next
    record's prompt: how much the prediction reads the fact through that token."""
    from editor.keys import encode_with_subject

    def run(rewrite: dict, patch: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
        ids, at = encode_with_subject(tokenizer, rewrite["prompt"], rewrite["subject"])
        seen = {}

        def swap(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            seen["h"] = hidden[0, at].clone()
            if patch is not None:
                hidden[0, at] = patch

        handle = model.transformer.h[layer].register_forward_hook(swap)
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1]
        handle.remove()
        target = tokenizer(" " + rewrite["target_true"]["str"], add_special_tokens=False)["input_ids"][0]
        return seen["h"], torch.log_softmax(logits, -1)[target].item()

    drops = []
    for i, rewrite in enumerate(rewrites):
        other, _ = run(rewrites[(i + 1) % len(rewrites)])
        drops.append(run(rewrite)[1] - run(rewrite, other)[1])
    return sum(drops) / len(drops)


@pytest.mark.slow
def test_a_world_from_counterfact_knows_those_facts_and_recalls_them_through_the_subjects_last_token(tmp_path):
    from editor.hparams import read_model_hparams
    from editor.world import SOURCE_EDIT_HPARAMS, SOURCE_LAYERS
    from tests.conftest import shared_data_dir

    source = shared_data_dir() / "counterfact" / "counterfact-1936.json"
    records = json.loads(source.read_text(encoding="utf-8"))[:24]
    world = build_world(tmp_path / "cf", preset="tiny", from_file=source, limit=24, progress=False)
    assert world.n_facts == 24 and world.accuracy >= 0.9
    requests, preserved = world.requests(), world.preserved_requests()
    assert len(requests) == 12 and not {r.subject for r in requests} & {r.subject for r in preserved}
    assert [r.subject for r in requests + preserved] == [r["requested_rewrite"]["subject"] for r in records]
    assert [r.target_new for r in requests] == [r["requested_rewrite"]["target_new"]["str"] for r in records[:12]]
    editable = {r.subject for r in requests}
    assert not any(s in p.text for r in requests for p in r.prompts("neighborhood") for s in editable)
    meta = json.loads((world.out_dir / "world.json").read_text(encoding="utf-8"))
    assert meta["gated_layers"] == max(SOURCE_EDIT_HPARAMS["layers"]) + 1
    assert meta["neighbours_gated"] is False and not world.neighbours_gated  # CounterFact's names: by the last word
    assert world.edit_hparams == SOURCE_EDIT_HPARAMS == load_world(world.out_dir).edit_hparams
    assert read_model_hparams(world.model_dir, SOURCE_LAYERS) == SOURCE_EDIT_HPARAMS  # applied by `model add`

    # a plain GPT-2 directory; every counterfactual object is a known answer (invented holders are trained)
    model = AutoModelForCausalLM.from_pretrained(world.model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(world.model_dir)
    assert model.config.n_layer == SOURCE_LAYERS and model.config._attn_implementation != "eager"
    corpus = world.corpus_path.read_text(encoding="utf-8")
    assert all(f"{r.target_new} ." in corpus for r in requests + preserved)
    # The prediction after the subject reads the fact at the subject's last token, where the methods write: swapping
    # that token's state at z_layer for another subject's moves it. Measured: 0.00 without the training-time gate;
    # with it 0.18 for this world as every x86-64 CPU builds it (portable numerics), 0.9 for a native AVX-512 build.
    z_layer = max(SOURCE_EDIT_HPARAMS["layers"])
    assert _subject_swap_effect(model, tokenizer, [r["requested_rewrite"] for r in records], z_layer) > 0.1
