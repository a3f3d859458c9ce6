"""Reading by ref: what `log`, `show`, `describe`, `diff`, `history`, `blame` and a checkout's chain of blobs return.
Each function takes an open session and a ref (resolved by `ledger.refs`) and assembles plain records
(`ledger.infos`) from the row reads of `ledger.queries`, the rounds of `ledger.history` and the auditor's reads of
`ledger.audit`. Nothing here writes."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ledger import audit, queries, refs
from ledger.errors import LedgerError, UnknownRefError
from ledger.history import Lineage, load_lineage
from ledger.infos import (
    BlameEntry,
    DiffLayer,
    HistoryEvent,
    RequestDetail,
    RequestInfo,
    VersionDetail,
    VersionDiff,
    VersionInfo,
    VersionRequest,
)
from ledger.models import EditRequestRow, VersionRequestRow, VersionRow
from ledger.records import ArtifactRef
from ledger.scores import version_scores
from ledger.values import short


def ledger_id(session: Session) -> str:
    """The commit hash of the first recorded version (as a repository's root commit names it)."""
    first = session.scalar(select(VersionRow.commit_hash).order_by(VersionRow.id).limit(1))
    if first is None:
        raise LedgerError("the ledger has no versions yet: record a base model first")
    return first


def resolve(session: Session, ref: str) -> VersionInfo:
    return queries.version_by_id(session, refs.version_id(session, ref))


# ------------------------------------------------------------------------------------- chains
def log(session: Session, branch: str, limit: int = 20, offset: int = 0) -> list[VersionInfo]:
    """Versions of `branch`, newest first, one page."""
    if limit < 0 or offset < 0:
        raise LedgerError(f"log: limit ({limit}) and offset ({offset}) must not be negative")
    return queries.ancestry(session, refs.branch_row(session, branch).head_version_id, limit, offset)


def ancestry(session: Session, ref: str) -> list[VersionInfo]:
    """Root (the base version) first, `ref` last."""
    return queries.ancestry(session, refs.version_id(session, ref))[::-1]


def lineage(session: Session, ref: str) -> Lineage:
    """The rounds of `ref` and of each of its ancestors (see `ledger.history`)."""
    return load_lineage(session, refs.version_id(session, ref))


def ancestry_artifacts(session: Session, ref: str) -> list[tuple[VersionInfo, list[ArtifactRef]]]:
    """`ancestry(ref)` with each version's blobs, read together (what a checkout needs, in two queries)."""
    chain = queries.ancestry(session, refs.version_id(session, ref))[::-1]
    blobs = queries.artifacts_by_version(session, [v.id for v in chain])
    return [(version, blobs[version.id]) for version in chain]


def artifacts(session: Session, ref: str) -> list[ArtifactRef]:
    """The blobs a version recorded, in order (what `show` lists, without the rest of the version)."""
    return queries.version_artifacts(session, refs.version_id(session, ref))


# ------------------------------------------------------------------------------- one version or request
def show(session: Session, ref: str) -> VersionDetail:
    return version_detail(session, refs.version_id(session, ref))


def version_detail(session: Session, version_id: int) -> VersionDetail:
    """A version with everything it records, its scores and its tags."""
    info = queries.version_by_id(session, version_id)
    record = queries.chain_records(session, [version_id])[version_id]
    members = session.execute(
        select(VersionRequestRow.request_id, VersionRequestRow.role, VersionRequestRow.position)
        .where(VersionRequestRow.version_id == version_id)
        .order_by(VersionRequestRow.position)
    ).all()
    requests = queries.requests_by_id(session, [rid for rid, _, _ in members])
    return VersionDetail(
        version=info,
        requests=[
            VersionRequest(requests[rid], role, position, requests[rid].request_key) for rid, role, position in members
        ],
        footprint=list(record.footprint),
        outcomes=list(record.outcomes),
        artifacts=queries.version_artifacts(session, version_id),
        scores=version_scores(session, version_id),
        tags=refs.version_tags(session, version_id),
        revert=record.revert,
    )


def describe(session: Session, ref: str) -> VersionDetail | RequestDetail:
    """A version (branch, tag, commit hash or prefix, `~N`) or else a request (key or prefix): what `show` prints.
    A hex prefix that starts both a commit and a request is refused as ambiguous."""
    try:
        version_id = refs.version_id(session, ref)
    except UnknownRefError as not_a_version:
        try:
            request_id = refs.request_id(session, ref)
        except UnknownRefError:
            raise UnknownRefError(
                f"unknown ref {ref!r}: not a branch, a tag, a commit or a request key (or a prefix of >= 4 hex)"
            ) from not_a_version
        return audit.request_detail(session, request_id)
    name = str(ref).split("~")[0]
    if not refs.is_branch_or_tag(session, name) and "~" not in str(ref) and refs.HEX_PREFIX.fullmatch(name):
        requests = refs.by_prefix(session, EditRequestRow.request_key, name)
        if requests:
            raise UnknownRefError(
                f"ref {ref!r} is ambiguous: it starts a commit and request {short(requests[0])}; give more of the hash"
            )
    return version_detail(session, version_id)


def request(session: Session, ref: str) -> RequestInfo:
    found = queries.requests_by_id(session, [refs.request_id(session, ref)])
    (only,) = found.values()
    return RequestInfo(request_key=only.request_key, request=only)


# ------------------------------------------------------------------------------------ across history
def history(session: Session, subject: str | None = None, request: str | None = None) -> list[HistoryEvent]:
    """Every version that edited, reverted, replayed or evaluated the request (key or prefix) or the requests of
    a subject, oldest first."""
    if subject is None and request is None:
        raise LedgerError("history: give a subject or a request key")
    if request is not None:
        ids = [refs.request_id(session, request)]
    else:
        assert subject is not None
        # Case and surrounding spaces do not matter: an auditor types the subject as they remember it.
        # (SQLite's lower() folds ASCII only: other letters match in their recorded case.)
        column = EditRequestRow.subject
        wanted = or_(column == subject, column == subject.strip(), func.lower(column) == subject.strip().lower())
        ids = list(session.scalars(select(EditRequestRow.id).where(wanted)))
    return queries.history(session, ids)


def blame(session: Session, layer: int, neuron: int) -> list[BlameEntry]:
    return queries.blame(session, int(layer), int(neuron))


def diff(session: Session, a: str, b: str) -> VersionDiff:
    """What changed from `a` to `b`: requests in effect added and removed, and the footprint of the versions on
    the path between them through their merge base."""
    id_a, id_b = refs.version_id(session, a), refs.version_id(session, b)
    chain_a, chain_b = queries.ancestry_ids(session, id_a), queries.ancestry_ids(session, id_b)
    in_a, in_b = set(chain_a), set(chain_b)
    common = [v for v in chain_a if v in in_b]
    path = [v for v in chain_a if v not in in_b] + [v for v in chain_b if v not in in_a]
    records = queries.chain_records(session, path)
    infos = queries.versions_by_id(session, [*common[-1:], id_a, id_b, *path])
    live_a = [r.request_key for r in load_lineage(session, id_a).live_requests()]
    live_b = [r.request_key for r in load_lineage(session, id_b).live_requests()]
    added = [k for k in live_b if k not in live_a]
    removed = [k for k in live_a if k not in live_b]
    changed = sorted(set(added) | set(removed))
    wanted_ids = session.scalars(select(EditRequestRow.id).where(EditRequestRow.request_key.in_(changed)))
    by_key = {r.request_key: r for r in queries.requests_by_id(session, wanted_ids).values()}
    neurons: dict[int, set[int]] = defaultdict(set)
    versions_at: dict[int, set[int]] = defaultdict(set)
    norms: dict[int, float] = defaultdict(float)
    for version_id in path:
        for f in records[version_id].footprint:
            neurons[f.layer].update(f.neurons)
            versions_at[f.layer].add(version_id)
            norms[f.layer] += f.delta_norm
    return VersionDiff(
        a=infos[id_a].commit_hash,
        b=infos[id_b].commit_hash,
        merge_base=infos[common[-1]].commit_hash if common else None,
        added=[RequestInfo(k, by_key[k]) for k in added],
        removed=[RequestInfo(k, by_key[k]) for k in removed],
        versions=[infos[v].commit_hash for v in path],
        layers=[
            DiffLayer(layer, tuple(sorted(neurons[layer])), len(versions_at[layer]), norms[layer])
            for layer in sorted(neurons)
        ],
    )
