"""Scores: evaluation results of a version (summary scores, and per-request ones). Not in the hash chain, so they
can be added to a version after it was recorded (`edit --eval`, `eval`). Written with a draft's version by
`ledger.writing` or later by `record_scores`; read back with their one conversion, `score_of_row`."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ledger import queries, refs
from ledger.chain import finite
from ledger.db import write_transaction
from ledger.errors import LedgerError
from ledger.models import EditRequestRow, ScoreRow
from ledger.records import Score
from ledger.values import short, utc_now


def score_of_row(row: ScoreRow, request_key: str | None) -> Score:
    return Score(metric=row.metric, value=row.value, request_key=request_key, suite=row.suite)


def insert_scores(session: Session, version_id: int, scores: Sequence[Score], created_at: str) -> None:
    """Each score's request must be recorded already; values must be finite."""
    if not scores:
        return
    keys = sorted({s.request_key for s in scores if s.request_key})
    ids = queries.request_ids_by_key(session, keys)
    rows = []
    for s in scores:
        if s.request_key and s.request_key not in ids:
            raise LedgerError(f"score {s.metric!r}: request {short(s.request_key)} is not recorded in this ledger")
        rows.append(
            {
                "version_id": version_id,
                "request_id": ids.get(s.request_key or ""),
                "suite": s.suite,
                "metric": s.metric,
                "value": finite(s.value, f"score {s.metric!r}"),
                "created_at": created_at,
            }
        )
    session.execute(ScoreRow.__table__.insert(), rows)


def record_scores(engine: Engine, at: str, scores: list[Score]) -> None:
    """Scores of the version `at` names, measured after it was recorded."""
    with write_transaction(engine) as session:
        insert_scores(session, refs.version_id(session, at), scores, utc_now())


def version_scores(session: Session, version_id: int) -> list[Score]:
    """A version's scores in the order they were recorded."""
    query = (
        select(ScoreRow, EditRequestRow.request_key)
        .outerjoin(EditRequestRow, EditRequestRow.id == ScoreRow.request_id)
        .where(ScoreRow.version_id == version_id)
        .order_by(ScoreRow.id)
    )
    return [score_of_row(row, key) for row, key in session.execute(query)]
