"""Checkout, replay and the record of an NSE history on the tiny fact world."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from editor.evaluate import evaluate_requests
from editor.hashing import state_hash


def test_every_version_checks_out_to_its_recorded_state_hash(edited):
    for version in edited.ledger.log("main", limit=100):
        loaded, info = edited.ws.checkout_model(version.commit_hash)
        assert state_hash(loaded.model) == version.state_hash == info.state_hash


def test_exported_directory_loads_and_gives_the_same_logits(edited, tmp_path):
    version = edited.versions[1]
    out = edited.ws.export(version.commit_hash, tmp_path / "v2")
    exported = AutoModelForCausalLM.from_pretrained(out, local_files_only=True, use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(out, local_files_only=True)
    in_memory, _ = edited.ws.checkout_model(version.commit_hash)
    text = edited.requests[0].text
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(exported(ids).logits, in_memory.model(ids).logits)
    assert state_hash(exported) == version.state_hash
    assert any(e.kind == "checkout" for e in edited.ledger.audit_events())


def test_export_refuses_a_non_empty_directory(edited, tmp_path):
    from editor.lifecycle import LifecycleError

    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    try:
        edited.ws.export(edited.versions[0].commit_hash, target)
    except LifecycleError as error:
        assert "--force" in str(error)
    else:
        raise AssertionError("export overwrote a non-empty directory")
    assert (target / "keep.txt").read_text() == "mine"


def test_replay_on_the_same_base_reproduces_every_state_hash(edited):
    steps = edited.ws.replay_same_base("main")
    assert len(steps) == len(edited.versions) + 1
    assert all(step.ok for step in steps), [(s.commit_hash[:12], s.kind) for s in steps if not s.ok]


def test_edits_took_and_the_record_holds_the_footprint(edited):
    final, _ = edited.ws.checkout_model("main")
    report = evaluate_requests(final.model, final.tokenizer, edited.requests)
    assert report.aggregate["efficacy"] >= 0.9
    detail = edited.ledger.show(edited.versions[0].commit_hash)
    assert detail.footprint and all(f.neurons for f in detail.footprint)
    assert {a.role for a in detail.artifacts} >= {"delta", "keys.0", "templates", "zstar"}
    layer, neuron = detail.footprint[0].layer, detail.footprint[0].neurons[0]
    assert edited.versions[0].commit_hash in {e.commit_hash for e in edited.ledger.blame(layer, neuron)}


def test_cp_is_the_sum_of_the_recorded_keys(edited):
    from editor.artifacts import get_tensors

    expected: dict[int, torch.Tensor] = {}
    for version in edited.versions:
        (keys_blob,) = [a for a in edited.ledger.artifacts(version.commit_hash) if a.role.startswith("keys.")]
        for name, keys in get_tensors(edited.ledger.store, keys_blob.sha256).items():
            k = keys.double()
            expected[int(name[1:])] = expected.get(int(name[1:]), 0) + k @ k.T
    cp = edited.ws.rebuild_cp("main")
    assert set(cp) == set(expected)
    for layer, matrix in cp.items():
        assert torch.allclose(matrix, expected[layer], rtol=1e-10, atol=1e-12)
        assert matrix.abs().sum() > 0
