"""A team on one ledger from several machines: one PostgreSQL database, one bucket on a real S3-compatible server
(moto's, its own process, spoken to over HTTP by s3fs), and per machine its own working directory, configuration
and blob cache. Credentials and the endpoint come from the environment, as on each engineer's machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from editor.lifecycle import Workspace
from ledger import Ledger
from ledger.errors import StoreUnavailableError
from tests.lifecycle.cli_helpers import REPO, run_cli
from tests.pg import postgres_url_or_skip
from tests.s3 import S3Server, free_port, s3_client_env, start_s3_server

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def one_torch_thread():
    """These tests run editors beside an S3 server and other processes: one thread each keeps them from
    oversubscribing the cores (two threads on a loaded two-core machine made a round 20x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _cached_blobs(machine: Path) -> set[str]:
    return {p.parent.name + p.name for p in (machine / ".editledger" / "cache" / "blobs").glob("*/*")}


def _one_line_error(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _machine_a_with_a_base(capsys, tmp_path, s3_env: S3Server, db_url: str, store: str, world):
    """Two machines' working directories; on the first, a team ledger in `store`'s bucket with the world's base."""
    s3_env.make_bucket(store.removeprefix("s3://").split("/")[0])
    a, b = tmp_path / "machine-a", tmp_path / "machine-b"
    a.mkdir()
    b.mkdir()
    assert run_cli(capsys, a, "init", "--db", db_url, "--store", store).code == 0
    assert run_cli(capsys, a, "model", "add", "tiny-world", "--path", world.model_dir, "--corpus", world.corpus_path,
                   "--author", "alice").code == 0
    return a, b


def test_two_machines_share_one_ledger_and_one_bucket(tiny_world, tmp_path, s3_env: S3Server, capsys) -> None:
    with postgres_url_or_skip() as db_url:
        store = "s3://team-ledger/models/fact-world"
        # A creates the team ledger, adds the base, edits 3 rounds
        a, b = _machine_a_with_a_base(capsys, tmp_path, s3_env, db_url, store, tiny_world)
        edited = run_cli(capsys, a, "edit", tiny_world.facts_path, "--limit", "3", "--batch-size", "1",
                         "--author", "alice", "--json")
        assert edited.code == 0, edited.stderr
        rounds = [v["commit_hash"] for v in edited.json()]
        assert len(rounds) == 3
        config_text = (a / ".editledger" / "config.json").read_text()
        assert json.loads(config_text) == {"format": 1, "db_url": db_url, "store": store}
        assert os.environ["AWS_SECRET_ACCESS_KEY"] not in config_text  # credentials stay in the environment

        # B keeps the base model elsewhere, joins in one command, and checks out each of A's versions, verified
        # against the recorded state hashes, through its own cache
        b_model = shutil.copytree(tiny_world.model_dir, tmp_path / "b-models" / "tiny-world")
        joined = run_cli(capsys, b, "connect", "--db", db_url, "--store", store, "--model", f"tiny-world={b_model}")
        assert joined.code == 0, joined.stderr
        assert json.loads((b / ".editledger" / "config.json").read_text())["model_paths"] == {
            "tiny-world": str(b_model)}
        assert [v["commit_hash"] for v in run_cli(capsys, b, "log", "--json").json()][:3] == rounds[::-1]
        assert _cached_blobs(b) == set()
        for number, commit in enumerate(rounds):
            done = run_cli(capsys, b, "checkout", commit, "--out", b / f"round-{number}")
            assert done.code == 0 and "state hash verified" in done.stdout, done.stderr
            assert (b / f"round-{number}" / "config.json").is_file()
        assert _cached_blobs(b) and _cached_blobs(a)  # each machine caches what it read or wrote

        # B reverts the request of round 2
        key = run_cli(capsys, b, "show", rounds[1], "--json").json()["outcomes"][0]["request_key"]
        reverted = run_cli(capsys, b, "revert", key[:16], "--reason", "wrong source", "--author", "bob")
        assert reverted.code == 0, reverted.stderr

        # A sees B's revert in its log and checks it out (its blobs come from the bucket, not A's cache)
        log = run_cli(capsys, a, "log", "--json").json()
        assert (log[0]["kind"], log[0]["author"], log[0]["reason"]) == ("revert", "bob", "wrong source")
        assert not {a_.get("sha256") for a_ in run_cli(capsys, a, "show", "main", "--json").json()["artifacts"]
                    } <= _cached_blobs(a)
        done = run_cli(capsys, a, "checkout", "main", "--out", a / "after-revert")
        assert done.code == 0 and "state hash verified" in done.stdout, done.stderr

        for machine in (a, b):
            verified = run_cli(capsys, machine, "verify")
            assert verified.code == 0 and "ok" in verified.stdout, verified.stderr


def test_a_blob_changed_in_the_bucket_is_caught_by_verify_and_checkout(tiny_world, tmp_path, s3_env: S3Server,
                                                                     capsys) -> None:
    with postgres_url_or_skip() as db_url:
        store = "s3://tampered/ledger"
        a, b = _machine_a_with_a_base(capsys, tmp_path, s3_env, db_url, store, tiny_world)
        edited = run_cli(capsys, a, "edit", tiny_world.facts_path, "--limit", "1", "--json")
        commit = edited.json()[0]["commit_hash"]
        artifacts = {x["role"]: x["sha256"] for x in run_cli(capsys, a, "show", commit, "--json").json()["artifacts"]}
        delta, zstar = artifacts["delta"], artifacts["zstar"]
        client = s3_env.client()
        other = client.get_object(Bucket="tampered", Key=f"ledger/{zstar[:2]}/{zstar[2:]}")["Body"].read()
        client.put_object(Bucket="tampered", Key=f"ledger/{delta[:2]}/{delta[2:]}", Body=other)  # valid safetensors

        checked = run_cli(capsys, a, "verify")  # reads the bucket itself, past A's cache
        assert checked.code == 1 and delta in _one_line_error(checked) and "corrupt" in checked.stderr
        assert run_cli(capsys, b, "connect", "--db", db_url, "--store", store).code == 0
        refused = run_cli(capsys, b, "checkout", commit, "--out", b / "out")
        assert refused.code == 2 and delta in _one_line_error(refused) and "corrupt" in refused.stderr
        assert not (b / "out" / "model.safetensors").exists()


def test_the_store_stopped_mid_edit_records_nothing(tiny_world, tmp_path, monkeypatch, capsys) -> None:
    server = start_s3_server()
    try:
        for name, value in {**s3_client_env(server), "EDITLEDGER_STORE_TIMEOUT": "2"}.items():
            monkeypatch.setenv(name, value)
        with postgres_url_or_skip() as db_url:
            server.make_bucket("stops")
            ledger = Ledger.init(tmp_path, db_url=db_url, store_dir="s3://stops/ledger")

            def stop_during_round_2(line: str) -> None:
                if line.startswith("round 2/"):  # round 1 is recorded; round 2 has started computing
                    server.stop()

            ws = Workspace(ledger, progress=stop_during_round_2)
            ws.add_model("tiny-world", tiny_world.model_dir, corpus=tiny_world.corpus_path)
            with pytest.raises(StoreUnavailableError, match="cannot reach the endpoint") as failed:
                ws.edit(tiny_world.requests()[:2], batch_size=1, author="tests")
            assert "\n" not in str(failed.value) and server.endpoint in str(failed.value)
            assert [v.kind for v in ledger.log("main")] == ["edit", "base"]  # round 2 left no version
            assert ledger.verify(check_blobs=False).ok
            ledger.close()

            r = tiny_world.requests()[9]
            attempt = run_cli(capsys, tmp_path, "edit", "--subject", r.subject, "--prompt", r.prompt,
                              "--target", r.target_new)
            assert attempt.code == 2 and "cannot reach the endpoint" in _one_line_error(attempt)
            ledger = Ledger.open(tmp_path)
            assert len(ledger.log("main")) == 2
            ledger.close()
    finally:
        server.stop()


def test_connect_refuses_unreachable_missing_denied_and_silent_stores(tmp_path, s3_env: S3Server, capsys,
                                                                      monkeypatch) -> None:
    with postgres_url_or_skip() as db_url:
        s3_env.make_bucket("errors")
        Ledger.init(tmp_path / "first", db_url=db_url, store_dir="s3://errors/ledger").close()
        machine = tmp_path / "new-machine"
        machine.mkdir()

        def connect(store: str, *more: str):
            result = run_cli(capsys, machine, "connect", "--db", db_url, "--store", store, *more)
            assert result.code == 2 and not (machine / ".editledger" / "config.json").exists()
            return _one_line_error(result)

        assert "bucket 'no-such-bucket' does not exist" in connect("s3://no-such-bucket/ledger")
        created = run_cli(capsys, machine, "init", "--db", db_url, "--store", "s3://no-such-bucket/ledger")
        assert created.code == 2 and "does not exist" in _one_line_error(created)
        assert not (machine / ".editledger" / "config.json").exists()
        assert "needs --store" in _one_line_error(run_cli(capsys, machine, "connect", "--db", db_url))
        assert "unknown base model" in connect("s3://errors/ledger", "--model", "nobody=.")

        monkeypatch.setenv("EDITLEDGER_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens
        assert "cannot reach the endpoint" in connect("s3://errors/ledger")
        monkeypatch.setenv("EDITLEDGER_S3_ENDPOINT_URL", s3_env.endpoint)

        monkeypatch.setenv("EDITLEDGER_STORE_TIMEOUT", "1")
        s3_env.pause()
        try:
            assert "timed out" in connect("s3://errors/ledger")
        finally:
            s3_env.resume()

        # A server that checks credentials: a known user with no policy is denied
        guarded = start_s3_server({"INITIAL_NO_AUTH_ACTION_COUNT": "3"})  # three set-up calls, then auth
        try:
            guarded.make_bucket("locked")
            guarded.client("iam").create_user(UserName="intern")
            key = guarded.client("iam").create_access_key(UserName="intern")["AccessKey"]
            monkeypatch.setenv("EDITLEDGER_S3_ENDPOINT_URL", guarded.endpoint)
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
            assert "access denied" in connect("s3://locked/ledger")
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody-knows-me")
            assert "access denied" in connect("s3://locked/ledger")
        finally:
            guarded.stop()


def _spawn(cwd: Path, args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_four_editors_on_four_machines_race_on_one_branch(tiny_world, tmp_path, s3_env: S3Server) -> None:
    with postgres_url_or_skip() as db_url:
        s3_env.make_bucket("race")
        store = "s3://race/ledger"
        ledger = Ledger.init(tmp_path / "setup", db_url=db_url, store_dir=store)
        ws = Workspace(ledger)
        ws.add_model("tiny-world", tiny_world.model_dir, corpus=tiny_world.corpus_path)
        requests = tiny_world.requests()[:5]
        ws.edit(requests[:1], author="setup")
        start = len(ledger.log("main"))
        ledger.close()
        machines = []
        for number in range(4):
            machine = tmp_path / f"machine-{number}"
            Ledger.connect(machine, db_url=db_url, store=store).close()
            machines.append(machine)
        procs = [_spawn(machine, ["edit", "--subject", r.subject, "--prompt", r.prompt, "--target", r.target_new,
                                  "--author", f"worker-{number}"])
                 for number, (machine, r) in enumerate(zip(machines, requests[1:], strict=True))]
        outcomes = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
        codes = [code for code, _ in outcomes]
        assert set(codes) <= {0, 3} and 0 in codes, outcomes
        assert all("conflict" in err for code, err in outcomes if code == 3), outcomes

        ledger = Ledger.open(tmp_path / "setup")
        log = ledger.log("main", limit=100)
        assert len(log) == start + codes.count(0)
        workers = [v.author for v in log if v.author.startswith("worker-")]
        assert sorted(workers) == sorted(f"worker-{n}" for n, code in enumerate(codes) if code == 0)
        report = ledger.verify()  # every recorded blob is in the bucket and hashes right
        assert report.ok and report.blobs_checked > 0, report.problems
        ledger.close()
