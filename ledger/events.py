"""Audit events: the ledger's log of what was done to it that is not a version (verify, gc, checkout, relocate, a
statistics run...). Appended and listed here; history to read, never where a setting is looked up."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ledger import refs
from ledger.chain import json_value
from ledger.db import write_transaction
from ledger.errors import LedgerError
from ledger.infos import AuditEvent
from ledger.models import AUDIT_KINDS, AuditEventRow, VersionRow
from ledger.records import canonical_json
from ledger.values import utc_now


def event_detail(kind: str, detail: dict[str, Any]) -> str:
    """The checked kind and the detail as stored (canonical JSON)."""
    if kind not in AUDIT_KINDS:
        raise LedgerError(f"audit event kind {kind!r} is not one of {', '.join(AUDIT_KINDS)}")
    return canonical_json(json_value(detail, f"audit event {kind!r} detail"))


def _row(kind: str, actor: str, version_id: int | None, detail_json: str) -> AuditEventRow:
    return AuditEventRow(kind=kind, actor=actor, created_at=utc_now(), version_id=version_id, detail_json=detail_json)


def add_event(session: Session, kind: str, actor: str, version_id: int | None, detail: dict[str, Any]) -> None:
    """An event written inside a caller's transaction (with the change it records)."""
    session.add(_row(kind, actor, version_id, event_detail(kind, detail)))


def record_audit(engine: Engine, kind: str, actor: str, at: str | None, detail: dict[str, Any]) -> None:
    """An event in a transaction of its own, at version `at` (a ref) or at none."""
    detail_json = event_detail(kind, detail)
    with write_transaction(engine) as session:
        session.add(_row(kind, actor, refs.version_id(session, at) if at else None, detail_json))


def audit_events(session: Session, limit: int = 100) -> list[AuditEvent]:
    """Newest first."""
    query = (
        select(AuditEventRow, VersionRow.commit_hash)
        .outerjoin(VersionRow, VersionRow.id == AuditEventRow.version_id)
        .order_by(AuditEventRow.id.desc())
        .limit(limit)
    )
    return [
        AuditEvent(e.id, e.kind, e.actor, e.created_at, commit, json.loads(e.detail_json))
        for e, commit in session.execute(query)
    ]
