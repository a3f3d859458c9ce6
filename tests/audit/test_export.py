"""Provenance on export: `editledger.json` and the model card of a version with a revert, readable file modes, and
`verify-export` passing on the directory and failing once one tensor is changed."""

from __future__ import annotations

import json
import shutil
import stat

import pytest
from safetensors.torch import load_file, save_file

from tests.lifecycle.cli_helpers import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(audited, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "model"
    audited.ws.export("main", out, actor="carol")
    return out


def test_provenance_of_a_checkout_with_a_revert(audited, exported):
    record = json.loads((exported / "editledger.json").read_text())
    head = audited.revert
    assert record["ledger_id"] == audited.ledger.ancestry("main")[0].commit_hash == audited.base_commit
    assert record["commit_hash"] == head.commit_hash and record["state_hash"] == head.state_hash
    assert record["kind"] == "revert" and record["branch"] == "main" and record["base_model"] == "tiny-world"
    assert record["base_state_hash"] == head.base_state_hash and record["exported_at"].endswith("Z")
    card = (exported / "README.md").read_text()
    assert f"version: `{head.commit_hash}` (revert" in card and head.state_hash in card
    live = [r for r in audited.requests if r.request_key != audited.reverted.request_key]
    assert f"## Edits in effect ({len(live)})" in card
    for request in live:
        assert f"| {request.subject} | {request.prompt} | {request.target_true} → {request.target_new} | alice |" \
            in card
    in_effect = card.split("## Reverted")[0]
    assert f"| {audited.reverted.prompt} | {audited.reverted.target_true} → {audited.reverted.target_new}" \
        not in in_effect
    assert "| quarterly update |" in card
    assert "## Reverted in this history (1)" in card
    assert (f"| {audited.reverted.subject} | {audited.reverted.prompt} | {audited.reverted.target_true} → "
            f"{audited.reverted.target_new} | bob |") in card
    efficacy = next(s.value for s in audited.ledger.scores("main") if s.metric == "efficacy" and not s.request_key)
    assert f"Recorded at version `{head.commit_hash}`" in card and f"| counterfact/efficacy | {efficacy:.4g} |" in card
    for path in [exported, *exported.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))


def test_verify_export_passes_then_fails_on_one_changed_tensor(audited, exported, capsys, tmp_path):
    ok = run_cli(capsys, audited.root, "verify-export", exported)
    assert ok.code == 0, ok.stderr
    assert f"holds version {audited.revert.commit_hash}" in ok.stdout
    tampered = tmp_path / "tampered"
    shutil.copytree(exported, tampered)
    weights = tampered / "model.safetensors"
    tensors = load_file(weights)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] += 1e-3
    save_file(tensors, weights, metadata={"format": "pt"})
    bad = run_cli(capsys, audited.root, "verify-export", tampered)
    assert bad.code == 1
    assert len(bad.stderr.strip().splitlines()) == 1
    assert "the weights were changed after export" in bad.stderr and audited.revert.state_hash[:12] in bad.stderr
    missing = run_cli(capsys, audited.root, "verify-export", tmp_path)
    assert missing.code == 2 and "editledger.json" in missing.stderr
