"""Writing versions: a base model's first version, and every later version (edit, revert, replay, import) appended
from a `VersionDraft` with its typed records: requests (content-addressed, with their prompts), footprint,
outcomes, artifacts, scores, and a revert's anchor and replayed rounds. Each append is one write transaction that
moves the branch head by compare-and-swap (`ledger.refs.move_head`), so a lost race writes nothing.

The commit hash comes from `ledger.chain` (the same function verify uses on the rows); rows are read back by
`ledger.queries` (one conversion per row type)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ledger import queries, refs
from ledger.chain import ChainRecord, commit_hash, json_value, record_from_draft
from ledger.db import write_transaction
from ledger.errors import BlobMissingError, InvalidBlobAddressError, LedgerError, UnknownRefError
from ledger.faults import fault_point
from ledger.infos import VersionInfo
from ledger.models import (
    OUTCOME_STATUSES,
    REQUEST_ROLES,
    VERSION_KINDS,
    ArtifactRow,
    BaseModelRow,
    BranchRow,
    EditRequestRow,
    FootprintLayerRow,
    FootprintNeuronRow,
    RequestOutcomeRow,
    RequestPromptRow,
    VersionArtifactRow,
    VersionRequestRow,
    VersionRevertRow,
    VersionRoundRow,
    VersionRow,
)
from ledger.records import ArtifactRef, EditRequest, VersionDraft, canonical_json
from ledger.scores import insert_scores
from ledger.store import ContentStore, validate_sha
from ledger.values import checked_name, checked_time, short


# --------------------------------------------------------------------------------- the two appends
def add_base_model(
    engine: Engine,
    name: str,
    state_hash: str,
    architecture: str,
    config: dict[str, Any],
    source_path: str | None,
    *,
    branch: str = "main",
    author: str = "unknown",
    hub_id: str | None = None,
    revision: str | None = None,
    created_at: str | None = None,
) -> VersionInfo:
    """A base model, its base version (the root of a chain) and a new branch pointing at it."""
    checked_name("base model", name)
    checked_name("branch", branch)
    created_at = checked_time(created_at)
    with write_transaction(engine) as session:
        if session.scalar(select(BaseModelRow.id).where(BaseModelRow.name == name)) is not None:
            raise LedgerError(f"base model {name!r} is already recorded")
        if session.scalar(select(BranchRow.id).where(BranchRow.name == branch)) is not None:
            raise LedgerError(f"branch {branch!r} already exists: give the new base model its own branch")
        base = BaseModelRow(
            name=name,
            state_hash=state_hash,
            architecture=architecture,
            config_json=canonical_json(json_value(config, f"base model {name!r} config")),
            source_path=source_path,
            hub_id=hub_id,
            revision=revision,
            created_at=created_at,
        )
        session.add(base)
        session.flush()
        draft = VersionDraft(
            kind="base", base_model=name, state_hash=state_hash, author=author, reason=f"base model {name}"
        )
        version = insert_version(session, draft, None, base, created_at)
        branch_row = BranchRow(name=branch, head_version_id=version.id, base_model_id=base.id, created_at=created_at)
        session.add(branch_row)
        session.flush()
        refs.log_move(session, branch_row.id, None, version.id, author, f"base model {name}", created_at)
        return queries.version_by_id(session, version.id)


def append_version(
    engine: Engine,
    store: ContentStore,
    draft: VersionDraft,
    branch: str,
    expected_head: str,
    created_at: str | None = None,
) -> VersionInfo:
    """Record `draft` as the new head of `branch` if (and only if) the head is still `expected_head`."""
    created_at = checked_time(created_at)
    check_draft(draft, store)
    with write_transaction(engine) as session:
        branch_row = refs.branch_row(session, branch)
        parent = session.scalar(select(VersionRow).where(VersionRow.commit_hash == expected_head))
        if parent is None:
            raise UnknownRefError(f"expected head {expected_head!r} of branch {branch!r} is not a recorded version")
        # Claim the branch first: the compare-and-swap locks its row (PostgreSQL) before any insert.
        refs.move_head(session, branch_row, parent.id, parent.id, expected_head)
        base = session.get(BaseModelRow, parent.base_model_id)
        assert base is not None
        if draft.base_model != base.name:
            raise LedgerError(
                f"draft base model {draft.base_model!r} is not the base of branch {branch!r} ({base.name!r})"
            )
        version = insert_version(session, draft, parent, base, created_at)
        refs.move_head(session, branch_row, parent.id, version.id, expected_head)
        message = f"{draft.kind}: {draft.reason}"[:1000]
        refs.log_move(session, branch_row.id, parent.id, version.id, draft.author, message, created_at)
        info = queries.version_by_id(session, version.id)
        fault_point("ledger.append.before_commit")
    return info


def check_draft(draft: VersionDraft, store: ContentStore) -> None:
    """Everything about a draft that can be refused before a transaction opens (its blobs must be in `store`)."""
    if draft.kind not in VERSION_KINDS or draft.kind == "base":
        raise LedgerError(f"draft kind {draft.kind!r}: expected one of {', '.join(VERSION_KINDS[1:])}")
    if (draft.revert is not None) != (draft.kind == "revert"):
        raise LedgerError(
            f"draft kind {draft.kind!r}: a revert, and only a revert, records its anchor and rounds "
            "(VersionDraft.revert)"
        )
    for position, entry in enumerate(draft.requests):
        if entry.role not in REQUEST_ROLES:
            raise LedgerError(
                f"draft request {position} ({entry.request.subject!r}): role {entry.role!r} is not "
                f"one of {', '.join(REQUEST_ROLES)}"
            )
    for outcome in draft.outcomes:
        if outcome.status not in OUTCOME_STATUSES:
            raise LedgerError(
                f"outcome of request {short(outcome.request_key)}: status {outcome.status!r} is "
                f"not one of {', '.join(OUTCOME_STATUSES)}"
            )
    for artifact in draft.artifacts:
        try:
            validate_sha(artifact.sha256)
        except InvalidBlobAddressError as error:
            raise LedgerError(f"artifact {artifact.role!r}: {error}") from None
        if not store.has(artifact.sha256):
            raise BlobMissingError(
                f"artifact {artifact.role!r}: blob {artifact.sha256} is not in the store "
                f"{store.location} (put it first); nothing was written"
            )
        if artifact.size_bytes < 0:
            raise LedgerError(f"artifact {artifact.role!r}: size_bytes {artifact.size_bytes} is negative")


# --------------------------------------------------------------------------- one version and its rows
def insert_version(
    session: Session, draft: VersionDraft, parent: VersionRow | None, base: BaseModelRow, created_at: str
) -> VersionRow:
    """The version row and every typed record of the draft, inside the caller's transaction."""
    record = record_from_draft(draft, base.state_hash, created_at)
    request_ids = _request_ids(session, [e.request for e in draft.requests])
    for outcome in draft.outcomes:
        if outcome.request_key not in request_ids:
            request_ids.update(queries.request_ids_by_key(session, [outcome.request_key]))
        if outcome.request_key not in request_ids:
            raise LedgerError(
                f"outcome names request {short(outcome.request_key)}, which is neither in the draft nor recorded"
            )
    version = VersionRow(
        commit_hash=commit_hash(parent.commit_hash if parent else None, record),
        parent_id=parent.id if parent else None,
        base_model_id=base.id,
        kind=record.kind,
        author=record.author,
        reason=record.reason,
        created_at=created_at,
        method=record.method,
        hparams_json=canonical_json(record.hparams),
        environment_json=canonical_json(record.environment),
        extra_json=canonical_json(record.extra),
        state_hash=record.state_hash,
        depth=parent.depth + 1 if parent else 0,
        n_requests=len(record.requests),
    )
    if session.scalar(select(VersionRow.id).where(VersionRow.commit_hash == version.commit_hash)) is not None:
        raise LedgerError(f"version {version.commit_hash} is already recorded (same parent, content and time)")
    session.add(version)
    session.flush()
    if record.requests:
        session.execute(
            VersionRequestRow.__table__.insert(),
            [
                {"version_id": version.id, "position": i, "request_id": request_ids[key], "role": role}
                for i, (key, role) in enumerate(record.requests)
            ],
        )
    _insert_footprint(session, version.id, record)
    _insert_outcomes(session, version.id, record, request_ids)
    _insert_artifacts(session, version.id, draft.artifacts)
    insert_scores(session, version.id, draft.scores, created_at)
    if record.revert is not None:
        _insert_revert(session, version, record, request_ids)
    return version


def _insert_or_ignore(session: Session, model: type, rows: list[dict[str, Any]], key: str) -> None:
    """INSERT ... ON CONFLICT (key) DO NOTHING: a concurrent writer may insert the same content row."""
    dialect_insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    for start in range(0, len(rows), queries.CHUNK // 4):
        part = rows[start : start + queries.CHUNK // 4]
        session.execute(dialect_insert(model).values(part).on_conflict_do_nothing(index_elements=[key]))


def _request_ids(session: Session, requests: Sequence[EditRequest]) -> dict[str, int]:
    """Get or create each request by its content key (its prompts are written with it, once)."""
    unique = {r.request_key: r for r in requests}
    ids = queries.request_ids_by_key(session, list(unique))
    missing = [r for key, r in unique.items() if key not in ids]
    if missing:
        _insert_or_ignore(
            session,
            EditRequestRow,
            [
                {
                    "request_key": r.request_key,
                    "subject": r.subject,
                    "prompt": r.prompt,
                    "target_new": r.target_new,
                    "target_true": r.target_true,
                    "relation_id": r.relation_id,
                    "case_id": r.case_id,
                }
                for r in missing
            ],
            "request_key",
        )
        created = queries.request_ids_by_key(session, [r.request_key for r in missing])
        has_prompts = set(
            session.scalars(
                select(RequestPromptRow.request_id).where(RequestPromptRow.request_id.in_(list(created.values())))
            )
        )
        prompts = [
            {"request_id": created[r.request_key], "position": i, "kind": p.kind, "text": p.text, "target": p.target}
            for r in missing
            if created[r.request_key] not in has_prompts
            for i, p in enumerate(r.eval_prompts)
        ]
        if prompts:
            session.execute(RequestPromptRow.__table__.insert(), prompts)
        ids.update(created)
    return ids


def _insert_footprint(session: Session, version_id: int, record: ChainRecord) -> None:
    if not record.footprint:
        return
    layers = [
        {
            "version_id": version_id,
            "position": i,
            "layer": f.layer,
            "pass_index": f.pass_index,
            "n_neurons": len(f.neurons),
            "delta_norm": f.delta_norm,
        }
        for i, f in enumerate(record.footprint)
    ]
    # One executemany and one read of the ids by (version, position): two statements for any footprint
    # (an ordered INSERT ... RETURNING runs row by row on SQLite).
    session.execute(FootprintLayerRow.__table__.insert(), layers)
    id_of = dict(
        session.execute(
            select(FootprintLayerRow.position, FootprintLayerRow.id).where(FootprintLayerRow.version_id == version_id)
        ).all()
    )
    layer_ids = [id_of[i] for i in range(len(layers))]
    neurons = [
        {"footprint_layer_id": layer_id, "position": j, "version_id": version_id, "layer": f.layer, "neuron": neuron}
        for layer_id, f in zip(layer_ids, record.footprint, strict=True)
        for j, neuron in enumerate(f.neurons)
    ]
    if neurons:
        session.execute(FootprintNeuronRow.__table__.insert(), neurons)


def _insert_outcomes(session: Session, version_id: int, record: ChainRecord, request_ids: dict[str, int]) -> None:
    if not record.outcomes:
        return
    session.execute(
        RequestOutcomeRow.__table__.insert(),
        [
            {
                "version_id": version_id,
                "position": i,
                "request_id": request_ids[o.request_key],
                "residual_before": o.residual_before,
                "residual_after": o.residual_after,
                "status": o.status,
                "zstar_loss": o.zstar_loss,
                "zstar_target_prob": o.zstar_target_prob,
                "target_prob_before": o.target_prob_before,
                "target_prob_after": o.target_prob_after,
                "already_true": o.already_true,
                "took": o.took,
            }
            for i, o in enumerate(record.outcomes)
        ],
    )


def _insert_artifacts(session: Session, version_id: int, artifacts: Sequence[ArtifactRef]) -> None:
    if not artifacts:
        return
    unique = {a.sha256: a for a in artifacts}
    _insert_or_ignore(
        session,
        ArtifactRow,
        [{"sha256": a.sha256, "kind": a.kind, "size_bytes": a.size_bytes} for a in unique.values()],
        "sha256",
    )
    ids = dict(
        session.execute(select(ArtifactRow.sha256, ArtifactRow.id).where(ArtifactRow.sha256.in_(list(unique)))).all()
    )
    session.execute(
        VersionArtifactRow.__table__.insert(),
        [
            {"version_id": version_id, "position": i, "artifact_id": ids[a.sha256], "role": a.role}
            for i, a in enumerate(artifacts)
        ],
    )


# ------------------------------------------------------------------------------- a revert's record
def _insert_revert(session: Session, version: VersionRow, record: ChainRecord, request_ids: dict[str, int]) -> None:
    """The typed revert record (read back by `ledger.queries.revert_rows`): its anchor and the revert it undoes
    must be ancestors (so must every round's source), and every replayed request must be recorded."""
    revert = record.revert
    assert revert is not None
    ancestors = dict(
        session.execute(
            select(VersionRow.commit_hash, VersionRow.id).join(
                chain := queries.ancestry_cte(version.parent_id),  # type: ignore[arg-type]
                chain.c.id == VersionRow.id,
            )
        ).all()
    )
    named = [("anchor", revert.anchor), ("reverted version", revert.reverted_version)]
    named += [(f"round {i} source", r.source) for i, r in enumerate(revert.rounds)]
    for what, commit in named:
        if commit is not None and commit not in ancestors:
            raise LedgerError(f"revert draft: its {what} {short(commit)} is not an ancestor of the new version")
    keys = sorted({k for r in revert.rounds for k in r.request_keys} - set(request_ids))
    request_ids.update(queries.request_ids_by_key(session, keys))
    unknown = [k for k in keys if k not in request_ids]
    if unknown:
        raise LedgerError(f"revert draft: replayed request {short(unknown[0])} is not recorded")
    session.add(
        VersionRevertRow(
            version_id=version.id,
            anchor_version_id=ancestors[revert.anchor],
            reverted_version_id=ancestors[revert.reverted_version] if revert.reverted_version else None,
        )
    )
    rows = [
        {
            "version_id": version.id,
            "round": i,
            "position": j,
            "source_version_id": ancestors[r.source],
            "request_id": request_ids[key],
        }
        for i, r in enumerate(revert.rounds)
        for j, key in enumerate(r.request_keys)
    ]
    if rows:
        session.execute(VersionRoundRow.__table__.insert(), rows)
    session.flush()
