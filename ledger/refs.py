"""Refs: the names that point at versions, as git's refs do. Resolving a ref (branch, tag, commit hash or a prefix
of >= 4 hex, each with `~N`) or a request key to its row; creating branches and tags; moving a branch head by
compare-and-swap and keeping its ref log (the history of a head's moves, never where a setting is looked up).

Reads take an open session; a write (`create_branch`, `tag`) checks its arguments and then runs as one write
transaction of its own."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from ledger import queries
from ledger.db import write_transaction
from ledger.errors import ConflictError, LedgerError, UnknownRefError
from ledger.infos import BranchInfo, RefLogEntry
from ledger.models import BaseModelRow, BranchRow, EditRequestRow, RefLogRow, TagRow, VersionRow
from ledger.values import checked_name, short, utc_now

HEX_PREFIX = re.compile(r"[0-9a-f]{4,64}")
MAX_REF_LIST = 3  # candidates named in an "ambiguous" message


# ----------------------------------------------------------------------------------------- resolving
def branch_row(session: Session, name: str) -> BranchRow:
    row = session.scalar(select(BranchRow).where(BranchRow.name == name))
    if row is None:
        raise UnknownRefError(f"unknown branch {name!r}")
    return row


def by_prefix(session: Session, column: Any, prefix: str) -> list[Any]:
    # A range, not LIKE, so the unique index serves it on both backends ('g' sorts after every hex digit).
    query = select(column).where(column >= prefix, column < prefix + "g").order_by(column).limit(MAX_REF_LIST)
    return list(session.scalars(query))


def is_branch_or_tag(session: Session, name: str) -> bool:
    return bool(
        session.scalar(select(BranchRow.id).where(BranchRow.name == name))
        or session.scalar(select(TagRow.id).where(TagRow.name == name))
    )


def _named_id(session: Session, name: str, ref: str) -> int:
    head = session.scalar(select(BranchRow.head_version_id).where(BranchRow.name == name))
    if head is not None:
        return head
    tagged = session.scalar(select(TagRow.version_id).where(TagRow.name == name))
    if tagged is not None:
        return tagged
    if HEX_PREFIX.fullmatch(name):
        found = by_prefix(session, VersionRow.commit_hash, name)
        if len(found) > 1:
            raise UnknownRefError(f"ref {ref!r} is ambiguous: it starts {', '.join(short(h) for h in found)}")
        if found:
            return session.scalar(select(VersionRow.id).where(VersionRow.commit_hash == found[0]))  # type: ignore[return-value]
    raise UnknownRefError(f"unknown ref {ref!r}: not a branch, a tag or a commit hash (or a prefix of >= 4 hex)")


def version_id(session: Session, ref: str) -> int:
    """The row id of the version `ref` names: a branch, a tag or a commit hash (or prefix), then `~N` back."""
    name, *steps = str(ref).split("~")
    if any(step and not step.isdigit() for step in steps):
        raise UnknownRefError(f"unknown ref {ref!r}: `~` must be followed by a number")
    back = sum(int(step) if step else 1 for step in steps)
    found = _named_id(session, name, ref)
    if back:
        depth = session.scalar(select(VersionRow.depth).where(VersionRow.id == found)) or 0
        if back > depth:
            raise UnknownRefError(f"unknown ref {ref!r}: {name!r} has only {depth} ancestors")
        chain = queries.ancestry_cte(found, depth - back)
        found = session.scalar(
            select(VersionRow.id).join(chain, chain.c.id == VersionRow.id).where(VersionRow.depth == depth - back)
        )  # type: ignore[assignment]
    return found


def request_id(session: Session, ref: str) -> int:
    """The row id of the request whose key is (or starts with) `ref`."""
    ref = str(ref).strip().lower()
    found = by_prefix(session, EditRequestRow.request_key, ref) if HEX_PREFIX.fullmatch(ref) else []
    if len(found) > 1:
        raise UnknownRefError(f"request {ref!r} is ambiguous: it starts {', '.join(short(h) for h in found)}")
    if not found:
        raise UnknownRefError(f"unknown request {ref!r}: give a request key or a prefix of >= 4 hex")
    return session.scalar(select(EditRequestRow.id).where(EditRequestRow.request_key == found[0]))  # type: ignore[return-value]


# ------------------------------------------------------------------------------------ moving heads
def move_head(session: Session, branch: BranchRow, expected_id: int, new_id: int, expected_hash: str) -> None:
    """Compare-and-swap: point `branch` at `new_id` only if its head is still `expected_id`, else ConflictError."""
    moved = session.execute(
        update(BranchRow)
        .where(BranchRow.id == branch.id, BranchRow.head_version_id == expected_id)
        .values(head_version_id=new_id)
        .execution_options(synchronize_session=False)
    ).rowcount
    if moved != 1:
        now = session.scalar(
            select(VersionRow.commit_hash)
            .join(BranchRow, BranchRow.head_version_id == VersionRow.id)
            .where(BranchRow.id == branch.id)
        )
        raise ConflictError(
            f"branch {branch.name!r} moved: expected {short(expected_hash)}, now {short(now)}; nothing was written"
        )


def log_move(
    session: Session, branch_id: int, old_id: int | None, new_id: int, actor: str, message: str, created_at: str
) -> None:
    """One ref log entry: the branch's head went from `old_id` (None: the branch was created) to `new_id`."""
    session.add(
        RefLogRow(
            branch_id=branch_id,
            old_version_id=old_id,
            new_version_id=new_id,
            actor=actor,
            message=message,
            created_at=created_at,
        )
    )
    session.flush()


def create_branch(engine: Engine, name: str, at: str, actor: str = "unknown") -> BranchInfo:
    checked_name("branch", name)
    created_at = utc_now()
    with write_transaction(engine) as session:
        if session.scalar(select(BranchRow.id).where(BranchRow.name == name)) is not None:
            raise LedgerError(f"branch {name!r} already exists")
        at_id = version_id(session, at)
        version = session.get(VersionRow, at_id)
        assert version is not None
        row = BranchRow(name=name, head_version_id=at_id, base_model_id=version.base_model_id, created_at=created_at)
        session.add(row)
        session.flush()
        log_move(session, row.id, None, at_id, actor, f"branch from {at}", created_at)
        return branch_info(session, row)


def tag(engine: Engine, name: str, at: str) -> None:
    checked_name("tag", name)
    with write_transaction(engine) as session:
        if session.scalar(select(TagRow.id).where(TagRow.name == name)) is not None:
            raise LedgerError(f"tag {name!r} already exists")
        session.add(TagRow(name=name, version_id=version_id(session, at), created_at=utc_now()))


# ------------------------------------------------------------------------------------------ reading
def branch_info(session: Session, row: BranchRow) -> BranchInfo:
    head = session.get(VersionRow, row.head_version_id)
    base = session.get(BaseModelRow, row.base_model_id)
    assert head is not None and base is not None
    return BranchInfo(
        name=row.name, head_hash=head.commit_hash, base_model=base.name, created_at=row.created_at, depth=head.depth
    )


def branch(session: Session, name: str) -> BranchInfo:
    return branch_info(session, branch_row(session, name))


def branches(session: Session) -> list[BranchInfo]:
    return [branch_info(session, row) for row in session.scalars(select(BranchRow).order_by(BranchRow.name))]


def tags(session: Session) -> dict[str, str]:
    query = select(TagRow.name, VersionRow.commit_hash).join(VersionRow, VersionRow.id == TagRow.version_id)
    return dict(session.execute(query.order_by(TagRow.name)).all())


def version_tags(session: Session, version_id: int) -> list[str]:
    return list(session.scalars(select(TagRow.name).where(TagRow.version_id == version_id).order_by(TagRow.name)))


def ref_log(session: Session, branch: str) -> list[RefLogEntry]:
    """Every move of the branch head, newest first."""
    row = branch_row(session, branch)
    entries = session.scalars(
        select(RefLogRow).where(RefLogRow.branch_id == row.id).order_by(RefLogRow.id.desc())
    ).all()
    ids = {e.new_version_id for e in entries} | {e.old_version_id for e in entries if e.old_version_id}
    hashes = dict(session.execute(select(VersionRow.id, VersionRow.commit_hash).where(VersionRow.id.in_(ids))).all())
    return [
        RefLogEntry(
            branch,
            hashes.get(e.old_version_id) if e.old_version_id else None,
            hashes[e.new_version_id],
            e.actor,
            e.message,
            e.created_at,
        )
        for e in entries
    ]
