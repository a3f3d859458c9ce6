"""Architecture map, state hash, statistics and its cache, context templates."""

from __future__ import annotations

import json

import pytest
import torch

from editor.errors import UnsupportedModelError
from editor.hashing import state_hash
from editor.hparams import EditHparams, derive_hparams
from editor.keys import subject_last_token_index
from editor.model import find_architecture, read_columns, write_columns
from editor.stats import INDEX_DIR, cached_second_moments, second_moments, second_moments_one_layer_per_pass
from editor.templates import generate_context_templates
from ledger.store import BlobStore
from tests.editor.conftest import FAMILIES, corpus_texts

EXPECTED_REWRITE = {
    "gpt2": "transformer.h.{}.mlp.c_proj",
    "gptj": "transformer.h.{}.mlp.fc_out",
    "gpt-neox": "gpt_neox.layers.{}.mlp.dense_4h_to_h",
    "llama": "model.layers.{}.mlp.down_proj",
    "gemma3": "model.layers.{}.mlp.down_proj",
}


@pytest.mark.parametrize("family", FAMILIES)
def test_architecture_is_found_from_modules(tiny_models, family):
    loaded = tiny_models[family].load()
    arch = loaded.arch
    assert arch.family == family and arch.n_layers == 4 and arch.d_model == 32
    assert arch.rewrite_template == EXPECTED_REWRITE[family]
    assert arch.rewrite_is_conv1d == (family == "gpt2")
    assert arch.hidden_is_block_output == (family != "gemma3")  # Gemma-3: after its MLP's own post-norm
    weight = arch.rewrite_weight(loaded.model, 1)
    assert weight is loaded.model.get_parameter(arch.rewrite_weight_name(1))
    # math layout [d_model, d_ff] whatever the storage
    columns = torch.tensor([3, 7])
    values = torch.arange(2 * arch.d_model, dtype=weight.dtype).view(arch.d_model, 2)
    write_columns(weight, columns, values, arch.rewrite_is_conv1d)
    assert torch.equal(read_columns(weight.detach(), columns, arch.rewrite_is_conv1d), values)


def test_unsupported_model_lists_the_families():
    from transformers import BertConfig, BertModel

    model = BertModel(
        BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    )
    with pytest.raises(UnsupportedModelError, match="GPT-2, GPT-J, GPT-NeoX, Llama"):
        find_architecture(model)


def test_state_hash_stable_across_save_load_and_sensitive_to_one_weight(tiny_models, tmp_path):
    tiny = tiny_models["gpt2"]
    loaded = tiny.load()
    recorded = state_hash(loaded.model)
    loaded.model.save_pretrained(tmp_path / "copy", safe_serialization=True)
    loaded.tokenizer.save_pretrained(tmp_path / "copy")
    from editor.model import load_model

    assert state_hash(load_model(tmp_path / "copy", device="cpu").model) == recorded
    assert state_hash(dict(loaded.model.state_dict())) == recorded
    with torch.no_grad():
        weight = loaded.arch.rewrite_weight(loaded.model, 2)
        weight[0, 0] = torch.nextafter(weight[0, 0], torch.tensor(1.0))  # one ulp
    assert state_hash(loaded.model) != recorded
    bf16 = {"w": torch.ones(3, dtype=torch.bfloat16)}
    assert state_hash(bf16) != state_hash({"w": torch.ones(3, dtype=torch.float16)})


def test_one_pass_statistics_equal_one_pass_per_layer_and_cache(tiny_models, tmp_path):
    loaded = tiny_models["llama"].load()
    texts = corpus_texts(60, seed=3)
    together = second_moments(loaded, [1, 3], texts, 50, batch_size=7, progress=False)
    apart = second_moments_one_layer_per_pass(loaded, [1, 3], texts, 50, batch_size=5, progress=False)
    for layer in (1, 3):
        torch.testing.assert_close(together[layer], apart[layer], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(together[layer], together[layer].T)
        assert float(torch.linalg.eigvalsh(together[layer].double()).min()) > -1e-6
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(texts) + "\n")
    store = BlobStore(tmp_path / "blobs")
    model_hash = state_hash(loaded.model)
    c0, shas = cached_second_moments(loaded, [1, 3], corpus, 50, "float32", store, model_hash, progress=False)
    torch.testing.assert_close(c0[1], together[1], rtol=1e-5, atol=1e-7)
    assert all(store.has(sha) for sha in shas.values())
    assert len(list((tmp_path / "blobs" / INDEX_DIR).iterdir())) == 2
    # A second call reads the cache: same blobs, same tensors, nothing new stored.
    again, shas_again = cached_second_moments(
        loaded, [3, 1], corpus, 50, "float32", store, model_hash, progress=False
    )
    assert shas_again == shas and torch.equal(again[3], c0[3])
    assert len(list(store.iter_hashes())) == 2
    # Another sample count is another key.
    _, other = cached_second_moments(loaded, [1], corpus, 20, "float32", store, model_hash, progress=False)
    assert other[1] != shas[1]
    entry = json.loads(next((tmp_path / "blobs" / INDEX_DIR).iterdir()).read_text())
    assert store.has(entry["blob"])


def test_context_templates_are_seeded(tiny_models):
    loaded = tiny_models["gpt-neox"].load()
    first = generate_context_templates(loaded, seed=5)
    assert first == generate_context_templates(loaded, seed=5)
    assert first[0] == "{}" and len(first) == 6
    assert all(t.endswith(". {}") and t.count("{}") == 1 for t in first[1:])
    assert first != generate_context_templates(loaded, seed=6)


def test_subject_index_and_derived_hparams(tiny_models):
    loaded = tiny_models["gpt2"].load()
    assert subject_last_token_index(loaded.tokenizer, "The home of {} is", "Alice Smith") == 4
    hp = derive_hparams(loaded, "nse")
    assert hp.layers == [0, 1, 2] and 0 < hp.alpha < hp.upper_bound and hp.v_lr > 0
    assert derive_hparams(loaded, "rome").layers == [1]  # the middle of the window
    assert EditHparams.from_dict(hp.to_dict()) == hp
    json.dumps(hp.to_dict())  # recordable as is


def test_upper_block_gram_equals_the_full_product():
    from editor.stats import add_upper_gram, mirror_upper

    generator = torch.Generator().manual_seed(0)
    for width, blocks in ((37, 8), (64, 8), (10, 3), (5, 8)):
        total = torch.zeros(width, width, dtype=torch.float64)
        batches = [torch.randn(n, width, generator=generator) for n in (11, 4)]
        for keys in batches:
            add_upper_gram(total, keys, blocks)
        full = sum((k.double().T @ k.double()) for k in batches)
        torch.testing.assert_close(mirror_upper(total), full, rtol=1e-5, atol=1e-5)
        assert torch.equal(mirror_upper(total), mirror_upper(total).T)
