"""The ledger's tables: SQLAlchemy 2.0 typed models. Rows are only ever inserted by operations (revert
appends); the only row that moves is a branch head, by compare-and-swap, and every move is kept in `ref_log`.

Times are ISO-8601 UTC strings with microseconds (`2024-01-02T03:04:05.123456Z`) so they hash the same
everywhere.
Dicts are stored as canonical JSON text (not JSONB, which would reorder and renormalise them).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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
    "relocate",
)
HASH = String(64)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING_CONVENTION)


def one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = metadata


class BaseModelRow(Base):
    __tablename__ = "base_models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    state_hash: Mapped[str] = mapped_column(HASH)
    architecture: Mapped[str] = mapped_column(String(100))
    config_json: Mapped[str] = mapped_column(Text)
    source_path: Mapped[str | None] = mapped_column(Text)
    hub_id: Mapped[str | None] = mapped_column(String(300))
    revision: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[str] = mapped_column(String(32))


class VersionRow(Base):
    __tablename__ = "versions"
    __table_args__ = (CheckConstraint(one_of("kind", VERSION_KINDS), name="kind"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    commit_hash: Mapped[str] = mapped_column(HASH, unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("versions.id"), index=True)
    base_model_id: Mapped[int] = mapped_column(ForeignKey("base_models.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    author: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(String(32))
    method: Mapped[str | None] = mapped_column(String(50))
    hparams_json: Mapped[str] = mapped_column(Text)
    environment_json: Mapped[str] = mapped_column(Text)
    extra_json: Mapped[str] = mapped_column(Text)
    state_hash: Mapped[str] = mapped_column(HASH)
    depth: Mapped[int] = mapped_column(Integer)
    n_requests: Mapped[int] = mapped_column(Integer)  # a cache of the membership count, checked by verify


class BranchRow(Base):
    __tablename__ = "branches"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    head_version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"))
    base_model_id: Mapped[int] = mapped_column(ForeignKey("base_models.id"))
    created_at: Mapped[str] = mapped_column(String(32))


class RefLogRow(Base):
    __tablename__ = "ref_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"), index=True)
    old_version_id: Mapped[int | None] = mapped_column(ForeignKey("versions.id"))
    new_version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"))
    actor: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(String(32))


class TagRow(Base):
    __tablename__ = "tags"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), index=True)
    created_at: Mapped[str] = mapped_column(String(32))


class EditRequestRow(Base):
    __tablename__ = "edit_requests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_key: Mapped[str] = mapped_column(HASH, unique=True)
    subject: Mapped[str] = mapped_column(Text, index=True)
    prompt: Mapped[str] = mapped_column(Text)
    target_new: Mapped[str] = mapped_column(Text)
    target_true: Mapped[str | None] = mapped_column(Text)
    relation_id: Mapped[str | None] = mapped_column(String(100))
    case_id: Mapped[str | None] = mapped_column(String(100))


class RequestPromptRow(Base):
    __tablename__ = "request_prompts"
    request_id: Mapped[int] = mapped_column(ForeignKey("edit_requests.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    text: Mapped[str] = mapped_column(Text)
    target: Mapped[str | None] = mapped_column(Text)


class VersionRequestRow(Base):
    __tablename__ = "version_requests"
    __table_args__ = (
        CheckConstraint(one_of("role", REQUEST_ROLES), name="role"),
        Index(None, "request_id", "version_id"),  # history of a fact
    )
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("edit_requests.id"))
    role: Mapped[str] = mapped_column(String(16))


class FootprintLayerRow(Base):
    __tablename__ = "footprint_layers"
    __table_args__ = (UniqueConstraint("version_id", "position"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"))
    position: Mapped[int] = mapped_column(Integer)
    layer: Mapped[int] = mapped_column(Integer)
    pass_index: Mapped[int] = mapped_column(Integer)
    n_neurons: Mapped[int] = mapped_column(Integer)
    delta_norm: Mapped[float] = mapped_column(Double())


class FootprintNeuronRow(Base):
    __tablename__ = "footprint_neurons"
    __table_args__ = (Index(None, "layer", "neuron", "version_id"),)  # blame
    footprint_layer_id: Mapped[int] = mapped_column(ForeignKey("footprint_layers.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), index=True)
    layer: Mapped[int] = mapped_column(Integer)
    neuron: Mapped[int] = mapped_column(Integer)


class RequestOutcomeRow(Base):
    __tablename__ = "request_outcomes"
    __table_args__ = (
        CheckConstraint(one_of("status", OUTCOME_STATUSES), name="status"),
        Index(None, "request_id", "version_id"),
    )
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("edit_requests.id"))
    residual_before: Mapped[float] = mapped_column(Double())
    residual_after: Mapped[float] = mapped_column(Double())
    status: Mapped[str] = mapped_column(String(16))
    # Whether the request took (revision 0003; NULL in versions recorded before it): see RequestOutcome.
    zstar_loss: Mapped[float | None] = mapped_column(Double())
    zstar_target_prob: Mapped[float | None] = mapped_column(Double())
    target_prob_before: Mapped[float | None] = mapped_column(Double())
    target_prob_after: Mapped[float | None] = mapped_column(Double())
    already_true: Mapped[bool | None] = mapped_column(Boolean())
    took: Mapped[bool | None] = mapped_column(Boolean())


class ArtifactRow(Base):
    __tablename__ = "artifacts"
    __table_args__ = (CheckConstraint("size_bytes >= 0", name="size_bytes"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(HASH, unique=True)
    kind: Mapped[str] = mapped_column(String(50))
    size_bytes: Mapped[int] = mapped_column(Integer)


class VersionArtifactRow(Base):
    __tablename__ = "version_artifacts"
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"), index=True)
    role: Mapped[str] = mapped_column(String(100))


class ScoreRow(Base):
    __tablename__ = "scores"
    __table_args__ = (Index(None, "request_id", "version_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), index=True)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("edit_requests.id"))
    suite: Mapped[str | None] = mapped_column(String(100))
    metric: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Double())
    created_at: Mapped[str] = mapped_column(String(32))


class AuditEventRow(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        CheckConstraint(one_of("kind", AUDIT_KINDS), name="kind"),
        Index(None, "kind", "created_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[str] = mapped_column(String(32), index=True)
    version_id: Mapped[int | None] = mapped_column(ForeignKey("versions.id"), index=True)
    detail_json: Mapped[str] = mapped_column(Text)


class VersionRevertRow(Base):
    """What a revert version replays from: its anchor (the latest ancestor whose rounds are the longest prefix
    of the wanted history) and, for a revert of a revert, the revert it undoes."""

    __tablename__ = "version_reverts"
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), primary_key=True)
    anchor_version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), index=True)
    reverted_version_id: Mapped[int | None] = mapped_column(ForeignKey("versions.id"))


class VersionRoundRow(Base):
    """The rounds a revert version replayed after its anchor: one row per request, in order, each round naming
    the version that first applied it (`source_version_id`)."""

    __tablename__ = "version_rounds"
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), primary_key=True)
    round: Mapped[int] = mapped_column(Integer, primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"))
    request_id: Mapped[int] = mapped_column(ForeignKey("edit_requests.id"))


class StatisticsRow(Base):
    """C0 statistics of a base model: which corpus (path and content hash), how many samples, which dtype."""

    __tablename__ = "statistics"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    base_model_id: Mapped[int] = mapped_column(ForeignKey("base_models.id"), index=True)
    corpus_path: Mapped[str] = mapped_column(Text)
    corpus_sha256: Mapped[str] = mapped_column(HASH)
    sample_count: Mapped[int] = mapped_column(Integer)
    dtype: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[str] = mapped_column(String(32))


class StatisticsLayerRow(Base):
    """The blob holding one layer's C0 of a statistics record."""

    __tablename__ = "statistics_layers"
    statistics_id: Mapped[int] = mapped_column(ForeignKey("statistics.id"), primary_key=True)
    layer: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(HASH)
