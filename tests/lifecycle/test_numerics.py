"""A base model's dtype is recorded at `model add` and honoured by every command that loads it."""

from __future__ import annotations

import json

import pytest
import torch

from tests.lifecycle.cli_helpers import run_cli


@pytest.mark.parametrize("half", ["bfloat16", "float16"])
def test_a_half_precision_ledger_goes_through_the_lifecycle_without_a_dtype_option(tiny_world, tmp_path, capsys,
                                                                                   half):
    root = tmp_path
    requests = tiny_world.requests()[:4]
    (root / "requests.jsonl").write_text("".join(
        json.dumps({"subject": r.subject, "prompt": r.prompt, "target_new": r.target_new,
                    "target_true": r.target_true}) + "\n" for r in requests))
    assert run_cli(capsys, root, "init").code == 0
    added = run_cli(capsys, root, "model", "add", "tiny", "--path", tiny_world.model_dir, "--dtype", half,
                    "--corpus", tiny_world.corpus_path)
    assert added.code == 0 and half in added.stdout, added.stderr
    config = run_cli(capsys, root, "model", "list", "--json").json()[0]["config"]
    assert config["editledger_numerics"]["dtype"] == half

    assert run_cli(capsys, root, "stats", "tiny", "--corpus", tiny_world.corpus_path).code == 0
    edited = run_cli(capsys, root, "edit", root / "requests.jsonl", "--batch-size", "2", "--json")
    assert edited.code == 0, edited.stderr
    first, second = edited.json()
    checked_out = run_cli(capsys, root, "checkout", "main", "--out", root / "head")
    assert checked_out.code == 0, checked_out.stderr
    written = json.loads((root / "head" / "config.json").read_text())
    assert written.get("dtype", written.get("torch_dtype")) == half
    evaluated = run_cli(capsys, root, "eval", "main", "--json")
    assert evaluated.code == 0, evaluated.stderr
    assert evaluated.json()["efficacy_argmax"] > 0.5
    reverted = run_cli(capsys, root, "revert", first["commit_hash"], "--reason", f"{half} revert")
    assert reverted.code == 0, reverted.stderr
    verified = run_cli(capsys, root, "verify", "--replay")
    assert verified.code == 0, verified.stderr
    assert "4 distinct versions of 1 branch (main) replayed bit-exactly" in verified.stdout

    # An explicit other dtype is refused in one line naming both; nothing is written.
    refused = run_cli(capsys, root, "checkout", "main", "--out", root / "f32", "--dtype", "float32")
    assert refused.code == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "--dtype float32" in refused.stderr and f"recorded in {half}" in refused.stderr
    assert not (root / "f32").exists()
    assert second["commit_hash"] in [v["commit_hash"] for v in run_cli(capsys, root, "log", "--json").json()]


def test_device_cuda_without_cuda_is_one_line(tiny_world, tmp_path, capsys):
    assert run_cli(capsys, tmp_path, "init").code == 0
    result = run_cli(capsys, tmp_path, "model", "add", "tiny", "--path", tiny_world.model_dir, "--device", "cuda")
    if torch.cuda.is_available():
        assert result.code == 0, result.stderr
        return
    assert result.code == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "--device cuda" in result.stderr and "no CUDA" in result.stderr
    assert run_cli(capsys, tmp_path, "model", "list", "--json").json() == []
