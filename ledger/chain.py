"""The hash chain. A version's commit hash covers its parent's commit hash and everything it records, so
changing any recorded row breaks verification from that version on.

    commit_hash = sha256(parent_commit_hash_or_empty || canonical_json(payload))

The payload is built by ONE function from a `ChainRecord`; the append path builds that record from the draft
and the verify path builds it from the rows, so the two cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from ledger.errors import LedgerError
from ledger.records import (
    FootprintLayer,
    RequestOutcome,
    RevertRecord,
    RoundRecord,
    VersionDraft,
    canonical_json,
)


@dataclass(frozen=True)
class ChainRecord:
    """What a version records, normalised: JSON values, finite floats, request keys from content."""

    kind: str
    base_state_hash: str
    author: str
    reason: str
    created_at: str
    method: str | None
    hparams: dict[str, Any]
    environment: dict[str, Any]
    state_hash: str
    extra: dict[str, Any]
    requests: tuple[tuple[str, str], ...]  # (request_key, role) in order
    footprint: tuple[FootprintLayer, ...]
    outcomes: tuple[RequestOutcome, ...]
    artifacts: tuple[tuple[str, str], ...]  # (role, sha256) in order
    revert: RevertRecord | None = None  # typed revert record (reverts recorded before schema 0002 use `extra`)


def json_value(value: Any, what: str) -> Any:
    """`value` as JSON gives it back (tuples become lists); LedgerError naming `what` if not JSON-able."""
    try:
        return json.loads(canonical_json(value))
    except (TypeError, ValueError) as error:
        raise LedgerError(
            f"{what} is not JSON-able (finite numbers, strings, lists, dicts only): {error}"
        ) from None


def finite(value: float, what: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise LedgerError(f"{what} is {number}: only finite numbers can be recorded")
    return number


def exact_float(value: float) -> str:
    """A float's exact, platform-independent spelling (no rounding in the hash)."""
    return float(value).hex()


def payload(record: ChainRecord) -> dict[str, Any]:
    fields = {
        "kind": record.kind,
        "base_state_hash": record.base_state_hash,
        "author": record.author,
        "reason": record.reason,
        "created_at": record.created_at,
        "method": record.method,
        "hparams": record.hparams,
        "environment": record.environment,
        "state_hash": record.state_hash,
        "extra": record.extra,
        "requests": [[key, role] for key, role in record.requests],
        "footprint": [
            [f.layer, f.pass_index, list(f.neurons), exact_float(f.delta_norm)] for f in record.footprint
        ],
        "outcomes": [outcome_entry(o) for o in record.outcomes],
        "artifacts": [[role, sha] for role, sha in record.artifacts],
    }
    if record.revert is not None:  # absent for every other version, so older commit hashes stay valid
        fields["revert"] = {
            "anchor": record.revert.anchor,
            "reverted_version": record.revert.reverted_version,
            "rounds": [[r.source, list(r.request_keys)] for r in record.revert.rounds],
        }
    return fields


def outcome_entry(outcome: RequestOutcome) -> list[Any]:
    """An outcome in the payload; the measures of whether it took are appended only when it has them, so the
    versions recorded before they existed keep their commit hashes."""
    entry: list[Any] = [outcome.request_key, exact_float(outcome.residual_before),
                        exact_float(outcome.residual_after), outcome.status]
    if outcome.measured:
        entry.append([v if v is None or isinstance(v, bool) else exact_float(v) for v in outcome.measures()])
    return entry


def commit_hash(parent_hash: str | None, record: ChainRecord) -> str:
    digest = hashlib.sha256((parent_hash or "").encode())
    digest.update(canonical_json(payload(record)).encode())
    return digest.hexdigest()


def record_from_draft(draft: VersionDraft, base_state_hash: str, created_at: str) -> ChainRecord:
    """The append path: normalise what the caller drafted exactly as the rows will give it back."""
    return ChainRecord(
        kind=draft.kind,
        base_state_hash=base_state_hash,
        author=draft.author,
        reason=draft.reason,
        created_at=created_at,
        method=draft.method,
        hparams=json_value(draft.hparams, "draft hparams"),
        environment=json_value(draft.environment, "draft environment"),
        state_hash=draft.state_hash,
        extra=json_value(draft.extra, "draft extra"),
        requests=tuple((entry.request.request_key, entry.role) for entry in draft.requests),
        footprint=tuple(
            FootprintLayer(
                int(f.layer),
                int(f.pass_index),
                tuple(int(n) for n in f.neurons),
                finite(f.delta_norm, f"footprint layer {f.layer} pass {f.pass_index} delta_norm"),
            )
            for f in draft.footprint
        ),
        outcomes=tuple(normalised_outcome(o) for o in draft.outcomes),
        artifacts=tuple((a.role, a.sha256) for a in draft.artifacts),
        revert=None
        if draft.revert is None
        else RevertRecord(
            anchor=draft.revert.anchor,
            rounds=tuple(RoundRecord(r.source, tuple(r.request_keys)) for r in draft.revert.rounds),
            reverted_version=draft.revert.reverted_version,
        ),
    )


def normalised_outcome(outcome: RequestOutcome) -> RequestOutcome:
    """Finite floats and plain bools, as the rows give them back."""
    what = f"outcome {outcome.request_key[:12]}"

    def number(value: float | None, name: str) -> float | None:
        return None if value is None else finite(value, f"{what} {name}")

    return RequestOutcome(
        outcome.request_key,
        finite(outcome.residual_before, f"{what} residual_before"),
        finite(outcome.residual_after, f"{what} residual_after"),
        outcome.status,
        number(outcome.zstar_loss, "zstar_loss"),
        number(outcome.zstar_target_prob, "zstar_target_prob"),
        number(outcome.target_prob_before, "target_prob_before"),
        number(outcome.target_prob_after, "target_prob_after"),
        None if outcome.already_true is None else bool(outcome.already_true),
        None if outcome.took is None else bool(outcome.took),
    )
