"""Audit queries: SQL over the ledger's tables, each taking an open session and returning plain records."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Row, Select, select
from sqlalchemy.orm import Session, aliased

from ledger.chain import ChainRecord
from ledger.infos import BlameEntry, HistoryEvent, VersionInfo
from ledger.models import (
    ArtifactRow,
    BaseModelRow,
    EditRequestRow,
    FootprintLayerRow,
    FootprintNeuronRow,
    RequestOutcomeRow,
    RequestPromptRow,
    ScoreRow,
    VersionArtifactRow,
    VersionRequestRow,
    VersionRevertRow,
    VersionRoundRow,
    VersionRow,
)
from ledger.records import (
    ArtifactRef,
    EditRequest,
    EvalPrompt,
    FootprintLayer,
    RequestOutcome,
    RevertRecord,
    RoundRecord,
)

CHUNK = 500  # ids per IN (...) list: well under SQLite's bound-parameter limit

Parent = aliased(VersionRow, name="parent")
Anchor = aliased(VersionRow, name="anchor")
Reverted = aliased(VersionRow, name="reverted")
Source = aliased(VersionRow, name="source")


Item = TypeVar("Item")


def chunks(ids: Sequence[Item], size: int = CHUNK) -> Iterable[Sequence[Item]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


# ---------------------------------------------------------------------------------------- versions
def version_select() -> Select:
    return (
        select(VersionRow, Parent.commit_hash, BaseModelRow.name, BaseModelRow.state_hash)
        .join(BaseModelRow, BaseModelRow.id == VersionRow.base_model_id)
        .outerjoin(Parent, Parent.id == VersionRow.parent_id)
    )


def version_info(row: Row) -> VersionInfo:
    v, parent_hash, base_name, base_state_hash = row
    return VersionInfo(
        id=v.id,
        commit_hash=v.commit_hash,
        parent_hash=parent_hash,
        kind=v.kind,
        base_model=base_name,
        base_state_hash=base_state_hash,
        author=v.author,
        reason=v.reason,
        created_at=v.created_at,
        method=v.method,
        hparams=json.loads(v.hparams_json),
        environment=json.loads(v.environment_json),
        state_hash=v.state_hash,
        extra=json.loads(v.extra_json),
        depth=v.depth,
        n_requests=v.n_requests,
    )


def versions_by_id(session: Session, ids: Sequence[int]) -> dict[int, VersionInfo]:
    found: dict[int, VersionInfo] = {}
    for part in chunks(list(ids)):
        for row in session.execute(version_select().where(VersionRow.id.in_(part))):
            found[row[0].id] = version_info(row)
    return found


def version_by_id(session: Session, version_id: int) -> VersionInfo:
    return versions_by_id(session, [version_id])[version_id]


def ancestry_cte(head_id: int, min_depth: int = 0):  # type: ignore[no-untyped-def]
    """Ids of `head_id` and its ancestors down to `min_depth` (a recursive walk up `parent_id`)."""
    chain = (
        select(VersionRow.id, VersionRow.parent_id)
        .where(VersionRow.id == head_id)
        .cte("chain", recursive=True)
    )
    step = aliased(VersionRow, name="step")
    return chain.union_all(
        select(step.id, step.parent_id)
        .join(chain, step.id == chain.c.parent_id)
        .where(step.depth >= min_depth)
    )


def ancestry(session: Session, head_id: int, limit: int | None = None, offset: int = 0) -> list[VersionInfo]:
    """Newest first. With a limit the walk stops at the depth it needs: a page costs a page, not the chain."""
    min_depth = 0
    if limit is not None:
        head_depth = session.scalar(select(VersionRow.depth).where(VersionRow.id == head_id)) or 0
        min_depth = max(0, head_depth - offset - limit + 1)
    chain = ancestry_cte(head_id, min_depth)
    query = version_select().join(chain, chain.c.id == VersionRow.id).order_by(VersionRow.depth.desc())
    if limit is not None:
        query = query.limit(limit)
    return [version_info(row) for row in session.execute(query.offset(offset))]


def ancestry_ids(session: Session, head_id: int) -> list[int]:
    """Root first."""
    chain = ancestry_cte(head_id)
    query = select(VersionRow.id).join(chain, chain.c.id == VersionRow.id).order_by(VersionRow.depth)
    return list(session.scalars(query))


# ---------------------------------------------------------------------------------------- requests
def requests_by_id(session: Session, ids: Iterable[int]) -> dict[int, EditRequest]:
    wanted = sorted(set(ids))
    prompts: dict[int, list[EvalPrompt]] = defaultdict(list)
    rows: dict[int, EditRequestRow] = {}
    for part in chunks(wanted):
        rows.update(
            {r.id: r for r in session.scalars(select(EditRequestRow).where(EditRequestRow.id.in_(part)))}
        )
        query = (
            select(RequestPromptRow)
            .where(RequestPromptRow.request_id.in_(part))
            .order_by(RequestPromptRow.request_id, RequestPromptRow.position)
        )
        for p in session.scalars(query):
            prompts[p.request_id].append(EvalPrompt(kind=p.kind, text=p.text, target=p.target))
    return {
        rid: EditRequest(
            subject=r.subject,
            prompt=r.prompt,
            target_new=r.target_new,
            target_true=r.target_true,
            relation_id=r.relation_id,
            case_id=r.case_id,
            eval_prompts=tuple(prompts[rid]),
        )
        for rid, r in rows.items()
    }


def request_ids_by_key(session: Session, keys: Sequence[str]) -> dict[str, int]:
    """Request key -> row id of the recorded ones among `keys`."""
    found: dict[str, int] = {}
    for part in chunks(keys):
        query = select(EditRequestRow.request_key, EditRequestRow.id).where(EditRequestRow.request_key.in_(part))
        found.update({key: rid for key, rid in session.execute(query)})
    return found


# ----------------------------------------------------------------------------------- chain records
def version_artifacts(session: Session, version_id: int) -> list[ArtifactRef]:
    return artifacts_by_version(session, [version_id])[version_id]


def artifacts_by_version(session: Session, ids: Sequence[int]) -> dict[int, list[ArtifactRef]]:
    """The blobs of each version, in its recorded order: one query per chunk of versions, not one per version."""
    found: dict[int, list[ArtifactRef]] = {version_id: [] for version_id in ids}
    for part in chunks(list(ids)):
        rows = session.execute(
            select(VersionArtifactRow.version_id, VersionArtifactRow.role, ArtifactRow.sha256, ArtifactRow.kind,
                   ArtifactRow.size_bytes)
            .join(ArtifactRow, ArtifactRow.id == VersionArtifactRow.artifact_id)
            .where(VersionArtifactRow.version_id.in_(part))
            .order_by(VersionArtifactRow.version_id, VersionArtifactRow.position)
        )
        for version_id, role, sha, kind, size in rows:
            found[version_id].append(ArtifactRef(role=role, sha256=sha, kind=kind, size_bytes=size))
    return found


# ------------------------------------------------------------------------------------ revert records
RevertRows = dict[int, tuple[str, str | None, list[tuple[str, list[int]]]]]


def revert_rows(session: Session, where_version: Any) -> RevertRows:
    """Typed revert records of the versions that `where_version` (a condition on a version id column) selects:
    version id -> (anchor commit, reverted revert's commit or None, [(source commit, [request ids])])."""
    found: RevertRows = {}
    query = (
        select(VersionRevertRow.version_id, Anchor.commit_hash, Reverted.commit_hash)
        .join(Anchor, Anchor.id == VersionRevertRow.anchor_version_id)
        .outerjoin(Reverted, Reverted.id == VersionRevertRow.reverted_version_id)
        .where(where_version(VersionRevertRow.version_id))
    )
    for version_id, anchor, reverted in session.execute(query):
        found[version_id] = (anchor, reverted, [])
    rounds = (
        select(VersionRoundRow.version_id, VersionRoundRow.round, Source.commit_hash, VersionRoundRow.request_id)
        .join(Source, Source.id == VersionRoundRow.source_version_id)
        .where(where_version(VersionRoundRow.version_id))
        .order_by(VersionRoundRow.version_id, VersionRoundRow.round, VersionRoundRow.position)
    )
    last: tuple[int, int] | None = None
    for version_id, round_, source, request_id in session.execute(rounds):
        entry = found.get(version_id)
        if entry is None:
            continue  # rounds without their revert row: verify reports the version (its hash differs)
        if last != (version_id, round_):
            entry[2].append((source, []))
            last = (version_id, round_)
        entry[2][-1][1].append(request_id)
    return found


def revert_record(row: tuple[str, str | None, list[tuple[str, list[int]]]], keys: dict[int, str]) -> RevertRecord:
    anchor, reverted, rounds = row
    return RevertRecord(
        anchor=anchor,
        rounds=tuple(RoundRecord(source, tuple(keys[rid] for rid in rids)) for source, rids in rounds),
        reverted_version=reverted,
    )


def chain_records(session: Session, ids: Sequence[int]) -> dict[int, ChainRecord]:
    """The verify path: each version's ChainRecord rebuilt from its rows. Request keys are recomputed from the
    request rows' content (not read from the `request_key` column), so editing a request's text is caught
    too."""
    memberships: dict[int, list[tuple[int, str]]] = defaultdict(list)
    footprint: dict[int, list[FootprintLayer]] = defaultdict(list)
    outcomes: dict[int, list[RequestOutcomeRow]] = defaultdict(list)
    artifacts: dict[int, list[tuple[str, str]]] = defaultdict(list)
    versions: dict[int, tuple[VersionRow, str]] = {}
    reverts: RevertRows = {}
    for part in chunks(list(ids)):
        reverts.update(revert_rows(session, lambda column, part=part: column.in_(part)))
        query = (
            select(VersionRow, BaseModelRow.state_hash)
            .join(BaseModelRow, BaseModelRow.id == VersionRow.base_model_id)
            .where(VersionRow.id.in_(part))
        )
        versions.update({v.id: (v, base_hash) for v, base_hash in session.execute(query)})
        for m in session.scalars(
            select(VersionRequestRow)
            .where(VersionRequestRow.version_id.in_(part))
            .order_by(VersionRequestRow.version_id, VersionRequestRow.position)
        ):
            memberships[m.version_id].append((m.request_id, m.role))
        for o in session.scalars(
            select(RequestOutcomeRow)
            .where(RequestOutcomeRow.version_id.in_(part))
            .order_by(RequestOutcomeRow.version_id, RequestOutcomeRow.position)
        ):
            outcomes[o.version_id].append(o)
        neurons: dict[int, list[int]] = defaultdict(list)
        for layer_id, neuron in session.execute(
            select(FootprintNeuronRow.footprint_layer_id, FootprintNeuronRow.neuron)
            .where(FootprintNeuronRow.version_id.in_(part))
            .order_by(FootprintNeuronRow.footprint_layer_id, FootprintNeuronRow.position)
        ):
            neurons[layer_id].append(neuron)
        for f in session.scalars(
            select(FootprintLayerRow)
            .where(FootprintLayerRow.version_id.in_(part))
            .order_by(FootprintLayerRow.version_id, FootprintLayerRow.position)
        ):
            footprint[f.version_id].append(
                FootprintLayer(f.layer, f.pass_index, tuple(neurons[f.id]), f.delta_norm)
            )
        for version_id, role, sha in session.execute(
            select(VersionArtifactRow.version_id, VersionArtifactRow.role, ArtifactRow.sha256)
            .join(ArtifactRow, ArtifactRow.id == VersionArtifactRow.artifact_id)
            .where(VersionArtifactRow.version_id.in_(part))
            .order_by(VersionArtifactRow.version_id, VersionArtifactRow.position)
        ):
            artifacts[version_id].append((role, sha))
    request_ids = {rid for rows in memberships.values() for rid, _ in rows}
    request_ids |= {o.request_id for rows in outcomes.values() for o in rows}
    request_ids |= {rid for _, _, rounds in reverts.values() for _, rids in rounds for rid in rids}
    keys = {rid: request.request_key for rid, request in requests_by_id(session, request_ids).items()}
    records: dict[int, ChainRecord] = {}
    for vid, (v, base_hash) in versions.items():
        records[vid] = ChainRecord(
            kind=v.kind,
            base_state_hash=base_hash,
            author=v.author,
            reason=v.reason,
            created_at=v.created_at,
            method=v.method,
            hparams=json.loads(v.hparams_json),
            environment=json.loads(v.environment_json),
            state_hash=v.state_hash,
            extra=json.loads(v.extra_json),
            requests=tuple((keys[rid], role) for rid, role in memberships[vid]),
            footprint=tuple(footprint[vid]),
            outcomes=tuple(outcome_of_row(o, keys[o.request_id]) for o in outcomes[vid]),
            artifacts=tuple(artifacts[vid]),
            revert=revert_record(reverts[vid], keys) if vid in reverts else None,
        )
    return records


# ----------------------------------------------------------------------------------- audit queries
def blame(session: Session, layer: int, neuron: int) -> list[BlameEntry]:
    query = (
        select(
            VersionRow.commit_hash,
            FootprintLayerRow.pass_index,
            FootprintLayerRow.delta_norm,
            VersionRow.kind,
            VersionRow.author,
            VersionRow.reason,
            VersionRow.created_at,
        )
        .select_from(FootprintNeuronRow)
        .join(FootprintLayerRow, FootprintLayerRow.id == FootprintNeuronRow.footprint_layer_id)
        .join(VersionRow, VersionRow.id == FootprintNeuronRow.version_id)
        .where(FootprintNeuronRow.layer == layer, FootprintNeuronRow.neuron == neuron)
        .order_by(FootprintNeuronRow.version_id, FootprintLayerRow.position)
    )
    return [
        BlameEntry(
            commit_hash=c,
            layer=layer,
            neuron=neuron,
            pass_index=p,
            delta_norm=d,
            kind=k,
            author=a,
            reason=r,
            created_at=t,
        )
        for c, p, d, k, a, r, t in session.execute(query)
    ]


def outcome_of_row(row: RequestOutcomeRow, request_key: str) -> RequestOutcome:
    return RequestOutcome(
        request_key, row.residual_before, row.residual_after, row.status,  # type: ignore[arg-type]
        row.zstar_loss, row.zstar_target_prob, row.target_prob_before, row.target_prob_after,
        None if row.already_true is None else bool(row.already_true), None if row.took is None else bool(row.took),
    )


def history(session: Session, request_ids: Sequence[int]) -> list[HistoryEvent]:
    """Every version that edited, reverted, replayed or evaluated one of the requests, oldest first."""
    if not request_ids:
        return []
    keyed = {
        r.id: r for r in session.scalars(select(EditRequestRow).where(EditRequestRow.id.in_(request_ids)))
    }
    outcome_of: dict[tuple[int, int], dict[str, Any]] = {}
    for o in session.scalars(select(RequestOutcomeRow).where(RequestOutcomeRow.request_id.in_(request_ids))):
        outcome_of.setdefault(
            (o.version_id, o.request_id),
            {"status": o.status, "residual_before": o.residual_before, "residual_after": o.residual_after},
        )
    ordered: list[tuple[tuple[int, int, int], HistoryEvent]] = []
    memberships = (
        select(
            VersionRequestRow.version_id,
            VersionRequestRow.position,
            VersionRequestRow.request_id,
            VersionRequestRow.role,
            VersionRow.commit_hash,
            VersionRow.kind,
            VersionRow.author,
            VersionRow.created_at,
        )
        .join(VersionRow, VersionRow.id == VersionRequestRow.version_id)
        .where(VersionRequestRow.request_id.in_(request_ids))
    )
    for vid, position, rid, role, commit, kind, author, created_at in session.execute(memberships):
        request = keyed[rid]
        ordered.append(
            (
                (vid, 0, position),
                HistoryEvent(
                    commit,
                    role,
                    kind,
                    request.request_key,
                    request.subject,
                    author,
                    created_at,
                    outcome_of.get((vid, rid)),
                    request.prompt,
                    request.target_new,
                    request.target_true,
                ),
            )
        )
    evaluations: dict[tuple[int, int], dict[str, Any]] = defaultdict(dict)
    seen: dict[tuple[int, int], tuple[str, str, str, str]] = {}
    scored = (
        select(ScoreRow, VersionRow.commit_hash, VersionRow.kind, VersionRow.author)
        .join(VersionRow, VersionRow.id == ScoreRow.version_id)
        .where(ScoreRow.request_id.in_(request_ids))
        .order_by(ScoreRow.id)
    )
    for score, commit, kind, author in session.execute(scored):
        key = (score.version_id, score.request_id or 0)
        name = f"{score.suite}/{score.metric}" if score.suite else score.metric
        evaluations[key][name] = score.value
        seen.setdefault(key, (commit, kind, author, score.created_at))
    for (vid, rid), detail in evaluations.items():
        commit, kind, author, created_at = seen[(vid, rid)]
        request = keyed[rid]
        ordered.append(
            (
                (vid, 1, rid),
                HistoryEvent(
                    commit,
                    "evaluated",
                    kind,
                    request.request_key,
                    request.subject,
                    author,
                    created_at,
                    detail,
                    request.prompt,
                    request.target_new,
                    request.target_true,
                ),
            )
        )
    return [event for _, event in sorted(ordered, key=lambda item: item[0])]
