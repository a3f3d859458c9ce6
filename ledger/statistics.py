"""Statistics: which corpus, sample count and dtype each base model's C0 blobs (per layer) came from. Recorded
once per distinct record (the same record twice is kept once), listed newest first; the blobs themselves are in
the store, and `ledger.gc` keeps them."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ledger.base_models import base_model_row
from ledger.db import write_transaction
from ledger.errors import BlobMissingError, InvalidBlobAddressError, LedgerError
from ledger.infos import StatisticsInfo
from ledger.models import BaseModelRow, StatisticsLayerRow, StatisticsRow
from ledger.store import ContentStore, validate_sha
from ledger.values import checked_time


def record_statistics(
    engine: Engine,
    store: ContentStore,
    base_model: str,
    corpus_path: str,
    corpus_sha256: str,
    sample_count: int,
    dtype: str,
    blobs: dict[int, str],
    created_at: str | None = None,
) -> StatisticsInfo:
    """Record which corpus, samples and dtype a base model's C0 blobs (layer -> sha256) came from. The blobs must
    be in the store first. The same record twice is kept once (the first one is returned)."""
    created_at = checked_time(created_at)
    for layer, sha in blobs.items():
        try:
            validate_sha(sha)
        except InvalidBlobAddressError as error:
            raise LedgerError(f"statistics of layer {layer}: {error}") from None
        if not store.has(sha):
            raise BlobMissingError(f"statistics of layer {layer}: blob {sha} is not in the store (put it first)")
    validate_sha(corpus_sha256)
    wanted = StatisticsInfo(
        base_model,
        str(corpus_path),
        corpus_sha256,
        int(sample_count),
        dtype,
        {int(k): v for k, v in sorted(blobs.items())},
        created_at,
    )
    with write_transaction(engine) as session:
        base = base_model_row(session, base_model)
        for known in _of_base(session, base):
            if replace(known, created_at=created_at) == wanted:
                return known
        row = StatisticsRow(
            base_model_id=base.id,
            corpus_path=wanted.corpus_path,
            corpus_sha256=corpus_sha256,
            sample_count=wanted.sample_count,
            dtype=dtype,
            created_at=created_at,
        )
        session.add(row)
        session.flush()
        session.add_all(
            StatisticsLayerRow(statistics_id=row.id, layer=layer, sha256=sha) for layer, sha in wanted.blobs.items()
        )
    return wanted


def statistics(session: Session, base_model: str) -> list[StatisticsInfo]:
    """The C0 statistics recorded for a base model, newest first."""
    return _of_base(session, base_model_row(session, base_model))


def _of_base(session: Session, base: BaseModelRow) -> list[StatisticsInfo]:
    rows = session.scalars(
        select(StatisticsRow).where(StatisticsRow.base_model_id == base.id).order_by(StatisticsRow.id.desc())
    ).all()
    blobs: dict[int, dict[int, str]] = defaultdict(dict)
    for statistics_id, layer, sha in session.execute(
        select(StatisticsLayerRow.statistics_id, StatisticsLayerRow.layer, StatisticsLayerRow.sha256)
        .where(StatisticsLayerRow.statistics_id.in_([r.id for r in rows]))
        .order_by(StatisticsLayerRow.statistics_id, StatisticsLayerRow.layer)
    ):
        blobs[statistics_id][layer] = sha
    return [
        StatisticsInfo(base.name, r.corpus_path, r.corpus_sha256, r.sample_count, r.dtype, blobs[r.id], r.created_at)
        for r in rows
    ]
