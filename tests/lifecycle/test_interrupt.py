"""Ctrl-C (SIGINT) in the middle of `edit`: exit 130, the interrupted round not recorded, the recorded ones listed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from ledger import Ledger
from tests.lifecycle.cli_helpers import REPO, run_cli


def test_sigint_during_edit_exits_130_and_leaves_only_whole_rounds(tiny_world, tmp_path, capsys):
    from editor.lifecycle import Workspace

    ledger = Ledger.init(tmp_path)
    Workspace(ledger).add_model("tiny", tiny_world.model_dir, corpus=tiny_world.corpus_path)
    ledger.close()
    requests = tiny_world.requests()[:10]
    (tmp_path / "requests.jsonl").write_text("".join(
        json.dumps({"subject": r.subject, "prompt": r.prompt, "target_new": r.target_new}) + "\n"
        for r in requests))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "COLUMNS": "300"}
    # As in a terminal, Ctrl-C is not ignored: a shell starts background jobs (as CI may run the suite) with
    # SIGINT ignored, and a child inherits that; Python then leaves it ignored.
    process = subprocess.Popen([sys.executable, "-m", "cli", "edit", "requests.jsonl", "--batch-size", "2"],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    assert process.stderr is not None
    for line in process.stderr:  # "round 2/5" is said after round 1 is recorded, as round 2 starts
        seen.append(line)
        if line.startswith("round 2/"):
            process.send_signal(signal.SIGINT)
            break
    _, rest = process.communicate(timeout=300)
    stderr = "".join(seen) + rest
    assert process.returncode == 130, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted: the round in progress was not recorded; rounds recorded before it: ")

    log = run_cli(capsys, tmp_path, "log", "--json").json()
    edits = [v for v in log if v["kind"] == "edit"]
    assert len(edits) == 1 and len(log) == 2  # round 1 whole, round 2 not at all
    assert last.endswith(edits[0]["commit_hash"][:12])
    assert run_cli(capsys, tmp_path, "verify").code == 0
    assert run_cli(capsys, tmp_path, "checkout", "main", "--out", tmp_path / "head").code == 0
