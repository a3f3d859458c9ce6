"""Edit rounds (`editledger edit`): requests checked before any model loads, then applied in rounds from the
branch head's state, each round's blobs stored and its version appended (retried on a moved head, all or nothing
with `--strict`, never half-recorded on SIGINT). A round's blobs (`round_artifacts`) are also what a replay
records."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from editor.artifacts import changes_to_tensors, put_tensors
from editor.bases import base_directory, dtype_of
from editor.engine import EditState, RoundResult, outcome_warnings
from editor.errors import EditInterrupted, LifecycleError, UnsuccessfulEditError
from editor.hashing import state_hash
from editor.hparams import EditHparams, check_overrides
from editor.keys import check_requests, validate_known_tokens
from editor.model import LoadedModel, check_model_directory
from editor.rounds import METHODS, run_round
from editor.scoring import live_requests, scores
from editor.session import Session, author_name
from editor.versions import environment, state_at
from editor.zstar import zstar_memory_bytes
from ledger.errors import ConflictError
from ledger.faults import fault_point
from ledger.infos import VersionInfo
from ledger.records import ArtifactRef, EditRequest, RequestEntry, VersionDraft


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """SIGINT held back until the block ends, so that a round is either recorded and reported, or neither.
    (Only the main thread can install signal handlers; elsewhere the block runs as it is.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt


def edit(session: Session, requests: Sequence[EditRequest], *, branch: str = "main", method: str = "nse",
         batch_size: int = 20, author: str | None = None, reason: str = "", evaluate: bool = False,
         corpus: Path | None = None, overrides: dict | None = None, retry: int = 0,
         strict: bool = False) -> list[VersionInfo]:
    """Apply requests in rounds of `batch_size`; each round is one recorded version.

    A request that did not take, and every request of a round that changed no weight, gets a warning line
    (`warn`); `strict` records nothing when there is any (UnsuccessfulEditError). SIGINT stops the edit with
    EditInterrupted, naming the rounds already recorded; the interrupted round is not recorded."""
    head = session.ledger.resolve(branch)
    overrides = _check_edit_input(session, requests, head.base_model, method, batch_size, overrides or {})
    author = author or author_name()
    recorded: list[VersionInfo] = []
    batches = [list(requests[i:i + batch_size]) for i in range(0, len(requests), batch_size)]
    try:
        state, loaded, context_refs = state_at(session, head.commit_hash, method, None, corpus, overrides)
        needed = max(estimate_round_bytes(loaded, state.hparams, batch, state.templates) for batch in batches)
        free = available_memory_bytes()
        if needed > free:
            raise LifecycleError(
                f"--batch-size {len(batches[0])}: a round needs about {_gib(needed)}, only {_gib(free)} "
                f"is available; use a smaller batch"
            )
        earlier = live_requests(session, head.commit_hash) if evaluate else []
        if strict:
            return _edit_strict(session, state, loaded, context_refs, batches, branch, head.commit_hash, method,
                                author, reason, evaluate, earlier, recorded)
        current = head.commit_hash
        for number, batch in enumerate(batches, 1):
            session.say(f"round {number}/{len(batches)}: {len(batch)} requests with {method}")
            attempts = 0
            while True:
                draft = _edit_draft(session, state, loaded, context_refs, batch, current, method, author, reason,
                                    [*earlier, *batch] if evaluate else None)
                try:
                    _append_reported(session, draft, branch, current, recorded)
                    break
                except ConflictError as error:
                    attempts += 1
                    if attempts > retry:
                        raise error from None
                    current = session.ledger.resolve(branch).commit_hash
                    session.say(f"branch {branch!r} moved; retrying on {current[:12]}")
                    state, loaded, context_refs = state_at(session, current, method, None, corpus, overrides)
                    earlier = live_requests(session, current) if evaluate else []
            current = recorded[-1].commit_hash
            earlier += batch
    except KeyboardInterrupt:
        raise EditInterrupted(recorded) from None
    return recorded


def _edit_strict(session: Session, state: EditState, loaded: LoadedModel, context_refs: list[ArtifactRef],
                 batches: list[list[EditRequest]], branch: str, head: str, method: str, author: str,
                 reason: str, evaluate: bool, earlier: list[EditRequest],
                 recorded: list[VersionInfo]) -> list[VersionInfo]:
    """Every round computed first; recorded only when none has a warning."""
    drafts, warnings = [], 0
    for number, batch in enumerate(batches, 1):
        session.say(f"round {number}/{len(batches)}: {len(batch)} requests with {method}")
        before = len(session.round_warnings)
        drafts.append(_edit_draft(session, state, loaded, context_refs, batch, head, method, author, reason,
                                  [*earlier, *batch] if evaluate else None))
        warnings += len(session.round_warnings) - before
        earlier += batch
    if warnings:
        raise UnsuccessfulEditError(
            f"--strict: {warnings} of {sum(map(len, batches))} requests did not take or changed no weight "
            f"(warnings above); nothing recorded"
        )
    current = head
    for draft in drafts:
        _append_reported(session, draft, branch, current, recorded)
        current = recorded[-1].commit_hash
    return recorded


def _append_reported(session: Session, draft: VersionDraft, branch: str, head: str,
                     recorded: list[VersionInfo]) -> None:
    """Append a round's version; SIGINT waits until it is in `recorded` (or refused), never between."""
    with interrupts_deferred():
        recorded.append(session.ledger.append_version(draft, branch, expected_head=head))


def _check_edit_input(session: Session, requests: Sequence[EditRequest], base_name: str, method: str,
                      batch_size: int, overrides: dict) -> dict:
    """What can be refused before any model loads: method, batch size, `--set` values, and the requests
    with the base's tokenizer alone (prompts, subjects found, targets not the unknown token)."""
    # transformers is imported on first use: it takes seconds, and many commands never read a tokenizer.
    from transformers import AutoTokenizer

    if not requests:
        raise LifecycleError("no requests to edit")
    if method not in METHODS:
        raise LifecycleError(f"--method {method!r}: unknown method; choose one of {', '.join(METHODS)}")
    if batch_size < 1:
        raise LifecycleError(f"--batch-size {batch_size}: must be at least 1")
    if method == "rome" and min(batch_size, len(requests)) > 1:
        raise LifecycleError(f"--batch-size {batch_size}: rome edits one request per round; use --batch-size 1")
    config = session.ledger.base_model(base_name).config
    n_layers = config.get("num_hidden_layers", config.get("n_layer"))
    checked = check_overrides(overrides, n_layers if isinstance(n_layers, int) else None)
    dtype_of(session, base_name)
    tokenizer = AutoTokenizer.from_pretrained(check_model_directory(base_directory(session, base_name)),
                                              local_files_only=True)
    check_requests(tokenizer, requests)
    validate_known_tokens(tokenizer, requests)
    return checked


def _edit_draft(session: Session, state: EditState, loaded: LoadedModel, context_refs: list[ArtifactRef],
                batch: list[EditRequest], head: str, method: str, author: str, reason: str,
                scored: list[EditRequest] | None) -> VersionDraft:
    """One round computed on the in-memory model and its version drafted (its blobs stored first)."""
    result = run_round(state, batch, method)
    for line in outcome_warnings(result, batch):
        session.round_warnings.append(line)
        session.warn(f"warning: {line}")
    fault_point("edit.round_computed")
    artifacts = round_artifacts(session, result, context_refs)
    draft = VersionDraft(
        kind="edit", base_model=session.ledger.resolve(head).base_model, state_hash=state_hash(loaded.model),
        author=author, reason=reason, method=method, hparams=result.hparams,
        environment=environment(session, loaded), requests=[RequestEntry(r) for r in batch],
        footprint=result.footprint, outcomes=result.outcomes, artifacts=artifacts,
    )
    if scored is not None:
        draft.scores = scores(loaded, scored)
    fault_point("edit.artifacts_stored")
    return draft


def round_artifacts(session: Session, result: RoundResult, context_refs: list[ArtifactRef]) -> list[ArtifactRef]:
    """Blobs of one round, stored before its version is appended: the change, the keys, the z*."""
    artifacts = [
        put_tensors(session.ledger.store, "delta", changes_to_tensors(result.changes)),
        keys_artifact(session, 0, result),
        *context_refs,
    ]
    if result.zstar:
        artifacts.append(put_tensors(session.ledger.store, "zstar", result.zstar))
    return artifacts


def keys_artifact(session: Session, index: int, result: RoundResult) -> ArtifactRef:
    """The keys a round added to Cp, stored as role `keys.<index>` (a revert stores one per replayed round)."""
    return put_tensors(session.ledger.store, f"keys.{index}", {f"L{layer}": k for layer, k in result.keys.items()})


def _gib(size: int) -> str:
    return f"{size / 2**30:.3g} GiB"


def available_memory_bytes() -> int:
    """Memory this process may still use: `EDITLEDGER_MAX_MEMORY` (bytes) if set, else MemAvailable."""
    if os.environ.get("EDITLEDGER_MAX_MEMORY"):
        return int(os.environ["EDITLEDGER_MAX_MEMORY"])
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def estimate_round_bytes(loaded: LoadedModel, hp: EditHparams, requests: Sequence[EditRequest],
                         templates: Sequence[str]) -> int:
    """A generous upper bound of the extra memory one round of `requests` needs (measured against the peak RSS of
    rounds: docs/design-notes.md, "Memory of a round").

    z* runs over all the round's requests at once (`zstar_memory_bytes`, from the sizes of its actual batch): the
    largest part. Every other forward reads under no_grad, block by block, over fewer sequences. Besides: the
    rewrite weights copied while rewound (every block's) and before the round (the edited ones); per edited layer
    Cp (float64 d_ff²) and AlphaEdit's projector, kept; one layer's solve at a time (C0 in float64, M, the
    solve's own copies: 5 d_ff²) and the keys."""
    arch, n = loaded.arch, len(requests)
    weights = (arch.n_layers + len(hp.layers)) * arch.d_model * arch.d_ff * 4
    kept = len(hp.layers) * (2 * arch.d_ff * arch.d_ff * 8 + 4 * arch.d_ff * n * 8 + 2 * arch.d_model * n * 8)
    solve = 5 * arch.d_ff * arch.d_ff * 8
    return zstar_memory_bytes(loaded, requests, templates, hp.z_layer) + weights + kept + solve
