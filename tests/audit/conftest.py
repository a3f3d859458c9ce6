"""A small ledger shaped like the demo's: rounds of NSE edits scored as they go, then a revert of one request of
round 2 and an evaluation of the head. Built once per test session for every auditor's test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from editor.lifecycle import Workspace
from ledger import Ledger
from ledger.infos import VersionInfo
from ledger.records import EditRequest

ROUNDS = 4
PER_ROUND = 3


@dataclass
class AuditedLedger:
    root: Path
    ledger: Ledger
    ws: Workspace
    requests: list[EditRequest]
    rounds: list[VersionInfo]  # the edit versions, in order
    reverted: EditRequest  # the first request of round 2 that took
    revert: VersionInfo
    base_commit: str

    @property
    def versions(self) -> int:
        return 1 + len(self.rounds) + 1


@pytest.fixture(scope="session")
def audited(tiny_world, tmp_path_factory) -> AuditedLedger:
    root = tmp_path_factory.mktemp("audited")
    ledger = Ledger.init(root)
    ws = Workspace(ledger)
    base = ws.add_model("tiny-world", tiny_world.model_dir, corpus=tiny_world.corpus_path, author="tests")
    requests = tiny_world.requests()[: ROUNDS * PER_ROUND]
    rounds = ws.edit(requests, method="nse", batch_size=PER_ROUND, author="alice", reason="quarterly update",
                     evaluate=True)
    # The reverted fact: the first of round 2 that took there (which ones take depends on the world; the tests
    # check what a revert undoes, so it must have done something).
    took = {o.request_key for o in ledger.show(rounds[1].commit_hash).outcomes if o.took}
    round_two = requests[PER_ROUND : 2 * PER_ROUND]
    reverted = next((r for r in round_two if r.request_key in took), round_two[0])
    revert = ws.revert(reverted.request_key, author="bob", reason="ticket 7: wrong source")
    ws.evaluate(revert.commit_hash)
    return AuditedLedger(root, ledger, ws, requests, rounds, reverted, revert, base.commit_hash)
