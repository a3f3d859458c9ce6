"""Readable records on a ledger shaped like the demo's: `diff`, `show` (a version and a request), `history`, `log`
piped, `verify`, `--version`. Each output's content and size is checked."""

from __future__ import annotations

import pytest

from tests.lifecycle.cli_helpers import run_cli

pytestmark = pytest.mark.slow


def lines(text: str) -> list[str]:
    return text.rstrip("\n").splitlines()


def test_diff_is_a_summary_and_json_the_full_record(audited, capsys):
    chain = audited.ledger.ancestry("main")
    result = run_cli(capsys, audited.root, "diff", "main~4", "main")
    assert result.code == 0, result.stderr
    out = lines(result.stdout)
    assert len(out) < 60 and len(result.stdout) < 6000
    assert out[0] == f"diff {chain[1].commit_hash} .. {chain[-1].commit_hash}"
    added = [r for r in audited.requests[3:] if r.request_key != audited.reverted.request_key]
    assert f"requests added: {len(added)}" in out
    for request in added:
        assert any(request.request_key[:12] in row and request.target_new in row and request.text in row
                   for row in out)
    assert audited.reverted.request_key[:12] not in result.stdout  # edited and reverted in between: not added
    full = run_cli(capsys, audited.root, "diff", "main~4", "main", "--json").json()
    assert {r["request_key"] for r in full["added"]} == {r.request_key for r in added}
    for layer in full["layers"]:
        expected = f"  L{layer['layer']}: {len(layer['neurons'])} neurons by {layer['n_versions']} versions, Σ‖ΔW‖ "
        assert any(row.startswith(expected) for row in out)


def test_show_of_a_revert_is_compact_and_shows_scores(audited, capsys):
    result = run_cli(capsys, audited.root, "show", "main")
    assert result.code == 0, result.stderr
    out = lines(result.stdout)
    assert len(out) < 40
    assert out[0] == f"commit {audited.revert.commit_hash} (revert)"
    replayed = len(audited.requests) - 3 - 1  # rounds 2 to 4, but the reverted request
    assert f"requests: {replayed + 1} (1 reverted, {replayed} replayed)" in out
    assert f"  reverted {audited.reverted.request_key[:12]} {audited.reverted.text!r}" in result.stdout
    scores = next(r for r in out if r.startswith("scores: "))
    shown = run_cli(capsys, audited.root, "show", "main", "--json").json()
    efficacy = next(s["value"] for s in shown["scores"] if s["metric"] == "efficacy" and s["request_key"] is None)
    assert f"efficacy {efficacy:.3f}" in scores
    keys = {entry["request_key"] for entry in shown["requests"]}
    assert {o["request_key"] for o in shown["outcomes"]} <= keys  # requests can be matched to their outcomes
    every = run_cli(capsys, audited.root, "show", "main", "--all")
    assert all(key[:12] in every.stdout for key in keys)


def test_show_request_tells_its_whole_story(audited, capsys):
    key = audited.reverted.request_key
    result = run_cli(capsys, audited.root, "show", key[:10])
    assert result.code == 0, result.stderr
    out = result.stdout
    assert lines(out)[0] == f"request {key}"
    assert f"{audited.reverted.text!r}: {audited.reverted.target_true} → {audited.reverted.target_new}" in out
    assert f"  {audited.rounds[1].commit_hash} edited   edit" in out
    assert f"  {audited.revert.commit_hash} reverted revert" in out
    assert "residual " in out and "ticket 7: wrong source" in out
    assert "in effect at no branch head" in out
    # Scored by the --eval of rounds 2, 3 and 4 (it was in their histories), not by the head's evaluation.
    assert "scores (3 evaluations):" in out and audited.rounds[3].commit_hash in out
    assert len(lines(out)) < 20
    detail = run_cli(capsys, audited.root, "show", key[:10], "--json").json()
    assert detail["request_key"] == key and [e["role"] for e in detail["events"]] == ["edited", "reverted"]


def test_history_rows_carry_prompt_and_target_and_a_miss_is_exit_1(audited, capsys):
    request = audited.requests[0]
    result = run_cli(capsys, audited.root, "history", "--subject", f"  {request.subject.upper()} ")
    assert result.code == 0, result.stderr
    rows = lines(result.stdout)
    mine = [r for r in rows if request.request_key[:12] in r]
    assert mine and all(f"{request.text!r}: {request.target_true} → {request.target_new}" in r for r in mine)
    assert any(r.startswith(f"{audited.rounds[0].commit_hash} ") and " edited " in r for r in mine)
    assert any(" evaluated " in r and "efficacy " in r and "{" not in r for r in mine)
    miss = run_cli(capsys, audited.root, "history", "--subject", "Nobody Atall")
    assert miss.code == 1 and miss.stdout == ""
    assert lines(miss.stderr) == ["error: --subject 'Nobody Atall': no recorded request has this subject"]


def test_log_piped_keeps_whole_hashes(audited, capsys):
    chain = audited.ledger.ancestry("main")[::-1]
    result = run_cli(capsys, audited.root, "log")  # captured: not a terminal
    out = lines(result.stdout)
    assert len(out) == len(chain)
    for row, version in zip(out, chain, strict=True):
        assert row.startswith(f"{version.commit_hash} {version.kind}")
        assert version.created_at[:19] in row
    full = run_cli(capsys, audited.root, "log", "--format", "full").stdout
    assert all(f"commit {v.commit_hash} ({v.kind})" in full and f"State:  {v.state_hash}" in full for v in chain)
    bad = run_cli(capsys, audited.root, "log", "--format", "oneline")
    assert bad.code == 2 and "--format" in bad.stderr


def test_verify_says_what_it_did(audited, capsys, tmp_path):
    checkpoint = tmp_path / "ledger.checkpoint"
    first = run_cli(capsys, audited.root, "verify", "--checkpoint", checkpoint)
    assert first.code == 0, first.stderr
    assert f"checkpoint: {checkpoint} written" in first.stdout and checkpoint.exists()
    assert f"commit hashes: {audited.versions} versions recomputed" in first.stdout
    second = run_cli(capsys, audited.root, "verify", "--checkpoint", checkpoint)
    assert f"checkpoint: {checkpoint} checked: every branch still holds its checkpointed head" in second.stdout
    assert run_cli(capsys, audited.root, "branch", "audit-side", "--at", "main~2").code == 0
    replayed = run_cli(capsys, audited.root, "verify", "--replay", "--json")
    assert replayed.code == 0, replayed.stderr
    report = replayed.json()
    assert report["replayed"] == audited.versions  # each version once, though two branches share most of them
    assert report["replayed_branches"] == ["main"]  # audit-side lies inside main's history


def test_version_and_bare_command(capsys, tmp_path):
    from importlib.metadata import version

    shown = run_cli(capsys, tmp_path, "--version")
    assert shown.code == 0 and shown.stdout.strip() == f"editledger {version('editledger')}"
    bare = run_cli(capsys, tmp_path)
    assert bare.code == 0 and "Usage: editledger" in bare.stdout and "error" not in bare.stderr


def test_edit_with_eval_prints_its_scores_and_eval_counts_requests_as_a_number(tiny_world, capsys, tmp_path):
    request = tiny_world.requests()[0]
    assert run_cli(capsys, tmp_path, "init").code == 0
    assert run_cli(capsys, tmp_path, "model", "add", "tiny", "--path", tiny_world.model_dir,
                   "--corpus", tiny_world.corpus_path).code == 0
    edited = run_cli(capsys, tmp_path, "edit", "--subject", request.subject, "--prompt", request.prompt,
                     "--target", request.target_new, "--target-true", request.target_true, "--eval")
    assert edited.code == 0, edited.stderr
    row = lines(edited.stdout)[-1]
    assert " edit 1 requests, state " in row and "; efficacy 1.000" in row
    as_json = run_cli(capsys, tmp_path, "log", "--json").json()[0]
    scored = run_cli(capsys, tmp_path, "eval", as_json["commit_hash"][:10])
    assert scored.code == 0 and "n_requests" in scored.stdout
    assert next(r for r in lines(scored.stdout) if "n_requests" in r).split()[-2] == "1"
