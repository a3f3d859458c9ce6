"""The ledger's Python API: `Ledger.init(...)` / `Ledger.open(...)`, then writes (each one DB transaction,
branch heads moved by compare-and-swap) and audit reads that return plain frozen dataclasses."""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, or_, select
from sqlalchemy.orm import Session

from ledger import audit, base_models, events, queries, refs, statistics, writing
from ledger.chain import ChainRecord, commit_hash
from ledger.config import (
    LEDGER_DIR,
    find_ledger_url,
    local_model_paths,
    locate,
    plan_connect,
    plan_init,
    write_config,
)
from ledger.db import check_schema, make_engine, transaction, upgrade
from ledger.errors import (
    BlobCorruptError,
    BlobMissingError,
    InvalidBlobAddressError,
    LedgerError,
    UnknownRefError,
)
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
    ArtifactRow,
    BranchRow,
    EditRequestRow,
    StatisticsLayerRow,
    VersionArtifactRow,
    VersionRequestRow,
    VersionRow,
)
from ledger.object_store import default_cache_dir, open_store
from ledger.records import ArtifactRef, Score, VersionDraft
from ledger.scores import record_scores, version_scores
from ledger.values import short, utc_now

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

    # ----------------------------------------------------------------------------------- resolving
    def _info(self, session: Session, version_id: int) -> VersionInfo:
        return queries.versions_by_id(session, [version_id])[version_id]

    # -------------------------------------------------------------------------- writes (ledger.writing)
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
        return writing.add_base_model(
            self.engine, name, state_hash, architecture, config, source_path,
            branch=branch, author=author, hub_id=hub_id, revision=revision, created_at=created_at,
        )

    def append_version(
        self, draft: VersionDraft, branch: str, expected_head: str, created_at: str | None = None
    ) -> VersionInfo:
        """Record `draft` as the new head of `branch` if (and only if) the head is still `expected_head`."""
        return writing.append_version(self.engine, self.store, draft, branch, expected_head, created_at)

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
