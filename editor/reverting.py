"""Reverting (`editledger revert`): the wanted history (the branch's rounds without the reverted requests, or for
a revert of a revert, with the requests it removed back in their rounds), its anchor (the latest ancestor whose
rounds are the longest prefix of it), the rounds after the anchor replayed, and one revert version appended."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from editor.artifacts import changes_from_tensors, changes_to_tensors, get_tensors, put_tensors
from editor.editing import keys_artifact
from editor.engine import RoundResult, apply_changes, diff_changes, rewrite_weights_copy
from editor.errors import LifecycleError
from editor.hashing import state_hash
from editor.model import LoadedModel
from editor.replaying import replay_from
from editor.session import Session, author_name
from editor.versions import checkout_model, environment, role
from ledger.errors import LedgerError
from ledger.faults import fault_point
from ledger.history import Lineage, Round
from ledger.infos import VersionInfo
from ledger.records import EditRequest, FootprintLayer, RequestEntry, RevertRecord, VersionDraft

REWIND_LIMIT = 8  # a revert that replays nothing rewinds the head's model over at most this many versions


def revert(session: Session, target: str, *, branch: str = "main", author: str | None = None,
           reason: str = "") -> VersionInfo:
    """Append a version whose model is the replay of the wanted history: the branch's rounds without `target`
    (a request, or the version that applied a round), or, when `target` is a revert, with the requests it
    removed back in their rounds (as `git revert` of a revert). The replay starts from the anchor, the latest
    ancestor whose rounds are the longest prefix of the wanted history, and computes every round after it."""
    head = session.ledger.resolve(branch)
    lineage = session.ledger.lineage(head.commit_hash)
    wanted, reverted, undone = _wanted_history(session, target, lineage)
    anchor, kept = lineage.anchor(wanted)
    replayed = wanted[kept:]
    session.say(f"revert: replaying {len(replayed)} rounds from {anchor[:12]}")
    head_model, _ = checkout_model(session, head.commit_hash)
    before = rewrite_weights_copy(head_model)
    if replayed:
        loaded, context_refs, results = replay_from(session, anchor, replayed, recorded_in=head.commit_hash)
    else:  # the wanted history is an ancestor's: its recorded model, nothing to compute
        loaded, context_refs, results = _rewound(session, head_model, head.commit_hash, anchor), [], []
    fault_point("revert.replayed")
    artifacts = [put_tensors(session.ledger.store, "delta", changes_to_tensors(diff_changes(loaded.model, before)))]
    artifacts += [keys_artifact(session, index, result) for index, result in enumerate(results)]
    artifacts.extend(context_refs)
    entries = [RequestEntry(request, "reverted") for request in reverted]
    entries += [RequestEntry(r, "replayed") for round_ in replayed for r in round_.requests]
    draft = VersionDraft(
        kind="revert", base_model=head.base_model, state_hash=state_hash(loaded.model),
        author=author or author_name(), reason=reason, method=replayed[0].method if replayed else None,
        hparams=replayed[0].hparams if replayed else {}, environment=environment(session, loaded),
        requests=entries, footprint=_renumbered_passes(results),
        outcomes=[o for result in results for o in result.outcomes], artifacts=artifacts,
        revert=RevertRecord(anchor=anchor, rounds=tuple(r.record() for r in replayed), reverted_version=undone),
    )
    fault_point("revert.artifacts_stored")
    info = session.ledger.append_version(draft, branch, expected_head=head.commit_hash)
    live = {q.request_key for round_ in wanted for q in round_.requests}
    restored = sorted(live - {q.request_key for q in lineage.live_requests()})
    session.ledger.record_audit("revert", draft.author, info.commit_hash, {
        "target": target, "reverted": [r.request_key for r in reverted], "restored": restored,
        "anchor": anchor, "replayed_rounds": len(replayed),
    })
    return info


def _rewound(session: Session, loaded: LoadedModel, head: str, ancestor: str) -> LoadedModel:
    """The model of `ancestor`, from the model of `head` (changed in place): when only a few versions lie
    between them, write back the old values of their recorded changes, newest first (cheaper than a checkout
    of a version that has no snapshot); checked against `ancestor`'s recorded state hash."""
    history = session.ledger.ancestry_artifacts(head)
    commits = [version.commit_hash for version, _ in history]
    after = history[commits.index(ancestor) + 1:]
    if len(after) > REWIND_LIMIT:
        return checkout_model(session, ancestor)[0]
    for _, artifacts in reversed(after):
        delta = role(artifacts, "delta")
        if delta is not None:
            changes = changes_from_tensors(get_tensors(session.ledger.store, delta.sha256))
            apply_changes(loaded.model, [replace(c, new=c.old) for c in changes.values()])
    if state_hash(loaded.model) != history[commits.index(ancestor)][0].state_hash:
        return checkout_model(session, ancestor)[0]  # a change that does not undo exactly: rebuild and verify
    return loaded


def _wanted_history(session: Session, target: str,
                    lineage: Lineage) -> tuple[list[Round], list[EditRequest], str | None]:
    """(wanted rounds, requests removed, the revert undone or None) for reverting `target` at the lineage's
    head."""
    rounds = lineage.rounds()
    try:
        version = session.ledger.resolve(target)
    except LedgerError:
        version = None
    if version is not None and version.kind == "revert" and version.commit_hash in lineage:
        return _restored_history(lineage, version.commit_hash), [], version.commit_hash
    by_source = {r.source: r for r in rounds}
    if version is not None and version.commit_hash in by_source:
        removed = set(by_source[version.commit_hash].request_keys)
    else:
        try:
            key = session.ledger.request(target).request.request_key
        except LedgerError:
            if version is None:
                raise
            raise LifecycleError(
                f"version {target!r}: its round is not part of the branch's current history"
            ) from None
        if not any(key in r.request_keys for r in rounds):
            raise LifecycleError(f"request {target!r} is not part of the branch's current history")
        removed = {key}
    reverted = [q for r in rounds for q in r.requests if q.request_key in removed]
    wanted = [r.without(removed) for r in rounds]
    return [r for r in wanted if r.requests], reverted, None


def _restored_history(lineage: Lineage, undone: str) -> list[Round]:
    """The head's rounds with the requests that revert `undone` removed put back in their original rounds
    (rounds keep the order in which their versions first applied them)."""
    step = lineage.step(undone)
    removed = set(step.reverted)
    if not removed:
        raise LifecycleError(f"revert {undone[:12]} removed no request: nothing to restore")
    source_of = {q.request_key: r.source for r in lineage.rounds(step.version.parent_hash) for q in r.requests}
    rounds = lineage.rounds()
    live = {q.request_key for q in lineage.live_requests()}
    restore = {key: source_of[key] for key in removed if key in source_of and key not in live}
    if not restore:
        raise LifecycleError(f"revert {undone[:12]}: the requests it removed are live again; nothing to restore")
    keep = {r.source: set(r.request_keys) for r in rounds}
    for key, source in restore.items():
        keep.setdefault(source, set()).add(key)
    wanted = []
    for source in sorted(keep, key=lambda commit: lineage.step(commit).version.depth):
        own = lineage.own_round(source)
        wanted.append(own.without({q.request_key for q in own.requests} - keep[source]))
    return wanted


def _renumbered_passes(results: Sequence[RoundResult]) -> list[FootprintLayer]:
    """A revert replays several rounds in one version: number their passes one after another."""
    footprint: list[FootprintLayer] = []
    offset = 0
    for result in results:
        passes = sorted({f.pass_index for f in result.footprint})
        for f in result.footprint:
            footprint.append(replace(f, pass_index=offset + passes.index(f.pass_index)))
        offset += len(passes)
    return footprint
