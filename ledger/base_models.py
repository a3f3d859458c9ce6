"""Base models: the row of each model a branch starts from (its state hash, architecture, config and where it
lives), its one conversion to `BaseModelInfo`, and `relocate` (a new path, kept as a `relocate` audit event).
Recording a base model also records its base version and branch: that write is `ledger.writing.add_base_model`."""

from __future__ import annotations

import json

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ledger import events
from ledger.db import write_transaction
from ledger.errors import UnknownRefError
from ledger.infos import BaseModelInfo
from ledger.models import BaseModelRow


def base_model_row(session: Session, name: str) -> BaseModelRow:
    row = session.scalar(select(BaseModelRow).where(BaseModelRow.name == name))
    if row is None:
        raise UnknownRefError(f"unknown base model {name!r}")
    return row


def base_model_info(row: BaseModelRow) -> BaseModelInfo:
    return BaseModelInfo(
        name=row.name,
        state_hash=row.state_hash,
        architecture=row.architecture,
        config=json.loads(row.config_json),
        source_path=row.source_path,
        hub_id=row.hub_id,
        revision=row.revision,
        created_at=row.created_at,
    )


def base_model(session: Session, name: str) -> BaseModelInfo:
    return base_model_info(base_model_row(session, name))


def base_models(session: Session) -> list[BaseModelInfo]:
    return [base_model_info(row) for row in session.scalars(select(BaseModelRow).order_by(BaseModelRow.id))]


def relocate(engine: Engine, name: str, source_path: str, actor: str) -> None:
    """Record where base model `name` now lives (the caller has verified its state hash there). The path is not in
    any commit hash; the move is kept as a `relocate` audit event with the old and new paths."""
    with write_transaction(engine) as session:
        row = base_model_row(session, name)
        old, row.source_path = row.source_path, source_path
        detail = {"model": name, "from": old, "to": source_path, "state_hash": row.state_hash}
        events.add_event(session, "relocate", actor, None, detail)
