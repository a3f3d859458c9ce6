"""Changing any recorded row by plain SQL breaks verification at that version; a flipped blob byte names the
blob; a history rewritten with every hash recomputed is still caught by a checkpoint kept outside the
database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from ledger import Ledger
from ledger.chain import commit_hash
from ledger.db import transaction
from ledger.models import VersionRow
from ledger.queries import chain_records
from tests.ledger.helpers import build_chain


def sql(ledger: Ledger, statement: str, **params: object) -> None:
    with ledger.engine.begin() as connection:
        assert connection.execute(text(statement), params).rowcount == 1


@pytest.fixture
def history(ledger: Ledger) -> list:
    return build_chain(ledger, 4)


TAMPERINGS = {
    "reason": (
        "UPDATE versions SET reason = :evil WHERE id = :vid",
        "UPDATE versions SET reason = :good WHERE id = :vid",
        "SELECT reason FROM versions WHERE id = :vid",
    ),
    "neuron": (
        "UPDATE footprint_neurons SET neuron = 999 WHERE version_id = :vid AND position = 1 AND layer = 1",
        "UPDATE footprint_neurons SET neuron = :good WHERE version_id = :vid AND position = 1 AND layer = 1",
        "SELECT neuron FROM footprint_neurons WHERE version_id = :vid AND position = 1 AND layer = 1",
    ),
    "request target": (
        "UPDATE edit_requests SET target_new = :evil WHERE id = "
        "(SELECT request_id FROM version_requests WHERE version_id = :vid AND position = 0)",
        "UPDATE edit_requests SET target_new = :good WHERE id = "
        "(SELECT request_id FROM version_requests WHERE version_id = :vid AND position = 0)",
        "SELECT target_new FROM edit_requests WHERE id = "
        "(SELECT request_id FROM version_requests WHERE version_id = :vid AND position = 0)",
    ),
    "residual": (
        "UPDATE request_outcomes SET residual_after = 0.5 WHERE version_id = :vid AND position = 0",
        "UPDATE request_outcomes SET residual_after = :good WHERE version_id = :vid AND position = 0",
        "SELECT residual_after FROM request_outcomes WHERE version_id = :vid AND position = 0",
    ),
}


@pytest.mark.parametrize("field", list(TAMPERINGS))
def test_tampering_a_middle_version_is_named(ledger: Ledger, history: list, field: str) -> None:
    tamper, restore, read = TAMPERINGS[field]
    middle = history[2]
    assert ledger.verify().ok
    with ledger.engine.connect() as connection:
        good = connection.execute(text(read), {"vid": middle.id}).scalar_one()
    sql(ledger, tamper, vid=middle.id, evil="tampered")
    report = ledger.verify()
    assert not report.ok
    assert middle.commit_hash in report.problems[0] and "branch 'main'" in report.problems[0]
    assert (
        len(report.problems) == 1
    )  # later versions still chain to the recorded hash: only this one is named
    sql(ledger, restore, vid=middle.id, good=good)
    assert ledger.verify().ok


def test_a_flipped_blob_byte_is_named(ledger: Ledger, history: list) -> None:
    sha = ledger.show(history[3].commit_hash).artifacts[0].sha256
    path = ledger.store.path(sha)
    original = path.read_bytes()
    path.write_bytes(bytes([original[0] ^ 1]) + original[1:])
    report = ledger.verify()
    assert not report.ok and sha in report.problems[0] and "corrupt" in report.problems[0]
    assert ledger.verify(check_blobs=False).ok
    path.unlink()
    assert "missing" in ledger.verify().problems[0]
    path.write_bytes(original)
    assert ledger.verify().ok
    assert ledger.audit_events()[0].kind == "verify"


def rewrite_history(ledger: Ledger, start: int) -> None:
    """What a forger with database access would do: change a version, then recompute every hash after it."""
    with transaction(ledger.engine, write=True) as session:
        ids = [v.id for v in ledger.ancestry("main")]
        session.execute(update(VersionRow).where(VersionRow.id == ids[start]).values(reason="rewritten"))
        for version_id in ids[start:]:
            parent_hash = session.scalar(
                select(VersionRow.commit_hash).where(VersionRow.id == ids[ids.index(version_id) - 1])
            )
            record = chain_records(session, [version_id])[version_id]
            session.execute(
                update(VersionRow)
                .where(VersionRow.id == version_id)
                .values(commit_hash=commit_hash(parent_hash, record))
            )


def test_checkpoint_catches_a_recomputed_rewrite(ledger: Ledger, history: list, tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint.json"
    ledger.write_checkpoint(checkpoint)
    assert ledger.check_checkpoint(checkpoint) == []
    rewrite_history(ledger, 2)
    assert ledger.verify().ok  # every hash inside the database matches again...
    problems = ledger.check_checkpoint(
        checkpoint
    )  # ...but the head recorded outside no longer is in the history
    assert (
        len(problems) == 1 and "branch 'main'" in problems[0] and history[-1].commit_hash[:12] in problems[0]
    )
