"""Two processes appending to one branch head at the same moment: each append is recorded once or refused."""

from __future__ import annotations

import multiprocessing
from itertools import pairwise
from pathlib import Path

from sqlalchemy import func, select

from ledger import Ledger
from ledger.db import transaction
from ledger.models import EditRequestRow, VersionRow
from tests.ledger.helpers import add_base
from tests.ledger.race_worker import race

ROUNDS = 50


def test_two_writers_race_on_one_head(tmp_path: Path, db_url: str | None) -> None:
    ledger = Ledger.init(tmp_path, db_url=db_url)
    base = add_base(ledger)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2, timeout=120)
    results = context.Queue()
    workers = [
        context.Process(target=race, args=(str(tmp_path), db_url, w, ROUNDS, barrier, results))
        for w in range(2)
    ]
    for process in workers:
        process.start()
    outcomes = [results.get(timeout=300) for _ in workers]
    for process in workers:
        process.join(timeout=60)
    assert [error for *_, error in outcomes] == [None, None], outcomes

    recorded = [commit for _, commits, _, _ in outcomes for commit in commits]
    refused = sum(r for _, _, r, _ in outcomes)
    assert len(recorded) + refused == 2 * ROUNDS
    assert len(recorded) == ROUNDS  # both read the same head each round: exactly one of them wins it
    log = ledger.log("main", limit=10 * ROUNDS)
    assert len(log) == len(recorded) + 1
    assert sorted(v.commit_hash for v in log[:-1]) == sorted(recorded)
    assert log[-1].commit_hash == base.commit_hash
    assert all(newer.parent_hash == older.commit_hash for newer, older in pairwise(log))  # linear
    assert [v.depth for v in log] == list(range(ROUNDS, -1, -1))
    with transaction(ledger.engine) as session:  # refused appends left no rows behind
        assert session.scalar(select(func.count()).select_from(VersionRow)) == ROUNDS + 1
        assert session.scalar(select(func.count()).select_from(EditRequestRow)) == ROUNDS
    report = ledger.verify()
    assert report.ok, report.problems
    assert report.versions_checked == ROUNDS + 1
    ledger.close()
