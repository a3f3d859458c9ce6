"""Garbage collection of the blob store: which blobs nothing references (no artifact row, no statistics record,
no cache index entry such as a checkout snapshot), and deleting them. Kept as a `gc` audit event when it deletes."""

from __future__ import annotations

import time

from sqlalchemy import Engine, select

from ledger import events
from ledger.db import transaction
from ledger.errors import LedgerError
from ledger.models import ArtifactRow, StatisticsLayerRow
from ledger.store import ContentStore


def gc(engine: Engine, store: ContentStore, dry_run: bool = True, grace_seconds: float | None = None) -> list[str]:
    """Blobs in the store that nothing references and that were last written longer than `grace_seconds` ago
    (default: the store's own, 0 for a local directory, 1 hour for object storage).

    A writer puts its blobs before it appends the version naming them, and `put` refreshes the time of a blob
    that is already there. So a blob a concurrent writer is about to reference is younger than the grace period,
    provided its round takes less than the grace period (half of it for a blob that was already in object
    storage). With a grace of 0 (a local store's default), run it when no writer works."""
    grace = store.gc_grace_seconds if grace_seconds is None else grace_seconds
    if grace < 0:
        raise LedgerError(f"--grace {grace:g}: must not be negative")
    # References first, then the listing: a blob put after the references were read is younger than the grace
    # period when its time is looked at.
    with transaction(engine) as session:
        referenced = set(session.scalars(select(ArtifactRow.sha256)))
        referenced |= set(session.scalars(select(StatisticsLayerRow.sha256)))
    referenced |= store.indexed_blobs()

    def old_enough(written: float | None) -> bool:
        return written is not None and written <= time.time() - grace

    unreferenced = [sha for sha, written in store.iter_blobs() if sha not in referenced and old_enough(written)]
    if not dry_run:
        deleted = []
        for sha in unreferenced:
            if old_enough(store.modified(sha)):  # not put again since the listing
                store.delete(sha)
                deleted.append(sha)
        unreferenced = deleted
        events.record_audit(engine, "gc", "editledger", None, {"deleted": unreferenced, "grace_seconds": grace})
    return unreferenced
