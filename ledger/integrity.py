"""Integrity: `verify` recomputes every commit hash from the rows (branch by branch, root to head) and checks every
blob in the store; a checkpoint file kept outside the database (per branch: head and version count) catches a
history rewritten with every hash recomputed. Each verify is kept as a `verify` audit event."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ledger import events, queries, refs
from ledger.chain import ChainRecord, commit_hash
from ledger.db import transaction
from ledger.errors import BlobCorruptError, BlobMissingError, InvalidBlobAddressError, LedgerError, UnknownRefError
from ledger.infos import VerifyReport
from ledger.models import ArtifactRow, BranchRow, VersionArtifactRow, VersionRow
from ledger.store import ContentStore
from ledger.values import short, utc_now


def verify(
    engine: Engine, store: ContentStore, check_blobs: bool = True, checkpoint: Path | None = None
) -> VerifyReport:
    """Recompute every commit hash from the rows, branch by branch from root to head, and every blob.

    With `checkpoint`: check the history against that file when it exists, else (and only when every hash
    checked out) write it; the report says which."""
    problems: list[str] = []
    with transaction(engine) as session:
        rows = session.execute(
            select(VersionRow.id, VersionRow.parent_id, VersionRow.commit_hash, VersionRow.depth, VersionRow.n_requests)
        ).all()
        by_id = {r.id: r for r in rows}
        order: list[tuple[int, str]] = []  # (version id, where it was reached), first visit only
        seen: set[int] = set()
        for name, head in session.execute(select(BranchRow.name, BranchRow.head_version_id).order_by(BranchRow.name)):
            walk, at = [], head
            while at is not None and at not in seen:
                walk.append(at)
                seen.add(at)
                at = by_id[at].parent_id
            order += [(v, f"branch {name!r}") for v in reversed(walk)]
        order += [(r.id, "no branch") for r in sorted(rows, key=lambda r: (r.depth, r.id)) if r.id not in seen]
        where_of = dict(order)
        for part in queries.chunks([v for v, _ in order]):
            records = queries.chain_records(session, part)
            for version_id in part:
                problems += _version_problems(by_id, version_id, records[version_id], where_of[version_id])
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
            store.check(sha)
        except (BlobMissingError, BlobCorruptError, InvalidBlobAddressError) as error:
            problems.append(f"{error} (artifact {role!r} of version {short(commit)})")
    checkpoint_action = None
    if checkpoint is not None:
        if Path(checkpoint).exists():
            problems += check_checkpoint(engine, checkpoint)
            checkpoint_action = "checked"
        elif not problems:
            write_checkpoint(engine, checkpoint)
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
    events.record_audit(
        engine,
        "verify",
        "editledger",
        None,
        {"ok": report.ok, "versions_checked": len(order), "blobs_checked": blobs_checked, "problems": problems[:20]},
    )
    return report


def _version_problems(by_id: dict[int, Any], version_id: int, record: ChainRecord, where: str) -> list[str]:
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
        problems.append(f"version {row.commit_hash} ({where}): depth {row.depth} does not follow its parent's")
    if row.n_requests != len(record.requests):
        problems.append(
            f"version {row.commit_hash} ({where}): n_requests {row.n_requests} but {len(record.requests)} request rows"
        )
    return problems


def _branch_commits(session: Session, name: str) -> list[str]:
    """Commit hashes of a branch, root first, walked through parent links (not trusting `depth`)."""
    chain = queries.ancestry_cte(refs.branch_row(session, name).head_version_id)
    query = select(VersionRow.commit_hash, VersionRow.depth).join(chain, chain.c.id == VersionRow.id)
    return [commit for commit, _ in sorted(session.execute(query).all(), key=lambda row: row[1])]


def write_checkpoint(engine: Engine, path: Path) -> None:
    """A small JSON file, kept outside the database: per branch its head and version count."""
    with transaction(engine) as session:
        branches = {}
        for name in session.scalars(select(BranchRow.name).order_by(BranchRow.name)):
            commits = _branch_commits(session, name)
            branches[name] = {"head": commits[-1], "versions": len(commits)}
    path = Path(path)
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(
        json.dumps({"editledger_checkpoint": 1, "written_at": utc_now(), "branches": branches}, indent=2) + "\n"
    )
    os.replace(temp, path)


def check_checkpoint(engine: Engine, path: Path) -> list[str]:
    """Problems: a branch whose history no longer holds the checkpointed head at the checkpointed place.
    Catches a rewritten history even when every hash inside the database was recomputed to match."""
    try:
        checkpoint = json.loads(Path(path).read_text())
        branches = checkpoint["branches"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise LedgerError(f"checkpoint {path}: unreadable ({error})") from None
    problems = []
    with transaction(engine) as session:
        for name, mark in sorted(branches.items()):
            try:
                commits = _branch_commits(session, name)
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
