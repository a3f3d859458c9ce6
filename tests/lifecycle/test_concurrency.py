"""Eight processes editing and reverting one branch at once: each operation is recorded once or refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledger import Ledger
from tests.lifecycle.cli_helpers import REPO

WORKERS = 8


def _spawn(cwd: Path, args: list[str], env: dict[str, str]) -> subprocess.Popen:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **env}
    return subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=cwd, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_eight_writers_on_one_branch(backend, tiny_world, tmp_path):
    from editor.lifecycle import Workspace
    from tests.pg import postgres_url_or_skip

    with postgres_url_or_skip(backend) as db_url:
        env = {"EDITLEDGER_DB": db_url} if db_url else {}
        ledger = Ledger.init(tmp_path, db_url=db_url)
        ws = Workspace(ledger)
        ws.add_model("tiny", tiny_world.model_dir, corpus=tiny_world.corpus_path)
        requests = tiny_world.requests()[: WORKERS + 2]
        ws.edit(requests[:2], batch_size=1, author="setup")
        start_versions = len(ledger.log("main", limit=1000))
        ledger.close()

        procs = []
        for i in range(WORKERS):
            if i % 4 == 3:  # a quarter of the writers revert the first edit, the rest edit
                args = ["revert", "main~1", "--reason", f"worker {i}"]
            else:
                r = requests[2 + i]
                args = ["edit", "--subject", r.subject, "--prompt", r.prompt, "--target", r.target_new,
                        "--author", f"worker-{i}"]
            procs.append(_spawn(tmp_path, args, env))
        outcomes = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
        codes = [code for code, _ in outcomes]
        assert set(codes) <= {0, 2, 3}, outcomes
        assert all(code != 2 or "conflict" in err or "not part of" in err for code, err in outcomes), outcomes

        ledger = Ledger.open(tmp_path, db_url=db_url)
        log = ledger.log("main", limit=1000)
        assert len(log) == start_versions + codes.count(0)
        assert codes.count(0) >= 1
        commits = [v.commit_hash for v in log]
        assert len(set(commits)) == len(commits)
        authors = [v.author for v in log if v.author.startswith("worker-")]
        assert len(authors) == len(set(authors))  # no edit recorded twice
        report = ledger.verify()
        assert report.ok, report.problems
        ledger.close()


def test_edit_with_retry_lands_every_racing_round(tiny_world, tmp_path):
    """Three writers race with --retry: each loser recomputes its round on the new head, so all three land."""
    from editor.lifecycle import Workspace

    ledger = Ledger.init(tmp_path)
    Workspace(ledger).add_model("tiny", tiny_world.model_dir, corpus=tiny_world.corpus_path)
    ledger.close()
    requests = tiny_world.requests()[20:23]
    procs = [_spawn(tmp_path, ["edit", "--subject", r.subject, "--prompt", r.prompt, "--target", r.target_new,
                               "--author", f"retry-{i}", "--retry", "10"], {})
             for i, r in enumerate(requests)]
    outcomes = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    assert [code for code, _ in outcomes] == [0, 0, 0], outcomes
    ledger = Ledger.open(tmp_path)
    log = ledger.log("main", limit=100)
    assert sorted(v.author for v in log if v.kind == "edit") == ["retry-0", "retry-1", "retry-2"]
    assert ledger.verify().ok
    ledger.close()
