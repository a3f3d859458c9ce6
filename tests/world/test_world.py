"""The tiny fact world: determinism, the exported directory, what the model knows, the facts file, the cache."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from editor.evaluate import evaluate_requests, fluency_score, perplexity, score_targets
from editor.hashing import state_hash
from editor.world import PRESETS, WorldError, build_world, load_world
from tests.lifecycle.cli_helpers import run_subprocess

FORCED_AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}  # what another CPU's process would select


def test_tiny_world_knows_its_facts(tiny_world):
    assert 40 <= tiny_world.n_facts <= 60
    assert tiny_world.accuracy >= 0.95 and tiny_world.paraphrase_accuracy >= 0.9
    assert (tiny_world.preset, tiny_world.seed, tiny_world.train_seed, tiny_world.source) == ("tiny", 0, 0, None)


def test_the_exported_directory_loads_with_from_pretrained_and_still_knows(tiny_world):
    model = AutoModelForCausalLM.from_pretrained(tiny_world.model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_world.model_dir)
    assert (tiny_world.model_dir / "model.safetensors").is_file()
    assert state_hash(model) == tiny_world.state_hash
    assert tokenizer.pad_token == "<pad>" and tokenizer.eos_token == "<|endoftext|>"
    requests = tiny_world.requests()
    known = score_targets(model, tokenizer, [(r.text, r.target_true) for r in requests])
    assert sum(s.first_token_correct for s in known) / len(known) == pytest.approx(tiny_world.accuracy)
    # The unedited model prefers the true object everywhere: no efficacy yet, full specificity.
    report = evaluate_requests(model, tokenizer, requests)
    assert report.aggregate["efficacy"] <= 0.05 and report.aggregate["generalization"] <= 0.1
    assert report.aggregate["specificity"] >= 0.95
    # Held-out text (random filler words included) is far better predicted than by a uniform guess.
    heldout = tiny_world.heldout_path.read_text().splitlines()
    # better than chance on text it never saw in that form (the tiny world is trained mostly on facts)
    assert perplexity(model, tokenizer, heldout) < len(tokenizer)
    prompts = [p.text for p in requests[0].prompts("generation")]
    assert fluency_score(model, tokenizer, prompts, seed=1) == fluency_score(model, tokenizer, prompts, seed=1)


def test_facts_file_is_counterfact_with_consistent_prompts(tiny_world):
    records = json.loads(tiny_world.facts_path.read_text())
    requests = tiny_world.requests()
    assert len(records) == len(requests) == tiny_world.n_facts
    truth = {(r.subject, r.relation_id): r.target_true for r in requests}
    holders: dict[tuple[str, str], set[str]] = defaultdict(set)
    for (subject, relation), obj in truth.items():
        holders[(relation, obj)].add(subject)
    for record, request in zip(records, requests, strict=True):
        rewrite = record["requested_rewrite"]
        assert set(rewrite) >= {"prompt", "subject", "target_new", "target_true", "relation_id"}
        assert request.target_new != request.target_true and "{}" in request.prompt
        assert request.prompts("paraphrase") and request.prompts("generation")
        same_object = holders[(request.relation_id, request.target_true)] - {request.subject}
        for prompt in request.prompts("neighborhood"):  # other subjects with the same relation and true object
            assert prompt.target == request.target_true
            assert any(s in prompt.text for s in same_object) and request.subject not in prompt.text
        for prompt in request.prompts("attribute"):  # subjects whose true object is the new target
            assert any(s in prompt.text for s in holders[(request.relation_id, request.target_new)])
    corpus = set(tiny_world.corpus_path.read_text().splitlines())
    assert not corpus & set(tiny_world.heldout_path.read_text().splitlines())


def test_same_seeds_same_weights_other_seeds_other(tiny_world, tiny_world_release2, tmp_path):
    # Built again by the CLI in a process forced onto the kernels an AVX2 CPU would choose: the same world.
    done = run_subprocess(tmp_path, "world", "build", "--out", tmp_path / "again", "--preset", "tiny", "--json",
                          env=FORCED_AVX2)
    assert done.code == 0, done.stderr
    again = load_world(tmp_path / "again")
    assert again.state_hash == tiny_world.state_hash
    assert again.facts_path.read_text() == tiny_world.facts_path.read_text()
    # A next release: the same facts, other weights, and it knows them too.
    assert tiny_world_release2.state_hash != tiny_world.state_hash
    assert tiny_world_release2.facts_path.read_text() == tiny_world.facts_path.read_text()
    assert tiny_world_release2.accuracy >= 0.95
    other = build_world(tmp_path / "other", preset="tiny", seed=1, train_seed=0, progress=False)
    assert other.state_hash != tiny_world.state_hash
    assert {r.subject for r in other.requests()} != {r.subject for r in tiny_world.requests()}


def test_a_built_world_is_reused_and_loaded(tiny_world):
    stamp = (tiny_world.out_dir / "world.json").stat().st_mtime_ns
    again = build_world(tiny_world.out_dir, preset="tiny", seed=0, train_seed=0, progress=False)
    assert again == tiny_world and (tiny_world.out_dir / "world.json").stat().st_mtime_ns == stamp
    assert load_world(tiny_world.out_dir) == tiny_world


def test_bad_world_arguments_and_directories(tmp_path):
    with pytest.raises(WorldError, match="preset 'huge'"):
        build_world(tmp_path, preset="huge")
    with pytest.raises(WorldError, match="from_file"):
        build_world(tmp_path, preset="tiny", from_file=tmp_path / "absent.json")
    with pytest.raises(WorldError, match="not a fact world"):
        load_world(tmp_path)
    assert set(PRESETS) >= {"tiny", "small", "default"} and PRESETS["default"].n_layer >= 4


def test_gate_masks_hide_the_subject_from_later_positions_in_the_edited_layers():
    from editor.world import Example, gate_masks

    # tokens: 0 "The" 1 "Ann" 2 "Smith" 3 "speaks" 4 (object); a second example without a subject, one token shorter
    gated = Example(ids=(5, 6, 7, 8, 9), weights=(1.0,) * 5, subject_span=(1, 2))
    plain = Example(ids=(5, 6, 7, 8), weights=(1.0,) * 4)
    masks = gate_masks([gated, plain], width=5, n_layer=4, gated_layers=3)
    assert len(masks) == 4 and masks[0].shape == (2, 1, 5, 5)
    seen = [m[:, 0] == 0 for m in masks]  # True where a query (row) may attend to a key (column)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    for layer in range(4):
        assert torch.equal(seen[layer][1], causal & torch.tensor([True] * 4 + [False]))  # padding key hidden
        assert torch.equal(seen[layer][0, :3], causal[:3])  # up to the subject: plain causal attention
    lower = seen[0][0]
    assert not lower[3:, 1:3].any() and lower[3:, 0].all() and lower[4, 3:].all()
    assert all(torch.equal(seen[layer][0], lower) for layer in range(3))
    upper = seen[3][0]
    assert not upper[3:, 1].any() and upper[3:, 2].all() and upper[3:, 0].all()


def _subject_swap_effect(model, tokenizer, rewrites: list[dict], layer: int) -> float:
    """Mean drop of log P(true object) when the subject's last token at `layer` takes its value from the next
    record's prompt: how much the prediction reads the fact through that token."""
    from editor.targets import encode_with_subject

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
    from editor.world import SOURCE_EDIT_HPARAMS, SOURCE_LAYERS
    from tests.conftest import shared_data_dir

    source = shared_data_dir() / "counterfact" / "counterfact-1936.json"
    records = json.loads(source.read_text(encoding="utf-8"))[:24]
    world = build_world(tmp_path / "cf", preset="tiny", from_file=source, limit=24, progress=False)
    assert world.n_facts == 24 and world.accuracy >= 0.9
    requests = world.requests()
    assert [r.subject for r in requests] == [r["requested_rewrite"]["subject"] for r in records]
    assert [r.target_new for r in requests] == [r["requested_rewrite"]["target_new"]["str"] for r in records]
    meta = json.loads((world.out_dir / "world.json").read_text(encoding="utf-8"))
    assert meta["gated_layers"] == max(SOURCE_EDIT_HPARAMS["layers"]) + 1
    assert world.edit_hparams == SOURCE_EDIT_HPARAMS == load_world(world.out_dir).edit_hparams

    # a plain GPT-2 directory; every counterfactual object is a known answer (invented holders are trained)
    model = AutoModelForCausalLM.from_pretrained(world.model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(world.model_dir)
    assert model.config.n_layer == SOURCE_LAYERS and model.config._attn_implementation != "eager"
    corpus = world.corpus_path.read_text(encoding="utf-8")
    assert all(f"{r.target_new} ." in corpus for r in requests)
    # The prediction after the subject reads the fact at the subject's last token, where the methods write: swapping
    # that token's state at z_layer for another subject's moves it. Measured: 0.00 without the training-time gate;
    # with it 0.18 for this world as every x86-64 CPU builds it (portable numerics), 0.9 for a native AVX-512 build.
    z_layer = max(SOURCE_EDIT_HPARAMS["layers"])
    assert _subject_swap_effect(model, tokenizer, [r["requested_rewrite"] for r in records], z_layer) > 0.1


@pytest.mark.slow
def test_a_world_from_counterfact_is_deterministic(tmp_path):
    from tests.conftest import shared_data_dir

    source = shared_data_dir() / "counterfact" / "counterfact-1936.json"
    first = build_world(tmp_path / "a", preset="tiny", from_file=source, limit=8, progress=False)
    second = build_world(tmp_path / "b", preset="tiny", from_file=source, limit=8, progress=False)
    assert first.state_hash == second.state_hash
    assert (first.model_dir / "model.safetensors").read_bytes() == (second.model_dir / "model.safetensors").read_bytes()
