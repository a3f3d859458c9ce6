"""The ledger's Python API: `Ledger.init(...)` / `Ledger.open(...)`, then writes (each one DB transaction,
branch heads moved by compare-and-swap) and audit reads that return plain frozen dataclasses."""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, or_, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ledger import audit, base_models, events, queries, refs, statistics
from ledger.chain import ChainRecord, commit_hash, json_value, record_from_draft
from ledger.config import (
    LEDGER_DIR,
    find_ledger_url,
    local_model_paths,
    locate,
    plan_connect,
    plan_init,
    write_config,
)
from ledger.db import check_schema, make_engine, transaction, upgrade, write_transaction
from ledger.errors import (
    BlobCorruptError,
    BlobMissingError,
    InvalidBlobAddressError,
    LedgerError,
    UnknownRefError,
)
from ledger.faults import fault_point
from ledger.history import Lineage, Round, load_lineage
from ledger.infos import (
    AuditEvent,
    BaseModelInfo,
    BlameEntry,
    BranchInfo,
    DiffLayer,
    HistoryEvent,
    LiveEdit,
    RefLogEntry,
    RequestDetail,
    RequestInfo,
    StatisticsInfo,
    VerifyReport,
    VersionDetail,
    VersionDiff,
    VersionInfo,
    VersionRequest,
)
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
    StatisticsLayerRow,
    VersionArtifactRow,
    VersionRequestRow,
    VersionRevertRow,
    VersionRoundRow,
    VersionRow,
)
from ledger.object_store import default_cache_dir, open_store
from ledger.records import ArtifactRef, EditRequest, Score, VersionDraft, canonical_json
from ledger.scores import insert_scores, record_scores, version_scores
from ledger.store import validate_sha
from ledger.values import checked_name, checked_time, short, utc_now

__all__ = ["Ledger", "find_ledger_url"]  # find_ledger_url lives in ledger.config; `cli` imports it from here


class Ledger:
    def __init__(self, root: Path | None, db_url: str, store_dir: str | Path, migrate: bool = False) -> None:
        self.root = root
        self.db_url = db_url
        # Where this machine keeps each base model (`connect --model NAME=PATH`); else its recorded path.
        self.model_paths: dict[str, str] = local_model_paths(root)
        # Remote blobs are cached on this machine: in this ledger directory's `cache/` unless told otherwise.
        self.store = open_store(store_dir, default_cache_dir(root / LEDGER_DIR if root else None))
        if migrate:
            upgrade(db_url)
        self.engine: Engine = make_engine(db_url)
        try:
            check_schema(self.engine)
        except LedgerError:
            self.engine.dispose()
            raise

    @classmethod
    def init(cls, root: Path, db_url: str | None = None, store_dir: str | Path | None = None) -> Ledger:
        ledger_dir, settings, url, store = plan_init(root, db_url, store_dir)
        ledger = cls(ledger_dir.parent, url, store, migrate=True)
        try:
            ledger.store.check_reachable()
        except BaseException:
            ledger.close()
            raise
        write_config(ledger_dir, settings)  # last: a ledger exists once its config does (a failed init can rerun)
        return ledger

    @classmethod
    def connect(cls, root: Path, db_url: str | None = None, store: str | Path | None = None,
                model_paths: dict[str, Path] | None = None) -> Ledger:
        """Join an existing (team) ledger from this directory: check that its database has the editledger schema
        and that the store answers, then write `.editledger/config.json` so that later commands here use them.
        Only the URLs are written: credentials stay in the environment or the client's own configuration.
        `model_paths` says where this machine keeps base models whose recorded path is another machine's."""
        ledger_dir, settings, url, location = plan_connect(root, db_url, store)
        ledger = cls(ledger_dir.parent, url, location)
        try:
            ledger.store.check_reachable()
            for name, path in (model_paths or {}).items():
                ledger.base_model(name)  # an unknown name is refused
                if not Path(path).is_dir():
                    raise LedgerError(f"--model {name}={path}: no such directory")
            if model_paths:
                ledger.model_paths = {name: str(Path(path).resolve()) for name, path in model_paths.items()}
                settings["model_paths"] = ledger.model_paths
            write_config(ledger_dir, settings)
        except BaseException:
            ledger.close()
            raise
        return ledger

    @classmethod
    def open(
        cls, start: Path | None = None, db_url: str | None = None, store_dir: str | Path | None = None
    ) -> Ledger:
        root, url, store = locate(start, db_url, store_dir)
        return cls(root, url, store)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({self.db_url.split('://')[0]}, root={self.root})"

    # ------------------------------------------------------------------------------------ sessions
    @contextmanager
    def _read(self) -> Iterator[Session]:
        with transaction(self.engine) as session:
            yield session

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with write_transaction(self.engine) as session:
            yield session

    def _insert_or_ignore(self, session: Session, model: type, rows: list[dict[str, Any]], key: str) -> None:
        """INSERT ... ON CONFLICT (key) DO NOTHING: a concurrent writer may insert the same content row."""
        dialect_insert = (
            postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        )
        for start in range(0, len(rows), queries.CHUNK // 4):
            part = rows[start : start + queries.CHUNK // 4]
            session.execute(dialect_insert(model).values(part).on_conflict_do_nothing(index_elements=[key]))

    # ----------------------------------------------------------------------------------- resolving
    def _info(self, session: Session, version_id: int) -> VersionInfo:
        return queries.versions_by_id(session, [version_id])[version_id]

    # -------------------------------------------------------------------------------------- writes
    def add_base_model(
        self,
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
        checked_name("base model", name)
        checked_name("branch", branch)
        created_at = checked_time(created_at)
        with self._write() as session:
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
                kind="base",
                base_model=name,
                state_hash=state_hash,
                author=author,
                reason=f"base model {name}",
            )
            version = self._insert_version(session, draft, None, base, created_at)
            branch_row = BranchRow(
                name=branch, head_version_id=version.id, base_model_id=base.id, created_at=created_at
            )
            session.add(branch_row)
            session.flush()
            refs.log_move(session, branch_row.id, None, version.id, author, f"base model {name}", created_at)
            return self._info(session, version.id)

    def append_version(
        self, draft: VersionDraft, branch: str, expected_head: str, created_at: str | None = None
    ) -> VersionInfo:
        """Record `draft` as the new head of `branch` if (and only if) the head is still `expected_head`."""
        created_at = checked_time(created_at)
        self._check_draft(draft)
        with self._write() as session:
            branch_row = refs.branch_row(session, branch)
            parent = session.scalar(select(VersionRow).where(VersionRow.commit_hash == expected_head))
            if parent is None:
                raise UnknownRefError(
                    f"expected head {expected_head!r} of branch {branch!r} is not a recorded version"
                )
            # Claim the branch first: the compare-and-swap locks its row (PostgreSQL) before any insert.
            refs.move_head(session, branch_row, parent.id, parent.id, expected_head)
            base = session.get(BaseModelRow, parent.base_model_id)
            assert base is not None
            if draft.base_model != base.name:
                raise LedgerError(
                    f"draft base model {draft.base_model!r} is not the base of branch {branch!r} "
                    f"({base.name!r})"
                )
            version = self._insert_version(session, draft, parent, base, created_at)
            refs.move_head(session, branch_row, parent.id, version.id, expected_head)
            message = f"{draft.kind}: {draft.reason}"[:1000]
            refs.log_move(session, branch_row.id, parent.id, version.id, draft.author, message, created_at)
            info = self._info(session, version.id)
            fault_point("ledger.append.before_commit")
        return info

    def _check_draft(self, draft: VersionDraft) -> None:
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
            if not self.store.has(artifact.sha256):
                raise BlobMissingError(
                    f"artifact {artifact.role!r}: blob {artifact.sha256} is not in the store "
                    f"{self.store.location} (put it first); nothing was written"
                )
            if artifact.size_bytes < 0:
                raise LedgerError(f"artifact {artifact.role!r}: size_bytes {artifact.size_bytes} is negative")

    def _request_ids(self, session: Session, requests: Sequence[EditRequest]) -> dict[str, int]:
        """Get or create each request by its content key (its prompts are written with it, once)."""
        unique = {r.request_key: r for r in requests}
        ids = queries.request_ids_by_key(session, list(unique))
        missing = [r for key, r in unique.items() if key not in ids]
        if missing:
            self._insert_or_ignore(
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
                    select(RequestPromptRow.request_id).where(
                        RequestPromptRow.request_id.in_(list(created.values()))
                    )
                )
            )
            prompts = [
                {
                    "request_id": created[r.request_key],
                    "position": i,
                    "kind": p.kind,
                    "text": p.text,
                    "target": p.target,
                }
                for r in missing
                if created[r.request_key] not in has_prompts
                for i, p in enumerate(r.eval_prompts)
            ]
            if prompts:
                session.execute(RequestPromptRow.__table__.insert(), prompts)
            ids.update(created)
        return ids

    def _insert_version(
        self,
        session: Session,
        draft: VersionDraft,
        parent: VersionRow | None,
        base: BaseModelRow,
        created_at: str,
    ) -> VersionRow:
        record = record_from_draft(draft, base.state_hash, created_at)
        request_ids = self._request_ids(session, [e.request for e in draft.requests])
        for outcome in draft.outcomes:
            if outcome.request_key not in request_ids:
                request_ids.update(queries.request_ids_by_key(session, [outcome.request_key]))
            if outcome.request_key not in request_ids:
                raise LedgerError(
                    f"outcome names request {short(outcome.request_key)}, which is neither in the draft "
                    "nor recorded"
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
        if (
            session.scalar(select(VersionRow.id).where(VersionRow.commit_hash == version.commit_hash))
            is not None
        ):
            raise LedgerError(
                f"version {version.commit_hash} is already recorded (same parent, content and time)"
            )
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
        self._insert_footprint(session, version.id, record)
        if record.outcomes:
            session.execute(
                RequestOutcomeRow.__table__.insert(),
                [
                    {
                        "version_id": version.id,
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
        self._insert_artifacts(session, version.id, draft.artifacts)
        insert_scores(session, version.id, draft.scores, created_at)
        if record.revert is not None:
            self._insert_revert(session, version, record, request_ids)
        return version

    def _insert_revert(
        self, session: Session, version: VersionRow, record: ChainRecord, request_ids: dict[str, int]
    ) -> None:
        """The typed revert record: its anchor and the revert it undoes must be ancestors (so must every round's
        source), and every replayed request must be recorded."""
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

    def _insert_footprint(self, session: Session, version_id: int, record: ChainRecord) -> None:
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
                select(FootprintLayerRow.position, FootprintLayerRow.id).where(
                    FootprintLayerRow.version_id == version_id
                )
            ).all()
        )
        layer_ids = [id_of[i] for i in range(len(layers))]
        neurons = [
            {
                "footprint_layer_id": layer_id,
                "position": j,
                "version_id": version_id,
                "layer": f.layer,
                "neuron": neuron,
            }
            for layer_id, f in zip(layer_ids, record.footprint, strict=True)
            for j, neuron in enumerate(f.neurons)
        ]
        if neurons:
            session.execute(FootprintNeuronRow.__table__.insert(), neurons)

    def _insert_artifacts(self, session: Session, version_id: int, artifacts: Sequence[ArtifactRef]) -> None:
        if not artifacts:
            return
        unique = {a.sha256: a for a in artifacts}
        self._insert_or_ignore(
            session,
            ArtifactRow,
            [{"sha256": a.sha256, "kind": a.kind, "size_bytes": a.size_bytes} for a in unique.values()],
            "sha256",
        )
        ids = dict(
            session.execute(
                select(ArtifactRow.sha256, ArtifactRow.id).where(ArtifactRow.sha256.in_(list(unique)))
            ).all()
        )
        session.execute(
            VersionArtifactRow.__table__.insert(),
            [
                {"version_id": version_id, "position": i, "artifact_id": ids[a.sha256], "role": a.role}
                for i, a in enumerate(artifacts)
            ],
        )

    def create_branch(self, name: str, at: str, actor: str = "unknown") -> BranchInfo:
        return refs.create_branch(self.engine, name, at, actor)

    def tag(self, name: str, at: str) -> None:
        refs.tag(self.engine, name, at)

    def relocate_base_model(self, name: str, source_path: str, actor: str) -> None:
        """Record where base model `name` now lives (the caller has verified its state hash there)."""
        base_models.relocate(self.engine, name, source_path, actor)

    def record_scores(self, at: str, scores: list[Score]) -> None:
        record_scores(self.engine, at, scores)

    def record_audit(self, kind: str, actor: str, at: str | None, detail: dict[str, Any]) -> None:
        events.record_audit(self.engine, kind, actor, at, detail)

    def record_statistics(
        self,
        base_model: str,
        corpus_path: str,
        corpus_sha256: str,
        sample_count: int,
        dtype: str,
        blobs: dict[int, str],
        created_at: str | None = None,
    ) -> StatisticsInfo:
        """Record which corpus, samples and dtype a base model's C0 blobs (layer -> sha256) came from. The same
        record twice is kept once."""
        return statistics.record_statistics(
            self.engine, self.store, base_model, corpus_path, corpus_sha256, sample_count, dtype, blobs, created_at
        )

    def statistics(self, base_model: str) -> list[StatisticsInfo]:
        """The C0 statistics recorded for a base model, newest first."""
        with self._read() as session:
            return statistics.statistics(session, base_model)

    def gc(self, dry_run: bool = True, grace_seconds: float | None = None) -> list[str]:
        """Blobs in the store that nothing references (no artifact row, no statistics record, no cache index
        entry such as a checkout snapshot) and that were last written longer than `grace_seconds` ago (default:
        the store's own, 0 for a local directory, 1 hour for object storage).

        A writer puts its blobs before it appends the version naming them, and `put` refreshes the time of a
        blob that is already there. So a blob a concurrent writer is about to reference is younger than the
        grace period, provided its round takes less than the grace period (half of it for a blob that was
        already in object storage). With a grace of 0 (a local store's default), run it when no writer works."""
        grace = self.store.gc_grace_seconds if grace_seconds is None else grace_seconds
        if grace < 0:
            raise LedgerError(f"--grace {grace:g}: must not be negative")
        # References first, then the listing: a blob put after the references were read is younger than the
        # grace period when its time is looked at.
        with self._read() as session:
            referenced = set(session.scalars(select(ArtifactRow.sha256)))
            referenced |= set(session.scalars(select(StatisticsLayerRow.sha256)))
        referenced |= self.store.indexed_blobs()

        def old_enough(written: float | None) -> bool:
            return written is not None and written <= time.time() - grace

        unreferenced = [sha for sha, written in self.store.iter_blobs()
                        if sha not in referenced and old_enough(written)]
        if not dry_run:
            deleted = []
            for sha in unreferenced:
                if old_enough(self.store.modified(sha)):  # not put again since the listing
                    self.store.delete(sha)
                    deleted.append(sha)
            unreferenced = deleted
            self.record_audit("gc", "editledger", None, {"deleted": unreferenced, "grace_seconds": grace})
        return unreferenced

    # --------------------------------------------------------------------------------------- reads
    def resolve(self, ref: str) -> VersionInfo:
        with self._read() as session:
            return self._info(session, refs.version_id(session, ref))

    def branch(self, name: str) -> BranchInfo:
        with self._read() as session:
            return refs.branch(session, name)

    def branches(self) -> list[BranchInfo]:
        with self._read() as session:
            return refs.branches(session)

    def tags(self) -> dict[str, str]:
        with self._read() as session:
            return refs.tags(session)

    def base_model(self, name: str) -> BaseModelInfo:
        with self._read() as session:
            return base_models.base_model(session, name)

    def base_models(self) -> list[BaseModelInfo]:
        with self._read() as session:
            return base_models.base_models(session)

    def log(self, branch: str, limit: int = 20, offset: int = 0) -> list[VersionInfo]:
        """Versions of `branch`, newest first, one page."""
        if limit < 0 or offset < 0:
            raise LedgerError(f"log: limit ({limit}) and offset ({offset}) must not be negative")
        with self._read() as session:
            return queries.ancestry(session, refs.branch_row(session, branch).head_version_id, limit, offset)

    def ancestry(self, ref: str) -> list[VersionInfo]:
        """Root (the base version) first, `ref` last."""
        with self._read() as session:
            return queries.ancestry(session, refs.version_id(session, ref))[::-1]

    def lineage(self, ref: str) -> Lineage:
        """The rounds of `ref` and of each of its ancestors (see `ledger.history`), read in a fixed number of
        statements."""
        with self._read() as session:
            return load_lineage(session, refs.version_id(session, ref))

    def rounds(self, ref: str) -> list[Round]:
        """The rounds that produce version `ref` from its base, in order."""
        return self.lineage(ref).rounds()

    def show(self, ref: str) -> VersionDetail:
        with self._read() as session:
            return self._show(session, refs.version_id(session, ref))

    def describe(self, ref: str) -> VersionDetail | RequestDetail:
        """A version (branch, tag, commit hash or prefix, `~N`) or else a request (key or prefix): what `show`
        prints. A hex prefix that starts both a commit and a request is refused as ambiguous."""
        with self._read() as session:
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
                        f"ref {ref!r} is ambiguous: it starts a commit and request {short(requests[0])}; "
                        "give more of the hash"
                    )
            return self._show(session, version_id)

    def request_detail(self, ref: str) -> RequestDetail:
        """One request (key or prefix): its fact, the versions that touched it, its scores over time."""
        with self._read() as session:
            return audit.request_detail(session, refs.request_id(session, ref))

    def live_edits(self, ref: str) -> list[LiveEdit]:
        """The requests in effect at a version, each with the version that made it."""
        with self._read() as session:
            return audit.live_edits(session, refs.version_id(session, ref))

    def latest_scores(self, ref: str) -> tuple[str | None, list[Score]]:
        """(commit, summary scores) of the newest version in `ref`'s history that recorded any."""
        with self._read() as session:
            return audit.latest_scores(session, refs.version_id(session, ref))

    @property
    def ledger_id(self) -> str:
        """The ledger's identity: the commit hash of its first recorded version (as a repository's root commit
        names it), the same from every machine that opens the database."""
        with self._read() as session:
            first = session.scalar(select(VersionRow.commit_hash).order_by(VersionRow.id).limit(1))
        if first is None:
            raise LedgerError("the ledger has no versions yet: record a base model first")
        return first

    def _show(self, session: Session, version_id: int) -> VersionDetail:
        info = self._info(session, version_id)
        record = queries.chain_records(session, [version_id])[version_id]
        members = session.execute(
            select(VersionRequestRow.request_id, VersionRequestRow.role, VersionRequestRow.position)
            .where(VersionRequestRow.version_id == version_id)
            .order_by(VersionRequestRow.position)
        ).all()
        requests = queries.requests_by_id(session, [rid for rid, _, _ in members])
        artifacts = queries.version_artifacts(session, version_id)
        tags = refs.version_tags(session, version_id)
        return VersionDetail(
            version=info,
            requests=[
                VersionRequest(requests[rid], role, position, requests[rid].request_key)
                for rid, role, position in members
            ],
            footprint=list(record.footprint),
            outcomes=list(record.outcomes),
            artifacts=artifacts,
            scores=version_scores(session, version_id),
            tags=tags,
            revert=record.revert,
        )

    def ancestry_artifacts(self, ref: str) -> list[tuple[VersionInfo, list[ArtifactRef]]]:
        """`ancestry(ref)` with each version's blobs, read together (what a checkout needs, in two queries)."""
        with self._read() as session:
            chain = queries.ancestry(session, refs.version_id(session, ref))[::-1]
            blobs = queries.artifacts_by_version(session, [v.id for v in chain])
            return [(version, blobs[version.id]) for version in chain]

    def artifacts(self, ref: str) -> list[ArtifactRef]:
        """The blobs a version recorded, in order (what `show` lists, without the rest of the version)."""
        with self._read() as session:
            return queries.version_artifacts(session, refs.version_id(session, ref))

    def request(self, ref: str) -> RequestInfo:
        with self._read() as session:
            request = queries.requests_by_id(session, [refs.request_id(session, ref)])
            (only,) = request.values()
            return RequestInfo(request_key=only.request_key, request=only)

    def history(self, subject: str | None = None, request: str | None = None) -> list[HistoryEvent]:
        if subject is None and request is None:
            raise LedgerError("history: give a subject or a request key")
        with self._read() as session:
            if request is not None:
                ids = [refs.request_id(session, request)]
            else:
                # Case and surrounding spaces do not matter: an auditor types the subject as they remember it.
                # (SQLite's lower() folds ASCII only: other letters match in their recorded case.)
                column = EditRequestRow.subject
                wanted = or_(column == subject, column == subject.strip(),
                             func.lower(column) == subject.strip().lower())
                ids = list(session.scalars(select(EditRequestRow.id).where(wanted)))
            return queries.history(session, ids)

    def blame(self, layer: int, neuron: int) -> list[BlameEntry]:
        with self._read() as session:
            return queries.blame(session, int(layer), int(neuron))

    def diff(self, a: str, b: str) -> VersionDiff:
        with self._read() as session:
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
            changed_ids = select(EditRequestRow.id).where(EditRequestRow.request_key.in_(changed))
            wanted_ids = session.scalars(changed_ids)
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

    def ref_log(self, branch: str) -> list[RefLogEntry]:
        """Every move of the branch head, newest first."""
        with self._read() as session:
            return refs.ref_log(session, branch)

    def scores(self, at: str) -> list[Score]:
        with self._read() as session:
            return version_scores(session, refs.version_id(session, at))

    def audit_events(self, limit: int = 100) -> list[AuditEvent]:
        """Newest first."""
        with self._read() as session:
            return events.audit_events(session, limit)

    # ----------------------------------------------------------------------------------- integrity
    def verify(self, check_blobs: bool = True, checkpoint: Path | None = None) -> VerifyReport:
        """Recompute every commit hash from the rows, branch by branch from root to head, and every blob.

        With `checkpoint`: check the history against that file when it exists, else (and only when every hash
        checked out) write it; the report says which."""
        problems: list[str] = []
        with self._read() as session:
            rows = session.execute(
                select(
                    VersionRow.id,
                    VersionRow.parent_id,
                    VersionRow.commit_hash,
                    VersionRow.depth,
                    VersionRow.n_requests,
                )
            ).all()
            by_id = {r.id: r for r in rows}
            order: list[tuple[int, str]] = []  # (version id, where it was reached), first visit only
            seen: set[int] = set()
            for name, head in session.execute(
                select(BranchRow.name, BranchRow.head_version_id).order_by(BranchRow.name)
            ):
                walk, at = [], head
                while at is not None and at not in seen:
                    walk.append(at)
                    seen.add(at)
                    at = by_id[at].parent_id
                order += [(v, f"branch {name!r}") for v in reversed(walk)]
            order += [
                (r.id, "no branch") for r in sorted(rows, key=lambda r: (r.depth, r.id)) if r.id not in seen
            ]
            where_of = dict(order)
            for part in queries.chunks([v for v, _ in order]):
                records = queries.chain_records(session, part)
                for version_id in part:
                    problems += self._version_problems(
                        by_id, version_id, records[version_id], where_of[version_id]
                    )
            blobs = (
                session.execute(
                    select(ArtifactRow.sha256, VersionArtifactRow.role, VersionRow.commit_hash)
                    .join(VersionArtifactRow, VersionArtifactRow.artifact_id == ArtifactRow.id)
                    .join(VersionRow, VersionRow.id == VersionArtifactRow.version_id)
                    .order_by(VersionRow.id, VersionArtifactRow.position)
                ).all()
                if check_blobs
                else []
            )
        blobs_checked = 0
        checked: set[str] = set()
        for sha, role, commit in blobs:
            if sha in checked:
                continue
            checked.add(sha)
            blobs_checked += 1
            try:
                self.store.check(sha)
            except (BlobMissingError, BlobCorruptError, InvalidBlobAddressError) as error:
                problems.append(f"{error} (artifact {role!r} of version {short(commit)})")
        checkpoint_action = None
        if checkpoint is not None:
            if Path(checkpoint).exists():
                problems += self.check_checkpoint(checkpoint)
                checkpoint_action = "checked"
            elif not problems:
                self.write_checkpoint(checkpoint)
                checkpoint_action = "written"
            else:
                checkpoint_action = "skipped"
        report = VerifyReport(
            ok=not problems,
            versions_checked=len(order),
            blobs_checked=blobs_checked,
            problems=problems,
            checkpoint=str(checkpoint) if checkpoint is not None else None,
            checkpoint_action=checkpoint_action,
        )
        self.record_audit(
            "verify",
            "editledger",
            None,
            {
                "ok": report.ok,
                "versions_checked": len(order),
                "blobs_checked": blobs_checked,
                "problems": problems[:20],
            },
        )
        return report

    @staticmethod
    def _version_problems(
        by_id: dict[int, Any], version_id: int, record: ChainRecord, where: str
    ) -> list[str]:
        row = by_id[version_id]
        parent = by_id[row.parent_id] if row.parent_id is not None else None
        found = commit_hash(parent.commit_hash if parent else None, record)
        problems = []
        if found != row.commit_hash:
            problems.append(
                f"version {row.commit_hash} ({where}, depth {row.depth}) does not match its recorded "
                f"rows: they hash to {short(found)}"
            )
        if row.depth != (parent.depth + 1 if parent else 0):
            problems.append(
                f"version {row.commit_hash} ({where}): depth {row.depth} does not follow its parent's"
            )
        if row.n_requests != len(record.requests):
            problems.append(
                f"version {row.commit_hash} ({where}): n_requests {row.n_requests} but "
                f"{len(record.requests)} request rows"
            )
        return problems

    def _branch_commits(self, session: Session, name: str) -> list[str]:
        """Commit hashes of a branch, root first, walked through parent links (not trusting `depth`)."""
        chain = queries.ancestry_cte(refs.branch_row(session, name).head_version_id)
        query = select(VersionRow.commit_hash, VersionRow.depth).join(chain, chain.c.id == VersionRow.id)
        return [commit for commit, _ in sorted(session.execute(query).all(), key=lambda row: row[1])]

    def write_checkpoint(self, path: Path) -> None:
        """A small JSON file, kept outside the database: per branch its head and version count."""
        with self._read() as session:
            branches = {}
            for name in session.scalars(select(BranchRow.name).order_by(BranchRow.name)):
                commits = self._branch_commits(session, name)
                branches[name] = {"head": commits[-1], "versions": len(commits)}
        path = Path(path)
        temp = path.with_name(path.name + ".tmp")
        temp.write_text(
            json.dumps({"editledger_checkpoint": 1, "written_at": utc_now(), "branches": branches}, indent=2)
            + "\n"
        )
        os.replace(temp, path)

    def check_checkpoint(self, path: Path) -> list[str]:
        """Problems: a branch whose history no longer holds the checkpointed head at the checkpointed place.
        Catches a rewritten history even when every hash inside the database was recomputed to match."""
        try:
            checkpoint = json.loads(Path(path).read_text())
            branches = checkpoint["branches"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise LedgerError(f"checkpoint {path}: unreadable ({error})") from None
        problems = []
        with self._read() as session:
            for name, mark in sorted(branches.items()):
                try:
                    commits = self._branch_commits(session, name)
                except UnknownRefError:
                    problems.append(f"branch {name!r} of checkpoint {path} no longer exists")
                    continue
                head, count = mark["head"], int(mark["versions"])
                if head not in commits:
                    problems.append(
                        f"branch {name!r}: checkpointed head {short(head)} is no longer in its history "
                        "(history rewritten since the checkpoint)"
                    )
                elif commits.index(head) + 1 != count:
                    problems.append(
                        f"branch {name!r}: {commits.index(head) + 1} versions up to {short(head)}, "
                        f"the checkpoint recorded {count} (history rewritten since the checkpoint)"
                    )
        return problems
