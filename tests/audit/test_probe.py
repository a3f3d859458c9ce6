"""`probe`: the base and the head answer a reverted fact and a kept fact as they should."""

from __future__ import annotations

import pytest

from editor.probe import probe
from ledger.records import EditRequest
from tests.audit.conftest import PER_ROUND
from tests.lifecycle.cli_helpers import run_cli

pytestmark = pytest.mark.slow



def kept_fact(audited) -> EditRequest:
    """A request of round 2 that was not reverted and that the head answers with its new target (its recorded
    argmax efficacy there is 1)."""
    held = {s.request_key for s in audited.ledger.scores(audited.revert.commit_hash)
            if s.metric == "efficacy_argmax" and s.value == 1.0}
    round_two = audited.requests[PER_ROUND : 2 * PER_ROUND]
    return next(r for r in round_two if r.request_key != audited.reverted.request_key and r.request_key in held)


def first_word(text: str | None) -> str:
    return (text or "").strip().split()[0]


def test_base_and_head_answer_a_reverted_and_a_kept_fact(audited):
    kept = kept_fact(audited)
    reverted = audited.reverted
    report = probe(audited.ws, [kept.text, reverted.text], ["main"], top_k=3, max_new_tokens=3)
    assert [c.ref for c in report.columns] == ["base", "main"]
    assert [c.commit_hash for c in report.columns] == [audited.base_commit, audited.revert.commit_hash]
    kept_row, reverted_row = report.rows
    base, head = kept_row.answers
    assert first_word(base.continuation) == first_word(kept.target_true)
    assert first_word(head.continuation) == first_word(kept.target_new)
    assert first_word(kept.target_new).startswith(head.top[0].token.strip())
    assert sum(t.probability for t in head.top) <= 1.0 + 1e-6
    assert head.top[0].probability >= head.top[1].probability >= head.top[2].probability > 0
    base, head = reverted_row.answers
    assert first_word(base.continuation) == first_word(reverted.target_true)
    # The revert took its edit back. (The head need not say the old answer: other edits of the same subject can
    # move it, measured on the tiny world: an instrument edit of that person makes "violin" its mother tongue.)
    assert first_word(head.continuation) != first_word(reverted.target_new)
    # Round 2's own version still holds the reverted edit.
    at_round = probe(audited.ws, [reverted.text], [audited.rounds[1].commit_hash], with_base=False)
    assert first_word(at_round.rows[0].answers[0].continuation) == first_word(reverted.target_new)


def test_probe_of_a_request_from_the_command(audited, capsys):
    result = run_cli(capsys, audited.root, "probe", "--request", audited.reverted.request_key[:10],
                     "--at", "main", "--at", audited.rounds[1].commit_hash[:10], "--top-k", "2", "--json")
    assert result.code == 0, result.stderr
    report = result.json()
    assert [c["ref"] for c in report["columns"]] == ["base", "main", audited.rounds[1].commit_hash[:10]]
    kinds = [row["kind"] for row in report["rows"]]
    assert kinds[0] == "rewrite" and "paraphrase" in kinds and "neighborhood" in kinds
    rewrite = report["rows"][0]
    assert rewrite["prompt"] == audited.reverted.text and rewrite["expected"] == audited.reverted.target_new
    assert [len(a["top"]) for a in rewrite["answers"]] == [2, 2, 2]
    table = run_cli(capsys, audited.root, "probe", audited.reverted.text)
    assert table.code == 0 and first_word(audited.reverted.target_true) in table.stdout
    empty = run_cli(capsys, audited.root, "probe")
    assert empty.code == 2 and "PROMPT" in empty.stderr
