"""The history and the statistics as first-class records: a revert's anchor and replayed rounds
(`version_reverts`, `version_rounds`) and a base model's C0 statistics (`statistics`, `statistics_layers`).

Statistics that older ledgers recorded only as `stats` audit events are copied into the new tables. Reverts
recorded before this revision keep their anchor and rounds in `extra` (inside their commit hash), and are read
from there.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("version_reverts", "version_rounds", "statistics", "statistics_layers")


def pk(table: str, *columns: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint(*columns, name=op.f(f"pk_{table}"))


def fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"))


def integer(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.Integer(), nullable=nullable)


def string(name: str, length: int) -> sa.Column:
    return sa.Column(name, sa.String(length=length), nullable=False)


def upgrade() -> None:
    op.create_table(
        "version_reverts",
        integer("version_id"),
        integer("anchor_version_id"),
        integer("reverted_version_id", True),
        fk("version_reverts", "anchor_version_id", "versions"),
        fk("version_reverts", "reverted_version_id", "versions"),
        fk("version_reverts", "version_id", "versions"),
        pk("version_reverts", "version_id"),
    )
    op.create_index(
        op.f("ix_version_reverts_anchor_version_id"), "version_reverts", ["anchor_version_id"], unique=False
    )
    op.create_table(
        "version_rounds",
        integer("version_id"),
        integer("round"),
        integer("position"),
        integer("source_version_id"),
        integer("request_id"),
        fk("version_rounds", "request_id", "edit_requests"),
        fk("version_rounds", "source_version_id", "versions"),
        fk("version_rounds", "version_id", "versions"),
        pk("version_rounds", "version_id", "round", "position"),
    )
    statistics = op.create_table(
        "statistics",
        integer("id"),
        integer("base_model_id"),
        sa.Column("corpus_path", sa.Text(), nullable=False),
        string("corpus_sha256", 64),
        integer("sample_count"),
        string("dtype", 32),
        string("created_at", 32),
        fk("statistics", "base_model_id", "base_models"),
        pk("statistics", "id"),
    )
    op.create_index(op.f("ix_statistics_base_model_id"), "statistics", ["base_model_id"], unique=False)
    layers = op.create_table(
        "statistics_layers",
        integer("statistics_id"),
        integer("layer"),
        string("sha256", 64),
        fk("statistics_layers", "statistics_id", "statistics"),
        pk("statistics_layers", "statistics_id", "layer"),
    )
    _copy_statistics_from_audit_events(statistics, layers)


def _copy_statistics_from_audit_events(statistics: sa.Table, layers: sa.Table) -> None:
    """`stats` audit events (how revision 0001 recorded statistics) become statistics rows."""
    bind = op.get_bind()
    bases = dict(bind.execute(sa.text("SELECT name, id FROM base_models")).all())
    events = bind.execute(
        sa.text("SELECT detail_json, created_at FROM audit_events WHERE kind = 'stats' ORDER BY id")
    ).all()
    for detail_json, created_at in events:
        detail = json.loads(detail_json)
        try:
            base_id = bases[detail["model"]]
            row = {
                "base_model_id": base_id,
                "corpus_path": str(detail["corpus"]),
                "corpus_sha256": str(detail["corpus_sha256"]),
                "sample_count": int(detail["sample_count"]),
                "dtype": str(detail["dtype"]),
                "created_at": created_at,
            }
            blobs = {int(layer): str(sha) for layer, sha in detail["blobs"].items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            continue  # an event without a complete record: nothing to copy
        statistics_id = bind.execute(statistics.insert().values(row).returning(statistics.c.id)).scalar_one()
        if blobs:
            bind.execute(
                layers.insert(),
                [{"statistics_id": statistics_id, "layer": k, "sha256": v} for k, v in sorted(blobs.items())],
            )


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
