"""The `editledger` command end to end on the tiny world: every verb, its JSON, its errors and exit codes."""

from __future__ import annotations

import json
import re

import pytest

from commands import audit, editing, history, setup
from tests.lifecycle.cli_helpers import run_cli


@pytest.fixture(scope="module")
def cli_ledger(tiny_world, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    requests = tiny_world.requests()[:4]
    lines = [json.dumps({"subject": r.subject, "prompt": r.prompt, "target_new": r.target_new,
                         "target_true": r.target_true}) for r in requests]
    (root / "requests.jsonl").write_text("\n".join(lines) + "\n")
    return root, requests


def test_the_command_records_edits_and_answers_audit_queries(cli_ledger, tiny_world, capsys):
    root, requests = cli_ledger
    assert run_cli(capsys, root, "init").code == 0
    assert run_cli(capsys, root, "init").code == 2  # a second init refuses, nothing lost
    added = run_cli(capsys, root, "model", "add", "tiny", "--path", tiny_world.model_dir,
                    "--corpus", tiny_world.corpus_path)
    assert added.code == 0, added.stderr
    assert run_cli(capsys, root, "stats", "tiny", "--corpus", tiny_world.corpus_path).code == 0
    edited = run_cli(capsys, root, "edit", root / "requests.jsonl", "--batch-size", "2", "--author", "alice",
                     "--reason", "quarterly update", "--json")
    assert edited.code == 0, edited.stderr
    assert len(edited.json()) == 2

    log = run_cli(capsys, root, "log", "--json").json()
    assert [v["kind"] for v in log] == ["edit", "edit", "base"]
    assert log[0]["author"] == "alice" and log[0]["reason"] == "quarterly update"

    shown = run_cli(capsys, root, "show", log[0]["commit_hash"][:8], "--json").json()
    footprint = shown["footprint"][0]
    blame = run_cli(capsys, root, "blame", str(footprint["layer"]), str(footprint["neurons"][0]), "--json").json()
    assert log[0]["commit_hash"] in {b["commit_hash"] for b in blame}

    history = run_cli(capsys, root, "history", "--subject", requests[0].subject, "--json").json()
    assert any(e["event"] == "edited" for e in history)

    diff = run_cli(capsys, root, "diff", "main~2", "main", "--json")
    assert diff.code == 0 and len(diff.json()["added"]) == 4

    assert run_cli(capsys, root, "branch", "experiment", "--at", "main~1").code == 0
    branches = {b["name"] for b in run_cli(capsys, root, "branch", "--json").json()}
    assert branches == {"main", "experiment"}
    assert run_cli(capsys, root, "tag", "v1", "main").code == 0
    assert run_cli(capsys, root, "tag", "--json").json()["v1"] == log[0]["commit_hash"]

    verified = run_cli(capsys, root, "verify", "--replay")
    assert verified.code == 0, verified.stderr
    assert "replayed bit-exactly" in verified.stdout

    out = root / "exported"
    assert run_cli(capsys, root, "checkout", "v1", "--out", out).code == 0
    assert (out / "model.safetensors").exists() and (out / "config.json").exists()
    again = run_cli(capsys, root, "checkout", "v1", "--out", out)
    assert again.code == 2 and "--force" in again.stderr


def test_bad_input_is_one_line_and_a_non_zero_exit(cli_ledger, tmp_path, capsys):
    root, _ = cli_ledger
    cases = [
        (root, ["edit", "--subject", "A", "--prompt", "{} is", "--target", "x", "--method", "bogus"], "--method"),
        (root, ["edit", root / "missing.jsonl"], "missing.jsonl"),
        (root, ["show", "ffffffffffff"], "ffffffffffff"),
        (tmp_path, ["log"], "editledger init"),
        (root, ["edit"], "--subject"),
    ]
    for cwd, args, needle in cases:
        result = run_cli(capsys, cwd, *args)
        assert result.code == 2, (args, result)
        assert needle in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert len(run_cli(capsys, root, "log", "--json").json()) == 3  # nothing was written


def test_help_shows_one_panel_per_command_module(tmp_path, capsys):
    shown = run_cli(capsys, tmp_path, "--help")
    assert shown.code == 0
    panels: dict[str, set[str]] = {}
    panel = ""
    for text in shown.stdout.splitlines():
        if heading := re.match(r"^╭─ (.+?) ─", text):
            panel = heading.group(1)
        elif entry := re.match(r"^│ (\S+)  ", text):
            panels.setdefault(panel, set()).add(entry.group(1))
    modules = (setup, editing, history, audit)
    for module in modules:
        names = {info.name or info.callback.__name__.replace("_", "-") for info in module.app.registered_commands}
        names |= {info.name for info in module.app.registered_groups}
        assert panels[module.PANEL] == names, module.__name__
    assert set(panels) == {"Options"} | {module.PANEL for module in modules}  # no command left in a default panel
