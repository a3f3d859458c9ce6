"""Auditor's queries over an open session: one request's whole story, the edits in effect at a version, the latest
scores of a history. Plain records out (see `ledger.infos`), no torch."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger import queries
from ledger.infos import LiveEdit, RequestDetail, RequestEvent, RequestScores, VersionInfo
from ledger.models import (
    BranchRow,
    EditRequestRow,
    RequestOutcomeRow,
    ScoreRow,
    VersionRequestRow,
    VersionRow,
)
from ledger.records import Score
from ledger.scores import score_of_row


def score_name(suite: str | None, metric: str) -> str:
    return f"{suite}/{metric}" if suite else metric


def request_detail(session: Session, request_id: int) -> RequestDetail:
    request = queries.requests_by_id(session, [request_id])[request_id]
    outcomes = {
        o.version_id: o
        for o in session.scalars(select(RequestOutcomeRow).where(RequestOutcomeRow.request_id == request_id))
    }
    touched = session.execute(
        select(VersionRequestRow.role, VersionRow)
        .join(VersionRow, VersionRow.id == VersionRequestRow.version_id)
        .where(VersionRequestRow.request_id == request_id)
        .order_by(VersionRow.id, VersionRequestRow.position)
    ).all()
    events = []
    for role, version in touched:
        outcome = outcomes.get(version.id)
        events.append(
            RequestEvent(
                commit_hash=version.commit_hash,
                role=role,
                kind=version.kind,
                author=version.author,
                created_at=version.created_at,
                reason=version.reason,
                method=version.method,
                status=outcome.status if outcome else None,
                residual_before=outcome.residual_before if outcome else None,
                residual_after=outcome.residual_after if outcome else None,
            )
        )
    by_version: dict[int, dict[str, float]] = defaultdict(dict)
    seen: dict[int, tuple[str, str]] = {}
    for score, commit in session.execute(
        select(ScoreRow, VersionRow.commit_hash)
        .join(VersionRow, VersionRow.id == ScoreRow.version_id)
        .where(ScoreRow.request_id == request_id)
        .order_by(ScoreRow.version_id, ScoreRow.id)
    ):
        by_version[score.version_id][score_name(score.suite, score.metric)] = score.value
        seen.setdefault(score.version_id, (commit, score.created_at))
    scores = [RequestScores(seen[v][0], seen[v][1], values) for v, values in by_version.items()]
    live_on = []
    for name, head in session.execute(select(BranchRow.name, BranchRow.head_version_id).order_by(BranchRow.name)):
        if request.request_key in live_requests(session, queries.ancestry_ids(session, head)):
            live_on.append(name)
    return RequestDetail(request.request_key, request, events, scores, live_on)


def live_requests(session: Session, chain: Sequence[int]) -> dict[str, int]:
    """Request key -> id of the version that put it in effect, after a chain of versions (root first).

    Edited (and replayed onto a new base) requests come in with their version; a revert removes its reverted
    requests and keeps the ones it replays attributed to the round that first made them."""
    memberships = session.execute(
        select(VersionRequestRow.version_id, VersionRequestRow.role, EditRequestRow.request_key)
        .join(EditRequestRow, EditRequestRow.id == VersionRequestRow.request_id)
        .where(VersionRequestRow.version_id.in_(list(chain)))
        .order_by(VersionRequestRow.version_id, VersionRequestRow.position)
    ).all()
    by_version: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for version_id, role, key in memberships:
        by_version[version_id].append((role, key))
    live: dict[str, int] = {}
    for version_id in chain:
        for role, key in by_version[version_id]:
            if role == "reverted":
                live.pop(key, None)
            else:
                live.setdefault(key, version_id)
    return live


def live_edits(session: Session, version_id: int) -> list[LiveEdit]:
    """The requests in effect at a version, in the order they were first made."""
    live = live_requests(session, queries.ancestry_ids(session, version_id))
    versions = queries.versions_by_id(session, sorted(set(live.values())))
    ids = dict(
        session.execute(
            select(EditRequestRow.request_key, EditRequestRow.id).where(EditRequestRow.request_key.in_(list(live)))
        ).all()
    ) if live else {}
    requests = queries.requests_by_id(session, ids.values())
    edits = []
    for key, made_in in live.items():
        version: VersionInfo = versions[made_in]
        edits.append(
            LiveEdit(
                request_key=key,
                request=requests[ids[key]],
                commit_hash=version.commit_hash,
                kind=version.kind,
                author=version.author,
                created_at=version.created_at,
                reason=version.reason,
                method=version.method,
            )
        )
    return edits


def latest_scores(session: Session, version_id: int) -> tuple[str | None, list[Score]]:
    """The summary scores (no request) of the newest version in the history of `version_id` that has any."""
    chain = queries.ancestry_ids(session, version_id)
    scored = session.scalar(
        select(ScoreRow.version_id)
        .where(ScoreRow.version_id.in_(chain), ScoreRow.request_id.is_(None))
        .order_by(ScoreRow.version_id.desc())
        .limit(1)
    )
    if scored is None:
        return None, []
    rows = session.scalars(
        select(ScoreRow).where(ScoreRow.version_id == scored, ScoreRow.request_id.is_(None)).order_by(ScoreRow.id)
    )
    commit = session.scalar(select(VersionRow.commit_hash).where(VersionRow.id == scored))
    return commit, [score_of_row(row, None) for row in rows]
