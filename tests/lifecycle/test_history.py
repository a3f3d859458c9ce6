"""Reverts compose: a second revert, a revert on a branch made at an old version, and a revert of a revert (which
restores what it removed). Each result equals a fresh replay of the live requests in their original rounds, and
the history's SQL statements do not grow with the number of rounds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from editor.hashing import state_hash
from editor.lifecycle import LifecycleError, Round, Workspace
from ledger import Ledger
from ledger.db import StatementCounter
from ledger.records import EditRequest


@dataclass
class OneRequestRounds:
    ledger: Ledger
    ws: Workspace
    base: str
    requests: list[EditRequest]
    versions: list  # VersionInfo of round i (0-based) on main


def one_request_rounds(root: Path, world, n: int) -> OneRequestRounds:
    ledger = Ledger.init(root)
    ws = Workspace(ledger)
    base = ws.add_model("tiny", world.model_dir, corpus=world.corpus_path, author="tests")
    requests = world.requests()[:n]
    versions = ws.edit(requests, batch_size=1, author="tests", reason="history test")
    return OneRequestRounds(ledger, ws, base.commit_hash, requests, versions)


def oracle_hash(h: OneRequestRounds, live: list[int], branch: str = "main") -> str:
    """State hash of a fresh replay, from the base, of the requests `live` (indices), each in its own round."""
    rounds = [Round(h.versions[i].commit_hash, (h.requests[i],), "nse", h.versions[i].hparams) for i in live]
    return state_hash(h.ws.replay_rounds(h.base, rounds, recorded_in=branch).model)


def live_indices(h: OneRequestRounds, ref: str) -> list[int]:
    index = {r.request_key: i for i, r in enumerate(h.requests)}
    return [index[r.request_key] for round_ in h.ledger.rounds(ref) for r in round_.requests]


@pytest.fixture(scope="module")
def four(tiny_world, tmp_path_factory) -> OneRequestRounds:
    return one_request_rounds(tmp_path_factory.mktemp("four"), tiny_world, 4)


def test_a_second_revert_and_reverts_of_reverts_compose(four):
    h = four
    head = h.versions[-1]
    first = h.ws.revert(h.requests[1].request_key, reason="round 2 was wrong")
    assert live_indices(h, "main") == [0, 2, 3]
    assert first.state_hash == oracle_hash(h, [0, 2, 3])
    second = h.ws.revert(h.requests[3].request_key, reason="round 4 too")  # failed before: no version fit
    assert live_indices(h, "main") == [0, 2]
    assert second.state_hash == oracle_hash(h, [0, 2])
    assert h.ledger.lineage("main").steps[-1].start == h.versions[0].commit_hash  # anchor: round 1's version

    undo_first = h.ws.revert(first.commit_hash, reason="round 2 was right after all")
    assert live_indices(h, "main") == [0, 1, 2]  # back in its own round, before round 3
    assert undo_first.state_hash == h.versions[2].state_hash  # the wanted history is round 3's version's
    assert h.ledger.lineage("main").steps[-1].start == h.versions[2].commit_hash
    undo_second = h.ws.revert(second.commit_hash, reason="round 4 too")
    assert live_indices(h, "main") == [0, 1, 2, 3]
    assert undo_second.state_hash == head.state_hash  # the pre-revert head's model, nothing replayed
    assert h.ledger.show("main").requests == []
    with pytest.raises(LifecycleError, match="live again; nothing to restore"):
        h.ws.revert(second.commit_hash)

    diff = h.ledger.diff(head.commit_hash, "main")
    assert diff.added == [] and diff.removed == []
    diff = h.ledger.diff(head.commit_hash, second.commit_hash)
    assert [r.request_key for r in diff.removed] == [h.requests[1].request_key, h.requests[3].request_key]
    assert all(step.ok for step in h.ws.replay_same_base("main"))
    for version in h.ledger.log("main", limit=20):
        assert h.ws.checkout_model(version.commit_hash)[1].state_hash == version.state_hash
    assert h.ledger.verify().ok


def test_reverts_on_a_branch_made_at_an_old_version(four, tiny_world):
    h = four
    h.ledger.create_branch("old", h.versions[1].commit_hash)  # rounds 1, 2
    extra = tiny_world.requests()[10]
    h.ws.edit([extra], branch="old", batch_size=1, author="tests")
    h.ws.revert(h.requests[1].request_key, branch="old", reason="round 2 on the branch")
    wanted = [Round(h.versions[0].commit_hash, (h.requests[0],), "nse", h.versions[0].hparams)]
    keys = [[r.request_key for r in round_.requests] for round_ in h.ledger.rounds("old")]
    assert keys == [[h.requests[0].request_key], [extra.request_key]]
    edited_on_branch = h.ledger.ancestry("old")[-2]
    wanted.append(Round(edited_on_branch.commit_hash, (extra,), "nse", edited_on_branch.hparams))
    fresh = h.ws.replay_rounds(h.base, wanted, recorded_in="old")
    assert h.ledger.resolve("old").state_hash == state_hash(fresh.model)
    second = h.ws.revert(extra.request_key, branch="old", reason="and the branch's own edit")
    assert second.state_hash == h.versions[0].state_hash  # only round 1 is left: its version's model
    with pytest.raises(LifecycleError, match="not part of the branch's current history"):
        h.ws.revert(extra.request_key, branch="old")
    assert all(step.ok for step in h.ws.replay_same_base("old"))
    assert h.ledger.verify().ok


def test_history_statements_do_not_grow_with_the_rounds(tiny_world, tmp_path):
    """The same operations on a branch of 2 rounds and on one of 8 send the same number of SQL statements."""
    h = one_request_rounds(tmp_path, tiny_world, 8)
    h.ledger.create_branch("short", h.versions[1].commit_hash)
    counts = {}
    for branch, n in (("short", 2), ("main", 8)):
        with StatementCounter(h.ledger.engine) as rounds:
            assert len(h.ledger.rounds(branch)) == n
        with StatementCounter(h.ledger.engine) as revert:
            version = h.ws.revert(h.requests[n - 1].request_key, branch=branch)  # the last round: nothing to replay
        assert version.state_hash == h.versions[n - 2].state_hash
        with StatementCounter(h.ledger.engine) as diff:
            h.ledger.diff(h.base, branch)
        with StatementCounter(h.ledger.engine) as log:
            h.ledger.log(branch, limit=5)
        counts[n] = (rounds.count, revert.count, diff.count, log.count)
    assert counts[2] == counts[8], counts
