"""The ledger's Python API: `Ledger.init(...)` / `Ledger.open(...)` / `Ledger.connect(...)`, then writes (each one DB
transaction, branch heads moved by compare-and-swap) and audit reads that return plain frozen dataclasses.

`Ledger` is a facade: it holds the engine and the blob store and opens the read transaction of each read; every
method hands over to the module that owns its domain (see docs/map.md): `config` (finding and writing the
config), `writing` (versions and their records), `refs`, `reading` (log, show, describe, diff, history, blame),
`audit` (the auditor's reads), `scores`, `statistics`, `base_models`, `events` (audit events), `integrity`
(verify, checkpoints) and `gc`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ledger import audit, base_models, events, gc, integrity, reading, refs, statistics, writing
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
from ledger.errors import LedgerError
from ledger.history import Lineage, Round
from ledger.infos import (
    AuditEvent,
    BaseModelInfo,
    BlameEntry,
    BranchInfo,
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
)
from ledger.object_store import default_cache_dir, open_store
from ledger.records import ArtifactRef, Score, VersionDraft
from ledger.scores import record_scores, version_scores

__all__ = ["Ledger", "find_ledger_url"]  # find_ledger_url lives in ledger.config; `commands/setup.py` imports it here


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

    # ------------------------------------------------------------------------------------- opening
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

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with transaction(self.engine) as session:
            yield session

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

    # ---------------------------------------------------------------------------------- refs (ledger.refs)
    def create_branch(self, name: str, at: str, actor: str = "unknown") -> BranchInfo:
        return refs.create_branch(self.engine, name, at, actor)

    def tag(self, name: str, at: str) -> None:
        refs.tag(self.engine, name, at)

    def resolve(self, ref: str) -> VersionInfo:
        with self._read() as session:
            return reading.resolve(session, ref)

    def branch(self, name: str) -> BranchInfo:
        with self._read() as session:
            return refs.branch(session, name)

    def branches(self) -> list[BranchInfo]:
        with self._read() as session:
            return refs.branches(session)

    def tags(self) -> dict[str, str]:
        with self._read() as session:
            return refs.tags(session)

    def ref_log(self, branch: str) -> list[RefLogEntry]:
        """Every move of the branch head, newest first."""
        with self._read() as session:
            return refs.ref_log(session, branch)

    # --------------------------------------------------------------------- base models and statistics
    def base_model(self, name: str) -> BaseModelInfo:
        with self._read() as session:
            return base_models.base_model(session, name)

    def base_models(self) -> list[BaseModelInfo]:
        with self._read() as session:
            return base_models.base_models(session)

    def statistics(self, base_model: str) -> list[StatisticsInfo]:
        """The C0 statistics recorded for a base model, newest first."""
        with self._read() as session:
            return statistics.statistics(session, base_model)

    # ----------------------------------------------------------------------- reads (ledger.reading)
    @property
    def ledger_id(self) -> str:
        """The ledger's identity: the commit hash of its first recorded version (as a repository's root commit
        names it), the same from every machine that opens the database."""
        with self._read() as session:
            return reading.ledger_id(session)

    def log(self, branch: str, limit: int = 20, offset: int = 0) -> list[VersionInfo]:
        """Versions of `branch`, newest first, one page."""
        with self._read() as session:
            return reading.log(session, branch, limit, offset)

    def ancestry(self, ref: str) -> list[VersionInfo]:
        """Root (the base version) first, `ref` last."""
        with self._read() as session:
            return reading.ancestry(session, ref)

    def lineage(self, ref: str) -> Lineage:
        """The rounds of `ref` and of each of its ancestors (see `ledger.history`), read in a fixed number of
        statements."""
        with self._read() as session:
            return reading.lineage(session, ref)

    def rounds(self, ref: str) -> list[Round]:
        """The rounds that produce version `ref` from its base, in order."""
        return self.lineage(ref).rounds()

    def show(self, ref: str) -> VersionDetail:
        with self._read() as session:
            return reading.show(session, ref)

    def describe(self, ref: str) -> VersionDetail | RequestDetail:
        """A version (branch, tag, commit hash or prefix, `~N`) or else a request (key or prefix): what `show`
        prints. A hex prefix that starts both a commit and a request is refused as ambiguous."""
        with self._read() as session:
            return reading.describe(session, ref)

    def ancestry_artifacts(self, ref: str) -> list[tuple[VersionInfo, list[ArtifactRef]]]:
        """`ancestry(ref)` with each version's blobs, read together (what a checkout needs, in two queries)."""
        with self._read() as session:
            return reading.ancestry_artifacts(session, ref)

    def artifacts(self, ref: str) -> list[ArtifactRef]:
        """The blobs a version recorded, in order (what `show` lists, without the rest of the version)."""
        with self._read() as session:
            return reading.artifacts(session, ref)

    def request(self, ref: str) -> RequestInfo:
        with self._read() as session:
            return reading.request(session, ref)

    def history(self, subject: str | None = None, request: str | None = None) -> list[HistoryEvent]:
        with self._read() as session:
            return reading.history(session, subject, request)

    def blame(self, layer: int, neuron: int) -> list[BlameEntry]:
        with self._read() as session:
            return reading.blame(session, layer, neuron)

    def diff(self, a: str, b: str) -> VersionDiff:
        with self._read() as session:
            return reading.diff(session, a, b)

    def scores(self, at: str) -> list[Score]:
        with self._read() as session:
            return version_scores(session, refs.version_id(session, at))

    # --------------------------------------------------------------------- the auditor's reads (ledger.audit)
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

    def audit_events(self, limit: int = 100) -> list[AuditEvent]:
        """Newest first."""
        with self._read() as session:
            return events.audit_events(session, limit)

    # ------------------------------------------------------------------- integrity and gc (their modules)
    def verify(self, check_blobs: bool = True, checkpoint: Path | None = None) -> VerifyReport:
        """Recompute every commit hash from the rows, branch by branch from root to head, and every blob.

        With `checkpoint`: check the history against that file when it exists, else (and only when every hash
        checked out) write it; the report says which."""
        return integrity.verify(self.engine, self.store, check_blobs, checkpoint)

    def write_checkpoint(self, path: Path) -> None:
        """A small JSON file, kept outside the database: per branch its head and version count."""
        integrity.write_checkpoint(self.engine, path)

    def check_checkpoint(self, path: Path) -> list[str]:
        """Problems: a branch whose history no longer holds the checkpointed head at the checkpointed place."""
        return integrity.check_checkpoint(self.engine, path)

    def gc(self, dry_run: bool = True, grace_seconds: float | None = None) -> list[str]:
        """Blobs in the store that nothing references and that were last written longer than `grace_seconds` ago
        (default: the store's own); deleted unless `dry_run` (see `ledger.gc`)."""
        return gc.gc(self.engine, self.store, dry_run, grace_seconds)
