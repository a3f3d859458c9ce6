"""SIGKILL in the middle of edit, revert, replay, stats and checkout leaves a ledger that verifies, unchanged."""

from __future__ import annotations

import json
import signal

import pytest

from ledger import Ledger
from tests.lifecycle.cli_helpers import run_cli, run_subprocess


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def crash_ledger(request, tiny_world, tmp_path_factory):
    """A ledger with two rounds, on SQLite or PostgreSQL (its config.json names the database)."""
    from editor.lifecycle import Workspace
    from tests.pg import postgres_url_or_skip

    with postgres_url_or_skip(request.param) as db_url:
        root = tmp_path_factory.mktemp(f"crash-{request.param}")
        ledger = Ledger.init(root, db_url=db_url)
        ws = Workspace(ledger)
        ws.add_model("tiny", tiny_world.model_dir, corpus=tiny_world.corpus_path)
        requests = tiny_world.requests()[:6]
        ws.edit(requests[:4], batch_size=2, author="tests")
        lines = [json.dumps({"subject": r.subject, "prompt": r.prompt, "target_new": r.target_new})
                 for r in requests[4:]]
        (root / "more.jsonl").write_text("\n".join(lines) + "\n")
        ledger.close()
        yield root, requests


KILLS = [
    ("edit.round_computed", ["edit", "more.jsonl", "--batch-size", "2"]),
    ("edit.artifacts_stored", ["edit", "more.jsonl", "--batch-size", "2"]),
    ("ledger.append.before_commit", ["edit", "more.jsonl", "--batch-size", "2"]),
    ("revert.replayed", ["revert", "main~1", "--reason", "crash test"]),
    ("revert.artifacts_stored", ["revert", "main~1", "--reason", "crash test"]),
    ("replay.artifacts_stored", ["replay", "--onto", "{model}", "--name", "again", "--new-branch", "again"]),
    ("stats.computed", ["stats", "tiny", "--corpus", "{corpus}"]),
    ("checkout.model_written", ["checkout", "main", "--out", "exported"]),
]


@pytest.mark.parametrize(("point", "args"), KILLS, ids=[k[0] for k in KILLS])
def test_sigkill_leaves_the_ledger_as_it_was(crash_ledger, tiny_world, point, args, capsys):
    root, _ = crash_ledger
    before = {b["name"]: b["head_hash"] for b in run_cli(capsys, root, "branch", "--json").json()}
    count = len(run_cli(capsys, root, "log", "--json", "--limit", "1000").json())
    args = [a.format(model=tiny_world.model_dir, corpus=tiny_world.corpus_path) for a in args]
    killed = run_subprocess(root, *args, env={"EDITLEDGER_KILL_AT": point})
    assert killed.code == -signal.SIGKILL, (point, killed.stderr[-2000:])
    after = {b["name"]: b["head_hash"] for b in run_cli(capsys, root, "branch", "--json").json()}
    assert {name: after[name] for name in before} == before
    for name in set(after) - set(before):  # a replay onto a new base may have recorded that base, nothing more
        assert run_cli(capsys, root, "show", after[name], "--json").json()["version"]["kind"] == "base"
    assert len(run_cli(capsys, root, "log", "--json", "--limit", "1000").json()) == count  # main: no new version
    verified = run_cli(capsys, root, "verify")
    assert verified.code == 0, verified.stderr
    assert not (root / "exported").exists()
    # What the killed run stored before dying is unreferenced: gc lists it, removes only it, and all still verifies.
    listed = run_cli(capsys, root, "gc").stdout.split()
    assert run_cli(capsys, root, "gc", "--apply").code == 0
    ledger = Ledger.open(root)
    referenced = {a.sha256 for b in ledger.branches() for v in ledger.log(b.name, limit=1000)
                  for a in ledger.show(v.commit_hash).artifacts}
    ledger.close()
    assert not referenced & set(listed)
    assert run_cli(capsys, root, "verify").code == 0
