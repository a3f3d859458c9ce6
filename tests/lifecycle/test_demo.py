"""`editledger demo`: one library call whose report the command renders; it never deletes a ledger it did not
just make unless told to (`--force`)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.lifecycle.cli_helpers import run_cli


def ledger_contents(root: Path) -> list[Path]:
    """The demo ledger's files, without SQLite's write-ahead sidecars (they come and go as connections close)."""
    return sorted(p.relative_to(root) for p in (root / "ledger").rglob("*")
                  if not p.name.endswith(("-wal", "-shm")))


def test_the_demo_runs_and_a_second_run_does_not_delete_its_ledger(tiny_world, tmp_path, capsys):
    shutil.copytree(tiny_world.out_dir, tmp_path / "world")  # the tiny world, cached where the demo looks
    args = ["demo", "--dir", tmp_path, "--model", "fact-world", "--preset", "tiny", "--edits", "4", "--batch-size", "2"]
    first = run_cli(capsys, tmp_path, *args)
    assert first.code == 0, first.stderr
    assert "editledger demo: summary" in first.stdout and "4/4 versions reproduced bit-exactly" in first.stdout
    ledger_files = ledger_contents(tmp_path)
    log = run_cli(capsys, tmp_path / "ledger", "log", "--json").json()

    again = run_cli(capsys, tmp_path, *args)
    assert again.code == 2 and len(again.stderr.strip().splitlines()) == 1
    assert "--force" in again.stderr and str(tmp_path / "ledger") in again.stderr
    assert ledger_contents(tmp_path) == ledger_files
    assert run_cli(capsys, tmp_path / "ledger", "log", "--json").json() == log


def test_the_demo_refuses_an_unknown_model_before_any_work(tmp_path, capsys):
    result = run_cli(capsys, tmp_path, "demo", "--dir", tmp_path / "d", "--model", "gpt-5")
    assert result.code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--model 'gpt-5'" in result.stderr and "smollm2" in result.stderr
    assert not (tmp_path / "d").exists()
