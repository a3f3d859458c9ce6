"""A base model whose directory moved is found again: `--base-path` on a command, or `model relocate`, both
verified by the recorded state hash before use."""

from __future__ import annotations

import shutil

from ledger import Ledger
from tests.lifecycle.cli_helpers import run_cli


def test_a_moved_base_is_found_again_by_its_state_hash(tiny_world, tiny_world_release2, tmp_path, capsys):
    from editor.lifecycle import Workspace

    first = tmp_path / "models" / "first"
    shutil.copytree(tiny_world.model_dir, first)
    root = tmp_path / "ledger"
    root.mkdir()
    ledger = Ledger.init(root)
    ws = Workspace(ledger)
    ws.add_model("tiny", first, corpus=tiny_world.corpus_path)
    ws.edit(tiny_world.requests()[:2], batch_size=2)
    ledger.close()
    moved = tmp_path / "elsewhere" / "tiny"
    moved.parent.mkdir()
    shutil.move(first, moved)
    capsys.readouterr()  # the set-up's own output

    lost = run_cli(capsys, root, "checkout", "main", "--out", root / "a")
    assert lost.code == 2 and len(lost.stderr.strip().splitlines()) == 1
    assert "--base-path" in lost.stderr and "model relocate tiny" in lost.stderr

    found = run_cli(capsys, root, "checkout", "main", "--out", root / "a", "--base-path", moved)
    assert found.code == 0, found.stderr
    wrong = run_cli(capsys, root, "checkout", "main", "--out", root / "b", "--base-path",
                    tiny_world_release2.model_dir)
    assert wrong.code == 2 and "state hash" in wrong.stderr and not (root / "b").exists()

    refused = run_cli(capsys, root, "model", "relocate", "tiny", "--path", tiny_world_release2.model_dir)
    assert refused.code == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "state hash" in refused.stderr and "not relocated" in refused.stderr
    assert run_cli(capsys, root, "model", "list", "--json").json()[0]["source_path"] == str(first.resolve())

    relocated = run_cli(capsys, root, "model", "relocate", "tiny", "--path", moved)
    assert relocated.code == 0, relocated.stderr
    assert run_cli(capsys, root, "model", "list", "--json").json()[0]["source_path"] == str(moved.resolve())
    assert run_cli(capsys, root, "checkout", "main", "--out", root / "c").code == 0
    assert run_cli(capsys, root, "verify", "--replay").code == 0
    with Ledger.open(root) as reopened:
        event = next(e for e in reopened.audit_events() if e.kind == "relocate")
        assert event.detail["from"] == str(first.resolve()) and event.detail["to"] == str(moved.resolve())


def test_the_hyperparameters_a_model_directory_records_are_applied_when_it_is_added(tiny_world, tmp_path, capsys):
    """A `--from` world writes what editing its model needs into the model directory; `model add` records it with
    the base, and every edit starts from it without `--set` lines (a `--set` still wins)."""
    from editor.hparams import MODEL_HPARAMS_FILE, write_model_hparams

    model = tmp_path / "model"
    shutil.copytree(tiny_world.model_dir, model)
    root = tmp_path / "ledger"
    root.mkdir()
    assert run_cli(capsys, root, "init").code == 0
    write_model_hparams(model, {"layers": [9], "mom2_update_weight": 7.0})
    refused = run_cli(capsys, root, "model", "add", "tiny", "--path", model)
    assert refused.code == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert MODEL_HPARAMS_FILE in refused.stderr and "layers" in refused.stderr
    assert run_cli(capsys, root, "model", "list", "--json").json() == []  # nothing recorded

    write_model_hparams(model, {"layers": [1, 2], "mom2_update_weight": 7.0})
    assert run_cli(capsys, root, "model", "add", "tiny", "--path", model, "--corpus", tiny_world.corpus_path).code == 0
    facts = tiny_world.facts_path
    assert run_cli(capsys, root, "edit", facts, "--limit", "1", "--method", "memit").code == 0
    assert run_cli(capsys, root, "edit", facts, "--limit", "1", "--method", "nse",
                   "--set", "mom2_update_weight=9").code == 0
    memit, nse = (run_cli(capsys, root, "show", ref, "--json").json()["version"]["hparams"]
                  for ref in ("main~1", "main"))
    assert (memit["layers"], memit["mom2_update_weight"]) == ([1, 2], 7.0)
    assert (nse["layers"], nse["mom2_update_weight"]) == ([1, 2], 9.0)
