"""A version's history as *rounds*, read in one ancestry walk.

A round is (requests, method, hyperparameters, the version that first applied them). An edit (or a replay onto
another base) appends its own round to its parent's rounds. A revert's model is its *anchor*'s model (an
ancestor) plus the rounds it replayed, so its rounds are the anchor's rounds followed by those. This module is the
one definition of a version's rounds and live requests: the lifecycle's revert, replay and Cp rebuild, and the
ledger's `diff`, all read it.

Every ancestor's rounds are kept as a shared linked list (a version points at the node of the version it
continues), and each distinct list of rounds gets a small integer (interned as (previous id, round)), so the
rounds of any ancestor, the longest prefix of a wanted history that some ancestor has, and the live requests cost
time linear in the ancestry, never quadratic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger import queries
from ledger.errors import LedgerError
from ledger.infos import VersionInfo
from ledger.models import VersionRequestRow
from ledger.records import EditRequest, RoundRecord

RoundIdentity = tuple[str, tuple[str, ...]]


@dataclass(frozen=True)
class Round:
    """One edit round of a history: `source` is the commit of the version that first applied it."""

    source: str
    requests: tuple[EditRequest, ...]
    method: str
    hparams: dict[str, Any]

    @property
    def request_keys(self) -> tuple[str, ...]:
        return tuple(r.request_key for r in self.requests)

    @property
    def identity(self) -> RoundIdentity:
        return self.source, self.request_keys

    def without(self, request_keys: set[str]) -> Round:
        kept = tuple(r for r in self.requests if r.request_key not in request_keys)
        return Round(self.source, kept, self.method, self.hparams)

    def record(self) -> RoundRecord:
        return RoundRecord(self.source, self.request_keys)


@dataclass(frozen=True)
class Step:
    """How one version's model follows from an earlier one: the model of `start` (its parent, or a revert's
    anchor; None for a base) plus `rounds`, computed in order."""

    version: VersionInfo
    start: str | None
    rounds: tuple[Round, ...]
    reverted: tuple[str, ...] = ()  # request keys a revert removed
    reverted_version: str | None = None  # a revert of a revert: the revert it undoes


class _Node:
    """One list of rounds: `previous`'s rounds plus `round` (the empty list has neither)."""

    __slots__ = ("identity_id", "length", "previous", "round")

    def __init__(self, previous: _Node | None, round_: Round | None, length: int, identity_id: int) -> None:
        self.previous, self.round, self.length, self.identity_id = previous, round_, length, identity_id


class Lineage:
    """The rounds of a version and of every one of its ancestors (`steps`: root first, the version last)."""

    def __init__(self, steps: Sequence[Step]) -> None:
        if not steps:
            raise LedgerError("a lineage needs at least its base version")
        self.steps = list(steps)
        self._by_commit = {step.version.commit_hash: step for step in self.steps}
        self._interned: dict[tuple[int, RoundIdentity], int] = {}
        empty = _Node(None, None, 0, 0)
        self._nodes: dict[str, _Node] = {}
        for step in self.steps:
            if step.start is None:
                node = empty
            elif step.start in self._nodes:
                node = self._nodes[step.start]
            else:
                raise LedgerError(
                    f"version {step.version.commit_hash[:12]} continues {step.start[:12]}, "
                    "which is not one of its ancestors"
                )
            for round_ in step.rounds:
                key = (node.identity_id, round_.identity)
                identity_id = self._interned.setdefault(key, len(self._interned) + 1)
                node = _Node(node, round_, node.length + 1, identity_id)
            self._nodes[step.version.commit_hash] = node

    @property
    def head(self) -> VersionInfo:
        return self.steps[-1].version

    def step(self, commit: str) -> Step:
        try:
            return self._by_commit[commit]
        except KeyError:
            raise LedgerError(f"version {commit[:12]} is not in the history of {self.head.commit_hash[:12]}") from None

    def __contains__(self, commit: str) -> bool:
        return commit in self._by_commit

    def rounds(self, commit: str | None = None) -> list[Round]:
        """The rounds that produce version `commit` (default: the head) from its base, in order."""
        node = self._nodes[self.step(commit or self.head.commit_hash).version.commit_hash]
        found: list[Round] = []
        while node.round is not None:
            found.append(node.round)
            node = node.previous  # type: ignore[assignment]
        return found[::-1]

    def live_requests(self, commit: str | None = None) -> list[EditRequest]:
        """The requests in effect at `commit` (default: the head), in the order their rounds applied them."""
        return [r for round_ in self.rounds(commit) for r in round_.requests]

    def own_round(self, source: str) -> Round:
        """The round that version `source` first applied, with all of its requests."""
        step = self.step(source)
        if step.version.kind in ("base", "revert") or len(step.rounds) != 1:
            raise LedgerError(f"version {source[:12]} ({step.version.kind}) applied no round of its own")
        return step.rounds[0]

    def anchor(self, wanted: Sequence[Round]) -> tuple[str, int]:
        """(commit, n): the latest ancestor whose rounds are the longest prefix of `wanted` (n rounds long).
        The base always qualifies with n = 0."""
        length_of = {0: 0}
        identity_id = 0
        for length, round_ in enumerate(wanted, 1):
            found = self._interned.get((identity_id, round_.identity))
            if found is None:
                break
            identity_id = found
            length_of[identity_id] = length
        best, best_length = self.steps[0].version.commit_hash, -1
        for step in self.steps:
            length = length_of.get(self._nodes[step.version.commit_hash].identity_id)
            if length is not None and length >= best_length:
                best, best_length = step.version.commit_hash, length
        return best, best_length


def load_lineage(session: Session, head_id: int) -> Lineage:
    """The lineage of version `head_id`: its ancestry, memberships, revert records and requests, each read in one
    statement (the requests in one per 500)."""
    chain = queries.ancestry(session, head_id)[::-1]
    ancestry = queries.ancestry_cte(head_id)
    members: dict[int, list[tuple[int, str]]] = {v.id: [] for v in chain}
    query = (
        select(VersionRequestRow.version_id, VersionRequestRow.request_id, VersionRequestRow.role)
        .join(ancestry, ancestry.c.id == VersionRequestRow.version_id)
        .order_by(VersionRequestRow.version_id, VersionRequestRow.position)
    )
    for version_id, request_id, role in session.execute(query):
        members[version_id].append((request_id, role))
    reverts = queries.revert_rows(session, lambda column: column.in_(select(ancestry.c.id)))
    request_ids = {rid for rows in members.values() for rid, _ in rows}
    request_ids |= {rid for _, _, rounds in reverts.values() for _, rids in rounds for rid in rids}
    requests = queries.requests_by_id(session, request_ids)
    by_key = {r.request_key: r for r in requests.values()}
    by_commit = {v.commit_hash: v for v in chain}

    def round_of(source: str, keys: Sequence[str]) -> Round:
        version = by_commit.get(source)
        if version is None:
            raise LedgerError(f"a revert names round source {source[:12]}, which is not one of its ancestors")
        missing = [k for k in keys if k not in by_key]
        if missing:
            raise LedgerError(f"version {source[:12]}: its replayed request {missing[0][:12]} is not recorded")
        return Round(version.commit_hash, tuple(by_key[k] for k in keys), version.method or "", version.hparams)

    steps: list[Step] = []
    for version in chain:
        memberships = members[version.id]
        reverted = tuple(requests[rid].request_key for rid, role in memberships if role == "reverted")
        if version.kind == "base":
            steps.append(Step(version, None, ()))
        elif version.kind == "revert":
            if version.id in reverts:
                anchor, reverted_version, rows = reverts[version.id]
                rounds = [round_of(source, [requests[rid].request_key for rid in rids]) for source, rids in rows]
            else:  # recorded before the typed record existed (schema 0001): anchor and rounds are in `extra`
                try:
                    anchor, reverted_version = version.extra["anchor"], None
                    rounds = [round_of(r["source"], r["request_keys"]) for r in version.extra["rounds"]]
                except (KeyError, TypeError) as error:
                    raise LedgerError(
                        f"revert {version.commit_hash[:12]} records no anchor and rounds ({error})"
                    ) from None
            steps.append(Step(version, anchor, tuple(rounds), reverted, reverted_version))
        else:
            applied = tuple(requests[rid] for rid, role in memberships if role != "reverted")
            own = (Round(version.commit_hash, applied, version.method or "", version.hparams),) if applied else ()
            steps.append(Step(version, version.parent_hash, own, reverted))
    return Lineage(steps)
