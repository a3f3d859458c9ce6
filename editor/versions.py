"""Reaching a recorded version: its model (the base plus every recorded change, checked against its state hash,
with checkout snapshots as a cache) and the engine state that editing from it starts with (Cp, C0, context
templates, cached z*, the numerics). Every operation that needs a version's model or state comes through here."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch

from editor.artifacts import changes_from_tensors, get_json, get_tensors, put_json, put_tensors
from editor.bases import corpus_for, derived_hparams, dtype_of, load_base, record_statistics
from editor.determinism import apply_determinism, environment_record, use_numerics
from editor.engine import EditState, add_keys_to_cp, apply_changes, rewrite_weights_copy
from editor.errors import HparamsError, RebuildError
from editor.hashing import root_hash, tensor_digests
from editor.hparams import EditHparams
from editor.model import LoadedModel, resolve_device
from editor.session import Session
from editor.stats import cached_second_moments
from editor.templates import SEED_WORDS, generate_context_templates
from ledger.errors import LedgerError, StoreUnavailableError
from ledger.history import Lineage
from ledger.infos import VersionInfo
from ledger.records import ArtifactRef

SNAPSHOT_INDEX = "snapshot-index"  # the store's index of checkout snapshots, by (commit, dtype)
CONTEXT_TEMPLATES = "context_templates"  # in hparams.extra: how many sampled context templates (default all 5)

History = Sequence[tuple[VersionInfo, list[ArtifactRef]]]  # versions from the base on, each with its blobs


def role(artifacts: Sequence[ArtifactRef], name: str) -> ArtifactRef | None:
    """The artifact of a version with role `name` (delta, templates, zstar, ...), if it has one."""
    return next((a for a in artifacts if a.role == name), None)


def _keys_blobs(artifacts: Sequence[ArtifactRef]) -> list[str]:
    """Blobs of the keys that a version added to Cp, in the order it added them."""
    keys = [a for a in artifacts if a.role.startswith("keys.")]
    return [a.sha256 for a in sorted(keys, key=lambda a: int(a.role.split(".")[1]))]


# ---------------------------------------------------------------- a version's model
def checkout_model(session: Session, ref: str, base_path: Path | None = None) -> tuple[LoadedModel, VersionInfo]:
    """Base weights plus the recorded changes of every ancestor, applied as exact values, then verified."""
    history = session.ledger.ancestry_artifacts(ref)
    # The base is verified first (from remembered digests while its files are unchanged), so afterwards only
    # the tensors that the recorded changes wrote need hashing.
    loaded, base_digests = load_base(session, history[0][0].base_model, base_path, verify=True)
    _apply_history(session, loaded, base_digests, history)
    return loaded, history[-1][0]


def _apply_history(session: Session, loaded: LoadedModel, base_digests: dict[str, bytes] | None,
                   history: History) -> None:
    """Write every version's recorded column values onto the base model, in order (exact values, no
    arithmetic), and check the result against the last version's state hash.

    Starts from the newest snapshot of the history when there is one. When the changes read weigh more than
    twice the tensors they wrote (one change keeps old and new values: about twice), the result is kept as the
    last version's snapshot, so that checking it (or a descendant) out again reads those tensors once instead
    of every round's change."""
    changed: set[str] = set()
    start, read_bytes = 1, 0
    for position in range(len(history) - 1, 0, -1):
        tensors = _snapshot(session, history[position][0])
        if tensors is not None:
            with torch.no_grad():
                for name, values in tensors.items():
                    loaded.model.get_parameter(name).copy_(values)
            changed |= set(tensors)
            start = position + 1
            break
    for version, artifacts in history[start:]:
        delta = role(artifacts, "delta")
        if delta is None:
            continue
        changes = changes_from_tensors(get_tensors(session.ledger.store, delta.sha256))
        try:
            apply_changes(loaded.model, changes.values())
        except (RuntimeError, IndexError) as error:
            raise RebuildError(f"version {version.commit_hash[:12]}: its recorded change does not fit the "
                               f"base model: {error}") from None
        changed |= set(changes)
        read_bytes += delta.size_bytes
    found = _state_hash_after(loaded, base_digests, changed)
    last = history[-1][0]
    if found != last.state_hash:
        raise RebuildError(
            f"version {last.commit_hash[:12]}: rebuilt state hash {found[:12]} != recorded {last.state_hash[:12]}"
        )
    written = {name: loaded.model.get_parameter(name) for name in sorted(changed)}
    if read_bytes > 2 * sum(t.numel() * t.element_size() for t in written.values()):
        try:
            snapshot = put_tensors(session.ledger.store, "snapshot", written)
            session.ledger.store.write_index(SNAPSHOT_INDEX, _snapshot_key(session, last), {
                "blob": snapshot.sha256, "commit": last.commit_hash, "state_hash": last.state_hash,
                "dtype": dtype_of(session, last.base_model),
            })
        except StoreUnavailableError:
            pass  # a snapshot is a cache: a store this machine may only read (or that failed now) skips it


def _state_hash_after(loaded: LoadedModel, base_digests: dict[str, bytes] | None, changed: set[str]) -> str:
    """The state hash of a base model whose `changed` tensors were written: only those are hashed again
    when the base's digests are known."""
    known = {n: d for n, d in (base_digests or {}).items() if n not in changed}
    return root_hash(tensor_digests(loaded.model, known))


def _snapshot_key(session: Session, version: VersionInfo) -> str:
    return hashlib.sha256(f"{version.commit_hash}:{dtype_of(session, version.base_model)}".encode()).hexdigest()


def _snapshot(session: Session, version: VersionInfo) -> dict[str, torch.Tensor] | None:
    """The written tensors of `version` kept by an earlier checkout (a cache: None when absent or broken)."""
    entry = session.ledger.store.read_index(SNAPSHOT_INDEX, _snapshot_key(session, version))
    if not entry or entry.get("state_hash") != version.state_hash:
        return None
    try:
        return get_tensors(session.ledger.store, entry["blob"])
    except (LedgerError, KeyError, TypeError, ValueError):
        return None


# ---------------------------------------------------------------- the engine state at a version
def rebuild_cp(session: Session, ref: str, lineage: Lineage | None = None,
               history: History | None = None) -> dict[int, torch.Tensor]:
    """Cp at a version: zeros plus every recorded key block of its history, in the order they were added
    (each version's keys after those of the version it continues: its parent, or a revert's anchor)."""
    lineage = lineage or session.ledger.lineage(ref)
    history = history if history is not None else session.ledger.ancestry_artifacts(lineage.head.commit_hash)
    artifacts_of = {version.commit_hash: artifacts for version, artifacts in history}
    blocks: list[list[str]] = []
    at: str | None = lineage.head.commit_hash
    while at is not None:
        blocks.append(_keys_blobs(artifacts_of[at]))
        at = lineage.step(at).start
    cp: dict[int, torch.Tensor] = {}
    for sha in (sha for block in reversed(blocks) for sha in block):
        add_keys_to_cp(cp, {int(name[1:]): keys for name, keys in get_tensors(session.ledger.store, sha).items()})
    return cp


def state_at(session: Session, ref: str, method: str, hparams: EditHparams | dict | None, corpus: Path | None,
             overrides: dict | None = None, recorded_in: str | None = None, mode: str | None = None,
             ) -> tuple[EditState, LoadedModel, list[ArtifactRef]]:
    """The model and engine state at version `ref`. Templates, C0 and cached z* are read from the history of
    `recorded_in` (default `ref`): a revert or a replay reads back what the original rounds recorded."""
    history = session.ledger.ancestry_artifacts(ref)
    recorded = session.ledger.ancestry_artifacts(recorded_in) if recorded_in else history
    lineage = session.ledger.lineage(history[-1][0].commit_hash)
    chain = [version for version, _ in history]
    # Before anything loads: portable numerics in a native process restart it (NumericsRestart).
    session.active_numerics = use_numerics(mode or _branch_numerics(session, chain),
                                           str(resolve_device(session.device)))
    base = session.ledger.base_model(chain[0].base_model)
    loaded, base_digests = load_base(session, base.name, None, verify=True)
    if isinstance(hparams, dict):
        hp = EditHparams.from_dict(hparams)
    elif hparams is not None:
        hp = hparams
    else:
        previous = next((v.hparams for v in reversed(chain) if v.kind == "edit" and v.method == method), None)
        hp = EditHparams.from_dict(previous) if previous else derived_hparams(session, loaded, base.name, method)
        if overrides:
            hp = EditHparams.from_dict({**hp.to_dict(), **overrides})
    apply_determinism(hp.seed)
    c0, c0_refs = _c0(session, recorded, loaded, hp, corpus)
    templates, templates_ref = _templates(session, recorded, loaded, hp)
    original = rewrite_weights_copy(loaded)
    _apply_history(session, loaded, base_digests, history)
    state = EditState(loaded, hp, templates, c0, original_weights=original,
                      cp=rebuild_cp(session, ref, lineage, history), zstar_cache=_zstar_cache(session, recorded, hp))
    return state, loaded, [*c0_refs, templates_ref]


def environment(session: Session, loaded: LoadedModel) -> dict:
    """The environment a version records: where and under which numerics its model was computed."""
    return environment_record(loaded, session.active_numerics)


def _branch_numerics(session: Session, chain: Sequence[VersionInfo]) -> str:
    """The numerics of new work after `chain`: the session's choice, else the last one recorded there."""
    recorded = (v.environment.get("numerics") for v in reversed(chain) if v.kind != "base")
    return session.numerics or next((mode for mode in recorded if mode), "native")


def _c0(session: Session, history: History, loaded: LoadedModel, hp: EditHparams,
        corpus: Path | None) -> tuple[dict[int, torch.Tensor], list[ArtifactRef]]:
    """C0 of every edited layer: the blobs the history recorded, else computed (or read from the statistics
    cache) on the base's corpus."""
    recorded: dict[int, ArtifactRef] = {}
    for _, artifacts in history[1:]:
        for artifact in artifacts:
            if artifact.role.startswith("c0.L"):
                recorded[int(artifact.role[4:])] = artifact
    if all(layer in recorded for layer in hp.layers):
        refs = [recorded[layer] for layer in hp.layers]
        c0 = {layer: _single_tensor(session, recorded[layer].sha256) for layer in hp.layers}
        return c0, refs
    base = history[0][0]
    path = corpus_for(session, base.base_model, corpus)
    c0, shas = cached_second_moments(loaded, list(hp.layers), path, hp.mom2_n_samples, hp.mom2_dtype,
                                     session.ledger.store, base.state_hash)
    record_statistics(session, base.base_model, path, hp.mom2_n_samples, hp.mom2_dtype, shas)
    store = session.ledger.store
    refs = [ArtifactRef(f"c0.L{layer}", shas[layer], "safetensors", store.size(shas[layer]))
            for layer in hp.layers]
    return c0, refs


def _single_tensor(session: Session, sha: str) -> torch.Tensor:
    tensors = get_tensors(session.ledger.store, sha)
    return next(iter(tensors.values()))


def _templates(session: Session, history: History, loaded: LoadedModel,
               hp: EditHparams) -> tuple[list[str], ArtifactRef]:
    """The context templates the history recorded, else sampled from the model now (and stored)."""
    for _, artifacts in history[1:]:
        ref = role(artifacts, "templates")
        if ref is not None:
            return list(get_json(session.ledger.store, ref.sha256)), ref
    count = hp.extra.get(CONTEXT_TEMPLATES, len(SEED_WORDS))
    if not (isinstance(count, int) and 0 <= count <= len(SEED_WORDS)):
        raise HparamsError(f"--set extra={{\"{CONTEXT_TEMPLATES}\": {count!r}}}: expected 0 to {len(SEED_WORDS)}")
    templates = generate_context_templates(loaded, hp.template_seed, count)
    return templates, put_json(session.ledger.store, "templates", templates)


def _zstar_cache(session: Session, history: History, hp: EditHparams) -> dict[str, torch.Tensor]:
    """z* recorded by earlier NSE rounds with the same hyperparameters: valid for any later round (rewinding)."""
    cache: dict[str, torch.Tensor] = {}
    if not hp.rewind:  # z* on each round's starting weights is that round's alone
        return cache
    wanted = hp.to_dict()
    for version, artifacts in history[1:]:
        # Compared as read today: a field added since (with its default) does not make old z* foreign.
        if version.method != "nse" or EditHparams.from_dict(version.hparams).to_dict() != wanted:
            continue
        ref = role(artifacts, "zstar")
        if ref is not None:
            cache.update(get_tensors(session.ledger.store, ref.sha256))
    return cache
