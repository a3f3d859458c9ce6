"""Edits that did nothing are reported, not recorded as success: outcomes say whether each request took."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from editor.readers import read_requests
from tests.lifecycle.cli_helpers import run_cli


@pytest.fixture(scope="module")
def random_model(tiny_world, tmp_path_factory) -> Path:
    """A GPT-2 model of the tiny world's shape with random weights: it knows nothing, so z* has nothing to
    work with."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_world.model_dir)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=64, n_layer=4, n_head=4,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    out = tmp_path_factory.mktemp("random") / "model"
    GPT2LMHeadModel(config).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def test_a_no_op_edit_warns_per_request_and_strict_records_nothing(random_model, tiny_world, tmp_path, capsys):
    root = tmp_path
    requests = tiny_world.requests()[:3]
    (root / "requests.jsonl").write_text("".join(
        json.dumps({"subject": r.subject, "prompt": r.prompt, "target_new": r.target_new}) + "\n"
        for r in requests))
    assert run_cli(capsys, root, "init").code == 0
    assert run_cli(capsys, root, "model", "add", "random", "--path", random_model,
                   "--corpus", tiny_world.corpus_path).code == 0
    log_before = run_cli(capsys, root, "log", "--json").json()

    strict = run_cli(capsys, root, "edit", root / "requests.jsonl", "--strict")
    assert strict.code == 1, strict.stderr
    assert run_cli(capsys, root, "log", "--json").json() == log_before
    assert "--strict" in strict.stderr and "nothing recorded" in strict.stderr

    loose = run_cli(capsys, root, "edit", root / "requests.jsonl", "--json")
    assert loose.code == 0, loose.stderr
    warnings = [line for line in loose.stderr.splitlines() if line.startswith("warning: request ")]
    assert len(warnings) == len(requests), loose.stderr
    for request, line in zip(read_requests(root / "requests.jsonl"), warnings, strict=True):
        assert request.request_key[:12] in line and request.subject in line
    assert all("did not reach its target" in line or "changed no weight" in line for line in warnings)
    shown = run_cli(capsys, root, "show", loose.json()[0]["commit_hash"], "--json").json()
    assert all(o["took"] is False and o["zstar_target_prob"] < 0.5 for o in shown["outcomes"])


def test_outcomes_record_whether_each_request_took(tiny_world, tmp_path, capsys):
    from editor.lifecycle import Workspace
    from ledger import Ledger

    ledger = Ledger.init(tmp_path)
    ws = Workspace(ledger)
    ws.add_model("tiny", tiny_world.model_dir, corpus=tiny_world.corpus_path)
    warned: list[str] = []
    ws.warn = warned.append
    version = ws.edit(tiny_world.requests()[:4], batch_size=4)[0]
    outcomes = ledger.show(version.commit_hash).outcomes
    assert len(outcomes) == 4
    for o in outcomes:
        assert o.already_true is False and o.target_prob_before < 0.5  # counterfactual: not what it knew
        assert o.zstar_target_prob == pytest.approx(2.718281828459045 ** -o.zstar_loss)
        assert (o.took is False) == any(o.request_key[:12] in line for line in warned)  # warned iff it failed
    assert sum(o.took for o in outcomes) >= 3
    assert ledger.verify().ok
    ledger.close()
