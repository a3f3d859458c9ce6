"""The small values every part of the ledger checks and spells the same way: the time a row is written at, a
caller's time and branch/tag name checked before anything is written, and a hash cut short for a message."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from ledger.errors import LedgerError

NAME = re.compile(
    r"[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}"
)  # branch and tag names: no `~`, spaces or leading `-`


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def checked_time(created_at: str | None) -> str:
    if created_at is None:
        return utc_now()
    try:
        datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        raise LedgerError(f"created_at {created_at!r} is not an ISO-8601 time") from None
    return created_at


def checked_name(what: str, name: str) -> str:
    if not NAME.fullmatch(name) or ".." in name or name.endswith(("/", ".")):
        raise LedgerError(f"{what} name {name!r} is not allowed: use letters, digits, '.', '_', '-', '/'")
    return name


def short(commit: str | None) -> str:
    return (commit or "none")[:12]
