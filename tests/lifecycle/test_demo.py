"""`editledger demo`: one library call whose report the command renders; it never deletes a ledger it did not
just make unless told to (`--force`)."""

from __future__ import annotations

import shutil

from tests.lifecycle.cli_helpers import run_cli


def test_the_demo_runs_and_a_second_run_does_not_delete_its_ledger(tiny_world, tmp_path, capsys):
    shutil.copytree(tiny_world.out_dir, tmp_path / "world")  # the tiny world, cached where the demo looks
    args = ["demo", "--dir", tmp_path, "--preset", "tiny", "--edits", "4", "--batch-size", "2"]
    first = run_cli(capsys, tmp_path, *args)
    assert first.code == 0, first.stderr
    assert "editledger demo: summary" in first.stdout and "4/4 versions reproduced bit-exactly" in first.stdout
    ledger_files = sorted(p.relative_to(tmp_path) for p in (tmp_path / "ledger").rglob("*"))
    log = run_cli(capsys, tmp_path / "ledger", "log", "--json").json()

    again = run_cli(capsys, tmp_path, *args)
    assert again.code == 2 and len(again.stderr.strip().splitlines()) == 1
    assert "--force" in again.stderr and str(tmp_path / "ledger") in again.stderr
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "ledger").rglob("*")) == ledger_files
    assert run_cli(capsys, tmp_path / "ledger", "log", "--json").json() == log
