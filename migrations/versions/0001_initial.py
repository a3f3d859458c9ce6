"""The initial ledger schema, hand-checked against ledger/models.py (tests compare them on SQLite and
PostgreSQL).

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the enums as they were at this revision (a later revision changes them, not models.py).
VERSION_KINDS = ("base", "edit", "revert", "replay", "import")
REQUEST_ROLES = ("edited", "reverted", "replayed")
OUTCOME_STATUSES = ("edited", "skipped", "satisfied")
AUDIT_KINDS = (
    "export",
    "verify",
    "revert",
    "checkout",
    "gc",
    "stats",
    "replay",
    "edit",
    "eval",
    "import",
    "init",
    "upgrade",
    "checkpoint",
)
TABLES = (
    "base_models",
    "artifacts",
    "edit_requests",
    "request_prompts",
    "versions",
    "audit_events",
    "branches",
    "footprint_layers",
    "request_outcomes",
    "scores",
    "tags",
    "version_artifacts",
    "version_requests",
    "footprint_neurons",
    "ref_log",
)


def one_of(column: str, values: tuple[str, ...], name: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(f"{column} IN ({', '.join(repr(v) for v in values)})", name=op.f(name))


def pk(table: str, *columns: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint(*columns, name=op.f(f"pk_{table}"))


def fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"))


def index(table: str, *columns: str) -> None:
    op.create_index(op.f(f"ix_{table}_{'_'.join(columns)}"), table, list(columns), unique=False)


def integer(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.Integer(), nullable=nullable)


def text(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.Text(), nullable=nullable)


def string(name: str, length: int, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(length=length), nullable=nullable)


def double(name: str) -> sa.Column:
    return sa.Column(name, sa.Double(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "base_models",
        integer("id"),
        string("name", 200),
        string("state_hash", 64),
        string("architecture", 100),
        text("config_json"),
        text("source_path", True),
        string("hub_id", 300, True),
        string("revision", 100, True),
        string("created_at", 32),
        pk("base_models", "id"),
        sa.UniqueConstraint("name", name=op.f("uq_base_models_name")),
    )
    op.create_table(
        "artifacts",
        integer("id"),
        string("sha256", 64),
        string("kind", 50),
        integer("size_bytes"),
        sa.CheckConstraint("size_bytes >= 0", name=op.f("ck_artifacts_size_bytes")),
        pk("artifacts", "id"),
        sa.UniqueConstraint("sha256", name=op.f("uq_artifacts_sha256")),
    )
    op.create_table(
        "edit_requests",
        integer("id"),
        string("request_key", 64),
        text("subject"),
        text("prompt"),
        text("target_new"),
        text("target_true", True),
        string("relation_id", 100, True),
        string("case_id", 100, True),
        pk("edit_requests", "id"),
        sa.UniqueConstraint("request_key", name=op.f("uq_edit_requests_request_key")),
    )
    index("edit_requests", "subject")
    op.create_table(
        "request_prompts",
        integer("request_id"),
        integer("position"),
        string("kind", 50),
        text("text"),
        text("target", True),
        fk("request_prompts", "request_id", "edit_requests"),
        pk("request_prompts", "request_id", "position"),
    )
    op.create_table(
        "versions",
        integer("id"),
        string("commit_hash", 64),
        integer("parent_id", True),
        integer("base_model_id"),
        string("kind", 16),
        string("author", 200),
        text("reason"),
        string("created_at", 32),
        string("method", 50, True),
        text("hparams_json"),
        text("environment_json"),
        text("extra_json"),
        string("state_hash", 64),
        integer("depth"),
        integer("n_requests"),
        one_of("kind", VERSION_KINDS, "ck_versions_kind"),
        fk("versions", "base_model_id", "base_models"),
        fk("versions", "parent_id", "versions"),
        pk("versions", "id"),
        sa.UniqueConstraint("commit_hash", name=op.f("uq_versions_commit_hash")),
    )
    index("versions", "base_model_id")
    index("versions", "parent_id")
    op.create_table(
        "audit_events",
        integer("id"),
        string("kind", 32),
        string("actor", 200),
        string("created_at", 32),
        integer("version_id", True),
        text("detail_json"),
        one_of("kind", AUDIT_KINDS, "ck_audit_events_kind"),
        fk("audit_events", "version_id", "versions"),
        pk("audit_events", "id"),
    )
    index("audit_events", "created_at")
    index("audit_events", "kind", "created_at")
    index("audit_events", "version_id")
    op.create_table(
        "branches",
        integer("id"),
        string("name", 200),
        integer("head_version_id"),
        integer("base_model_id"),
        string("created_at", 32),
        fk("branches", "base_model_id", "base_models"),
        fk("branches", "head_version_id", "versions"),
        pk("branches", "id"),
        sa.UniqueConstraint("name", name=op.f("uq_branches_name")),
    )
    op.create_table(
        "footprint_layers",
        integer("id"),
        integer("version_id"),
        integer("position"),
        integer("layer"),
        integer("pass_index"),
        integer("n_neurons"),
        double("delta_norm"),
        fk("footprint_layers", "version_id", "versions"),
        pk("footprint_layers", "id"),
        sa.UniqueConstraint("version_id", "position", name=op.f("uq_footprint_layers_version_id_position")),
    )
    op.create_table(
        "request_outcomes",
        integer("version_id"),
        integer("position"),
        integer("request_id"),
        double("residual_before"),
        double("residual_after"),
        string("status", 16),
        one_of("status", OUTCOME_STATUSES, "ck_request_outcomes_status"),
        fk("request_outcomes", "request_id", "edit_requests"),
        fk("request_outcomes", "version_id", "versions"),
        pk("request_outcomes", "version_id", "position"),
    )
    index("request_outcomes", "request_id", "version_id")
    op.create_table(
        "scores",
        integer("id"),
        integer("version_id"),
        integer("request_id", True),
        string("suite", 100, True),
        string("metric", 100),
        double("value"),
        string("created_at", 32),
        fk("scores", "request_id", "edit_requests"),
        fk("scores", "version_id", "versions"),
        pk("scores", "id"),
    )
    index("scores", "request_id", "version_id")
    index("scores", "version_id")
    op.create_table(
        "tags",
        integer("id"),
        string("name", 200),
        integer("version_id"),
        string("created_at", 32),
        fk("tags", "version_id", "versions"),
        pk("tags", "id"),
        sa.UniqueConstraint("name", name=op.f("uq_tags_name")),
    )
    index("tags", "version_id")
    op.create_table(
        "version_artifacts",
        integer("version_id"),
        integer("position"),
        integer("artifact_id"),
        string("role", 100),
        fk("version_artifacts", "artifact_id", "artifacts"),
        fk("version_artifacts", "version_id", "versions"),
        pk("version_artifacts", "version_id", "position"),
    )
    index("version_artifacts", "artifact_id")
    op.create_table(
        "version_requests",
        integer("version_id"),
        integer("position"),
        integer("request_id"),
        string("role", 16),
        one_of("role", REQUEST_ROLES, "ck_version_requests_role"),
        fk("version_requests", "request_id", "edit_requests"),
        fk("version_requests", "version_id", "versions"),
        pk("version_requests", "version_id", "position"),
    )
    index("version_requests", "request_id", "version_id")
    op.create_table(
        "footprint_neurons",
        integer("footprint_layer_id"),
        integer("position"),
        integer("version_id"),
        integer("layer"),
        integer("neuron"),
        fk("footprint_neurons", "footprint_layer_id", "footprint_layers"),
        fk("footprint_neurons", "version_id", "versions"),
        pk("footprint_neurons", "footprint_layer_id", "position"),
    )
    index("footprint_neurons", "layer", "neuron", "version_id")
    index("footprint_neurons", "version_id")
    op.create_table(
        "ref_log",
        integer("id"),
        integer("branch_id"),
        integer("old_version_id", True),
        integer("new_version_id"),
        string("actor", 200),
        text("message"),
        string("created_at", 32),
        fk("ref_log", "branch_id", "branches"),
        fk("ref_log", "new_version_id", "versions"),
        fk("ref_log", "old_version_id", "versions"),
        pk("ref_log", "id"),
    )
    index("ref_log", "branch_id")


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
