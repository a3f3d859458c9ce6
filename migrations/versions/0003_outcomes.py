"""Outcomes record whether a request took; audit events may record a base model's relocation.

request_outcomes gains six nullable columns (NULL in versions recorded before them, whose commit hashes do not
cover them): zstar_loss, zstar_target_prob, target_prob_before, target_prob_after, already_true, took.
audit_events.kind accepts 'relocate' (`editledger model relocate`).

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the audit kinds before and after this revision.
AUDIT_KINDS_BEFORE = (
    "export", "verify", "revert", "checkout", "gc", "stats", "replay", "edit", "eval", "import", "init",
    "upgrade", "checkpoint",
)
AUDIT_KINDS_AFTER = (*AUDIT_KINDS_BEFORE, "relocate")
OUTCOME_FLOATS = ("zstar_loss", "zstar_target_prob", "target_prob_before", "target_prob_after")
OUTCOME_FLAGS = ("already_true", "took")


def _kinds(values: tuple[str, ...]) -> str:
    return f"kind IN ({', '.join(repr(v) for v in values)})"


def _set_audit_kinds(values: tuple[str, ...]) -> None:
    # SQLite cannot alter a CHECK constraint: batch mode copies the table with the new one.
    with op.batch_alter_table("audit_events", recreate="auto") as batch:
        batch.drop_constraint(op.f("ck_audit_events_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_audit_events_kind"), _kinds(values))


def upgrade() -> None:
    with op.batch_alter_table("request_outcomes") as batch:
        for name in OUTCOME_FLOATS:
            batch.add_column(sa.Column(name, sa.Double(), nullable=True))
        for name in OUTCOME_FLAGS:
            batch.add_column(sa.Column(name, sa.Boolean(), nullable=True))
    _set_audit_kinds(AUDIT_KINDS_AFTER)


def downgrade() -> None:
    _set_audit_kinds(AUDIT_KINDS_BEFORE)
    with op.batch_alter_table("request_outcomes") as batch:
        for name in (*OUTCOME_FLAGS, *OUTCOME_FLOATS):
            batch.drop_column(name)
