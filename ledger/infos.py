"""What the ledger's API returns: plain frozen dataclasses (never ORM objects), JSON-able through `asdict`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ledger.records import ArtifactRef, EditRequest, FootprintLayer, RequestOutcome, RevertRecord, Score


@dataclass(frozen=True)
class VersionInfo:
    id: int
    commit_hash: str
    parent_hash: str | None
    kind: str
    base_model: str
    base_state_hash: str
    author: str
    reason: str
    created_at: str
    method: str | None
    hparams: dict[str, Any]
    environment: dict[str, Any]
    state_hash: str
    extra: dict[str, Any]
    depth: int
    n_requests: int


@dataclass(frozen=True)
class VersionRequest:
    """A request's place in a version; unpacks as `(request, role, position)`."""

    request: EditRequest
    role: str
    position: int
    request_key: str = ""  # the request's content address, so JSON consumers can match outcomes and scores

    def __iter__(self) -> Iterator[Any]:
        return iter((self.request, self.role, self.position))


@dataclass(frozen=True)
class VersionDetail:
    version: VersionInfo
    requests: list[VersionRequest]
    footprint: list[FootprintLayer]
    outcomes: list[RequestOutcome]
    artifacts: list[ArtifactRef]
    scores: list[Score]
    tags: list[str] = field(default_factory=list)
    revert: RevertRecord | None = None  # a revert's anchor and replayed rounds (None before schema 0002: `extra`)


@dataclass(frozen=True)
class BranchInfo:
    name: str
    head_hash: str
    base_model: str
    created_at: str
    depth: int  # of the head: the branch holds depth + 1 versions


@dataclass(frozen=True)
class BaseModelInfo:
    name: str
    state_hash: str
    architecture: str
    config: dict[str, Any]
    source_path: str | None
    hub_id: str | None
    revision: str | None
    created_at: str


@dataclass(frozen=True)
class RequestInfo:
    request_key: str
    request: EditRequest


@dataclass(frozen=True)
class HistoryEvent:
    commit_hash: str
    event: str  # edited | reverted | replayed | evaluated
    kind: str  # the version's kind
    request_key: str
    subject: str
    author: str
    created_at: str
    detail: dict[str, Any] | None = None
    prompt: str = ""
    target_new: str = ""
    target_true: str | None = None


@dataclass(frozen=True)
class BlameEntry:
    commit_hash: str
    layer: int
    neuron: int
    pass_index: int
    delta_norm: float
    kind: str
    author: str
    reason: str
    created_at: str


@dataclass(frozen=True)
class DiffLayer:
    layer: int
    neurons: tuple[int, ...]
    n_versions: int
    delta_norm_sum: float


@dataclass(frozen=True)
class VersionDiff:
    a: str
    b: str
    merge_base: str | None
    added: list[RequestInfo]
    removed: list[RequestInfo]
    versions: list[str]  # commit hashes between a and b (both sides of the merge base)
    layers: list[DiffLayer]


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    versions_checked: int
    blobs_checked: int
    problems: list[str]
    checkpoint: str | None = None  # the checkpoint file, when one was given
    checkpoint_action: str | None = None  # "written" (it did not exist), "checked", or "skipped" (a problem first)


@dataclass(frozen=True)
class RefLogEntry:
    branch: str
    old_hash: str | None
    new_hash: str
    actor: str
    message: str
    created_at: str


@dataclass(frozen=True)
class AuditEvent:
    id: int
    kind: str
    actor: str
    created_at: str
    commit_hash: str | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class RequestEvent:
    """A version that touched a request: edited it, replayed it (a revert or a replay) or reverted it."""

    commit_hash: str
    role: str  # edited | replayed | reverted
    kind: str  # the version's kind
    author: str
    created_at: str
    reason: str
    method: str | None
    status: str | None = None  # the round's outcome for the request, where it recorded one
    residual_before: float | None = None
    residual_after: float | None = None


@dataclass(frozen=True)
class RequestScores:
    """The scores one evaluation recorded for a request at a version (metric -> value)."""

    commit_hash: str
    created_at: str
    scores: dict[str, float]


@dataclass(frozen=True)
class RequestDetail:
    """One request: its fact, every version that touched it (oldest first), its scores over time, and the
    branches whose head still holds it."""

    request_key: str
    request: EditRequest
    events: list[RequestEvent]
    scores: list[RequestScores]
    live_on: list[str]


@dataclass(frozen=True)
class LiveEdit:
    """A request in effect at a version, with the version that made it (who, when, why)."""

    request_key: str
    request: EditRequest
    commit_hash: str
    kind: str
    author: str
    created_at: str
    reason: str
    method: str | None


@dataclass(frozen=True)
class StatisticsInfo:
    """A base model's C0 statistics: the corpus they came from, how many samples, and each layer's blob."""

    base_model: str
    corpus_path: str
    corpus_sha256: str
    sample_count: int
    dtype: str
    blobs: dict[int, str]  # layer -> sha256 of its C0 blob
    created_at: str
