"""Revert of one request, and replay of a history onto a next release of the base model."""

from __future__ import annotations

import pytest

from editor.evaluate import evaluate_requests
from editor.hashing import state_hash
from tests.lifecycle.conftest import make_edited_ledger


@pytest.fixture(scope="module")
def reverted(tiny_world, tmp_path_factory):
    edited = make_edited_ledger(tmp_path_factory.mktemp("revert"), tiny_world)
    target = edited.ledger.show(edited.versions[1].commit_hash).requests[0].request
    version = edited.ws.revert(target.request_key[:10], reason="wrong fact", author="tests")
    return edited, target, version


def test_reverted_fact_is_back_to_its_base_answer(reverted, tiny_world):
    edited, target, version = reverted
    model, _ = edited.ws.checkout_model(version.commit_hash)
    base, _ = edited.ws.checkout_model(edited.base_commit)
    after = evaluate_requests(model.model, model.tokenizer, [target]).per_request[0]
    before = evaluate_requests(base.model, base.tokenizer, [target]).per_request[0]
    assert after["efficacy"] == before["efficacy"] == 0.0
    others = [r for r in edited.requests if r.request_key != target.request_key]
    assert evaluate_requests(model.model, model.tokenizer, others).aggregate["efficacy"] >= 0.9


def test_revert_equals_a_fresh_replay_of_the_history_without_it(reverted):
    edited, target, version = reverted
    rounds = [r.without({target.request_key}) for r in edited.ws.rounds_of(edited.versions[-1].commit_hash)]
    fresh = edited.ws.replay_rounds(edited.base_commit, rounds, recorded_in=edited.versions[-1].commit_hash)
    assert state_hash(fresh.model) == version.state_hash


def test_revert_is_marked_in_the_history_of_the_fact(reverted):
    edited, target, version = reverted
    events = edited.ledger.history(request=target.request_key)
    kinds = [(e.commit_hash, e.event) for e in events]
    assert (edited.versions[1].commit_hash, "edited") in kinds
    assert (version.commit_hash, "reverted") in kinds
    assert edited.ledger.verify().ok


def test_replay_after_a_revert_is_still_bit_exact(reverted):
    edited, _, _ = reverted
    assert all(step.ok for step in edited.ws.replay_same_base("main"))


def test_replay_onto_a_next_release_records_a_branch_and_reports_each_fact(reverted, tiny_world_release2):
    edited, target, _ = reverted
    report = edited.ws.replay_onto("main", tiny_world_release2.model_dir, base_name="release-2",
                                   new_branch="main-release-2")
    history = edited.ws.rounds_of("main")
    assert len(report.versions) == len(history)
    assert set(report.took) == {r.request_key for round_ in history for r in round_.requests}
    assert target.request_key not in report.took
    assert report.success_rate >= 0.8
    head = edited.ledger.resolve("main-release-2")
    assert head.base_model == "release-2"
    assert all(v.kind in ("replay", "base") for v in edited.ledger.log("main-release-2", limit=50))
    assert edited.ledger.verify().ok
