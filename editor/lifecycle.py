"""The lifecycle: the engine joined to the ledger. Edit, record, checkout, revert, replay, verify.

Every operation reads the ledger, works on a model in memory, stores its artifacts first and then appends one
version in one database transaction: an error or a kill before that commit leaves the ledger as it was.

The history of a version is a list of *rounds* (requests, method, hyperparameters, and the version that first
applied them). An edit appends one round; a revert rebuilds the history without the reverted request from the last
version that still agrees with it (its *anchor*); a replay recomputes the rounds on the same or another base.
Cp at any version is the sum of the keys its rounds recorded, in order, from its anchor back to the base.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from editor.artifacts import (
    changes_from_tensors,
    changes_to_tensors,
    get_json,
    get_tensors,
    put_json,
    put_tensors,
)
from editor.determinism import apply_determinism, environment_record
from editor.engine import EditState, add_keys_to_cp, apply_changes, diff_changes, rewrite_weights_copy, run_round
from editor.hashing import BaseDigests, directory_fingerprint, root_hash, state_hash, tensor_digests
from editor.hparams import EditHparams, derive_hparams
from editor.model import LoadedModel, load_model
from editor.stats import cached_second_moments, file_sha256
from editor.templates import generate_context_templates
from ledger import Ledger
from ledger.errors import ConflictError, LedgerError, StoreUnavailableError
from ledger.faults import fault_point
from ledger.infos import VersionInfo
from ledger.records import ArtifactRef, EditRequest, FootprintLayer, RequestEntry, Score, VersionDraft

ProgressFn = Callable[[str], None]


SNAPSHOT_INDEX = "snapshot-index"  # the store's index of checkout snapshots, by (commit, dtype)


class LifecycleError(LedgerError):
    """An operation that cannot proceed; the message names the version, request or model at fault."""


class RebuildError(LifecycleError):
    """A rebuilt model does not have the state hash its version recorded."""


@dataclass(frozen=True)
class Round:
    """One edit round of a history: `source` is the commit of the version that first applied it."""

    source: str
    requests: tuple[EditRequest, ...]
    method: str
    hparams: dict

    @property
    def identity(self) -> tuple[str, tuple[str, ...]]:
        return self.source, tuple(r.request_key for r in self.requests)

    def without(self, request_keys: set[str]) -> Round:
        kept = tuple(r for r in self.requests if r.request_key not in request_keys)
        return Round(self.source, kept, self.method, self.hparams)


@dataclass
class ReplayStep:
    commit_hash: str
    kind: str
    recorded_state_hash: str
    replayed_state_hash: str

    @property
    def ok(self) -> bool:
        return self.recorded_state_hash == self.replayed_state_hash


@dataclass
class ReplayOntoReport:
    branch: str
    base_model: str
    versions: list[str]
    took: dict[str, bool] = field(default_factory=dict)   # request_key -> new target is the argmax
    subjects: dict[str, str] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        return sum(self.took.values()) / max(1, len(self.took))


def _no_progress(_: str) -> None:
    return None


def _author() -> str:
    return os.environ.get("EDITLEDGER_AUTHOR") or os.environ.get("USER") or "unknown"


class Workspace:
    """A ledger plus the engine settings used to materialise its models."""

    def __init__(self, ledger: Ledger, device: str = "cpu", dtype: str = "float32",
                 progress: ProgressFn | None = None, full_verify: bool = False) -> None:
        self.ledger = ledger
        self.device = device
        self.dtype = dtype
        self.say = progress or _no_progress
        # True: hash every tensor of a base model on every load, never trusting remembered digests.
        self.full_verify = full_verify
        self.base_digests = BaseDigests(ledger.store.machine_index)

    # ---------------------------------------------------------------- base models and statistics
    def add_model(self, name: str, path: Path, *, branch: str = "main", author: str | None = None,
                  corpus: Path | None = None):
        fingerprint = directory_fingerprint(Path(path))
        loaded = load_model(path, device=self.device, dtype=self.dtype)
        config = loaded.model.config.to_dict()
        if corpus is not None:
            config = {**config, "editledger_corpus": str(Path(corpus).resolve())}
        digests = tensor_digests(loaded.model)
        version = self.ledger.add_base_model(
            name, root_hash(digests), loaded.arch.family, config, str(Path(path).resolve()),
            branch=branch, author=author or _author(),
        )
        # The first edit or checkout then hashes only what it writes.
        self.base_digests.remember(version.base_state_hash, self.dtype, Path(path), fingerprint, digests)
        return version

    def load_base(self, name: str, path: Path | None = None, verify: bool = True) -> LoadedModel:
        """Load a recorded base model and refuse it if its weights are not the recorded ones (`verify=False`:
        the caller checks a state hash computed later and loads again with verify to explain a mismatch)."""
        return self._load_base(name, path, verify)[0]

    def _load_base(self, name: str, path: Path | None, verify: bool) -> tuple[LoadedModel, dict[str, bytes] | None]:
        """The base model and its verified per-tensor digests: remembered ones while none of its files changed
        (unless `full_verify`), else hashed now when `verify` (None when neither)."""
        base = self.ledger.base_model(name)
        source = Path(path or self.ledger.model_paths.get(name) or base.source_path or "")
        if not source.is_dir():
            raise LifecycleError(f"base model {name!r}: directory {str(source)!r} not found (pass --base-path)")
        fingerprint = directory_fingerprint(source)
        loaded = load_model(source, device=self.device, dtype=self.dtype)
        digests = None if self.full_verify else self.base_digests.lookup(base.state_hash, self.dtype, fingerprint)
        if verify and digests is None:
            digests = tensor_digests(loaded.model)
            found = root_hash(digests)
            if found != base.state_hash:
                raise LifecycleError(
                    f"base model {name!r}: {source} has state hash {found[:12]}, the ledger recorded "
                    f"{base.state_hash[:12]}; refusing to apply edits to another model"
                )
            self.base_digests.remember(base.state_hash, self.dtype, source, fingerprint, digests)
        return loaded, digests

    @staticmethod
    def _state_hash_after(loaded: LoadedModel, base_digests: dict[str, bytes] | None, changed: set[str]) -> str:
        """The state hash of a base model whose `changed` tensors were written: only those are hashed again
        when the base's digests are known."""
        known = {n: d for n, d in (base_digests or {}).items() if n not in changed}
        return root_hash(tensor_digests(loaded.model, known))

    def corpus_for(self, base_name: str, corpus: Path | None) -> Path:
        if corpus is not None:
            return Path(corpus)
        recorded = self.ledger.base_model(base_name).config.get("editledger_corpus")
        for event in self.ledger.audit_events(limit=10_000):
            if event.kind == "stats" and event.detail.get("model") == base_name:
                recorded = event.detail.get("corpus", recorded)
        if not recorded:
            raise LifecycleError(
                f"no statistics corpus for model {base_name!r}: run `editledger stats {base_name} --corpus FILE`"
            )
        return Path(recorded)

    def compute_stats(self, base_name: str, corpus: Path, layers: Sequence[int] | None = None,
                      sample_count: int | None = None, method: str = "nse", actor: str | None = None):
        loaded = self.load_base(base_name)
        hp = derive_hparams(loaded, method)
        layers = list(layers) if layers else list(hp.layers)
        samples = sample_count or hp.mom2_n_samples
        base = self.ledger.base_model(base_name)
        _, shas = cached_second_moments(loaded, layers, Path(corpus), samples, hp.mom2_dtype,
                                        self.ledger.store, base.state_hash)
        fault_point("stats.computed")
        self.ledger.record_audit("stats", actor or _author(), None, {
            "model": base_name, "corpus": str(Path(corpus).resolve()), "corpus_sha256": file_sha256(Path(corpus)),
            "layers": layers, "sample_count": samples, "dtype": hp.mom2_dtype,
            "blobs": {str(k): v for k, v in shas.items()},
        })
        return layers, shas

    # ---------------------------------------------------------------- reading history
    def rounds_of(self, ref: str) -> list[Round]:
        """The rounds that produce version `ref` from its base, in order."""
        rounds_at: dict[str, list[Round]] = {}
        for version in self.ledger.ancestry(ref):
            if version.kind == "base":
                rounds_at[version.commit_hash] = []
            elif version.kind == "revert":
                replayed = [self._round_from(r["source"], r["request_keys"]) for r in version.extra["rounds"]]
                rounds_at[version.commit_hash] = rounds_at[version.extra["anchor"]] + replayed
            else:
                detail = self.ledger.show(version.commit_hash)
                requests = tuple(e.request for e in detail.requests if e.role in ("edited", "replayed"))
                round_ = Round(version.commit_hash, requests, version.method or "", version.hparams)
                rounds_at[version.commit_hash] = [*rounds_at[version.parent_hash or ""], round_]
        return rounds_at[self.ledger.resolve(ref).commit_hash]

    def _round_from(self, source: str, request_keys: Sequence[str]) -> Round:
        version = self.ledger.resolve(source)
        requests = tuple(self.ledger.request(key).request for key in request_keys)
        return Round(version.commit_hash, requests, version.method or "", version.hparams)

    def rebuild_cp(self, ref: str) -> dict[int, torch.Tensor]:
        """Cp at a version: zeros plus every recorded key block of its history, in the order they were added."""
        sequence: dict[str, list[str]] = {}
        for version, artifacts in self.ledger.ancestry_artifacts(ref):
            if version.kind == "base":
                sequence[version.commit_hash] = []
                continue
            start = version.extra["anchor"] if version.kind == "revert" else version.parent_hash
            sequence[version.commit_hash] = sequence[start or ""] + _keys_blobs(artifacts)
        cp: dict[int, torch.Tensor] = {}
        for sha in sequence[self.ledger.resolve(ref).commit_hash]:
            add_keys_to_cp(cp, {int(name[1:]): keys for name, keys in get_tensors(self.ledger.store, sha).items()})
        return cp

    # ---------------------------------------------------------------- materialising versions
    def checkout_model(self, ref: str, base_path: Path | None = None) -> tuple[LoadedModel, object]:
        """Base weights plus the recorded changes of every ancestor, applied as exact values, then verified."""
        history = self.ledger.ancestry_artifacts(ref)
        # The base is verified first (from remembered digests while its files are unchanged), so afterwards only
        # the tensors that the recorded changes wrote need hashing.
        loaded, base_digests = self._load_base(history[0][0].base_model, base_path, verify=True)
        self._apply_history(loaded, base_digests, history)
        return loaded, history[-1][0]

    def _apply_history(self, loaded: LoadedModel, base_digests: dict[str, bytes] | None,
                       history: Sequence[tuple[VersionInfo, list[ArtifactRef]]]) -> None:
        """Write every version's recorded column values onto the base model, in order (exact values, no
        arithmetic), and check the result against the last version's state hash.

        Starts from the newest snapshot of the history when there is one. When the changes read weigh more than
        twice the tensors they wrote (one change keeps old and new values: about twice), the result is kept as the
        last version's snapshot, so that checking it (or a descendant) out again reads those tensors once instead
        of every round's change."""
        changed: set[str] = set()
        start, read_bytes = 1, 0
        for position in range(len(history) - 1, 0, -1):
            tensors = self._snapshot(history[position][0])
            if tensors is not None:
                with torch.no_grad():
                    for name, values in tensors.items():
                        loaded.model.get_parameter(name).copy_(values)
                changed |= set(tensors)
                start = position + 1
                break
        for version, artifacts in history[start:]:
            delta = _role(artifacts, "delta")
            if delta is None:
                continue
            changes = changes_from_tensors(get_tensors(self.ledger.store, delta.sha256))
            try:
                apply_changes(loaded.model, changes.values())
            except (RuntimeError, IndexError) as error:
                raise RebuildError(f"version {version.commit_hash[:12]}: its recorded change does not fit the "
                                   f"base model: {error}") from None
            changed |= set(changes)
            read_bytes += delta.size_bytes
        found = self._state_hash_after(loaded, base_digests, changed)
        last = history[-1][0]
        if found != last.state_hash:
            raise RebuildError(
                f"version {last.commit_hash[:12]}: rebuilt state hash {found[:12]} != recorded {last.state_hash[:12]}"
            )
        written = {name: loaded.model.get_parameter(name) for name in sorted(changed)}
        if read_bytes > 2 * sum(t.numel() * t.element_size() for t in written.values()):
            try:
                snapshot = put_tensors(self.ledger.store, "snapshot", written)
                self.ledger.store.write_index(SNAPSHOT_INDEX, self._snapshot_key(last), {
                    "blob": snapshot.sha256, "commit": last.commit_hash, "state_hash": last.state_hash,
                    "dtype": self.dtype,
                })
            except StoreUnavailableError:
                pass  # a snapshot is a cache: a store this machine may only read (or that failed now) skips it

    def _snapshot_key(self, version: VersionInfo) -> str:
        return hashlib.sha256(f"{version.commit_hash}:{self.dtype}".encode()).hexdigest()

    def _snapshot(self, version: VersionInfo) -> dict[str, torch.Tensor] | None:
        """The written tensors of `version` kept by an earlier checkout (a cache: None when absent or broken)."""
        entry = self.ledger.store.read_index(SNAPSHOT_INDEX, self._snapshot_key(version))
        if not entry or entry.get("state_hash") != version.state_hash:
            return None
        try:
            return get_tensors(self.ledger.store, entry["blob"])
        except (LedgerError, KeyError, TypeError, ValueError):
            return None

    def export(self, ref: str, out: Path, force: bool = False, actor: str | None = None) -> Path:
        out = Path(out)
        if out.exists() and any(out.iterdir()) and not force:
            raise LifecycleError(f"--out {out}: directory is not empty (use --force to overwrite)")
        loaded, version = self.checkout_model(ref)
        out.resolve().parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target and rename: a kill mid-write never leaves a half model under `out`.
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.resolve().parent))
        loaded.model.save_pretrained(staging, safe_serialization=True)
        fault_point("checkout.model_written")
        loaded.tokenizer.save_pretrained(staging)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
        self.ledger.record_audit("checkout", actor or _author(), version.commit_hash,
                                 {"out": str(out.resolve()), "state_hash": version.state_hash})
        return out

    # ---------------------------------------------------------------- engine state at a version
    def _state_at(self, ref: str, method: str, hparams: EditHparams | dict | None, corpus: Path | None,
                  overrides: dict | None = None, recorded_in: str | None = None,
                  ) -> tuple[EditState, LoadedModel, list[ArtifactRef]]:
        """The model and engine state at version `ref`. Templates, C0 and cached z* are read from the history of
        `recorded_in` (default `ref`): a revert or a replay reads back what the original rounds recorded."""
        history = self.ledger.ancestry_artifacts(ref)
        recorded = self.ledger.ancestry_artifacts(recorded_in) if recorded_in else history
        chain = [version for version, _ in history]
        base = self.ledger.base_model(chain[0].base_model)
        loaded, base_digests = self._load_base(base.name, None, verify=True)
        if isinstance(hparams, dict):
            hp = EditHparams.from_dict(hparams)
        elif hparams is not None:
            hp = hparams
        else:
            previous = next((v.hparams for v in reversed(chain) if v.kind == "edit" and v.method == method), None)
            hp = EditHparams.from_dict(previous) if previous else derive_hparams(loaded, method)
            if overrides:
                hp = EditHparams.from_dict({**hp.to_dict(), **overrides})
        apply_determinism(hp.seed)
        c0, c0_refs = self._c0(recorded, loaded, hp, corpus)
        templates, templates_ref = self._templates(recorded, loaded, hp)
        original = rewrite_weights_copy(loaded)
        self._apply_history(loaded, base_digests, history)
        state = EditState(loaded, hp, templates, c0, original_weights=original, cp=self.rebuild_cp(ref),
                          zstar_cache=self._zstar_cache(recorded, hp))
        return state, loaded, [*c0_refs, templates_ref]

    def _c0(self, history, loaded: LoadedModel, hp: EditHparams, corpus: Path | None):
        recorded: dict[int, ArtifactRef] = {}
        for _, artifacts in history[1:]:
            for artifact in artifacts:
                if artifact.role.startswith("c0.L"):
                    recorded[int(artifact.role[4:])] = artifact
        if all(layer in recorded for layer in hp.layers):
            refs = [recorded[layer] for layer in hp.layers]
            c0 = {layer: self._single_tensor(recorded[layer].sha256) for layer in hp.layers}
            return c0, refs
        base = history[0][0]
        path = self.corpus_for(base.base_model, corpus)
        c0, shas = cached_second_moments(loaded, list(hp.layers), path, hp.mom2_n_samples, hp.mom2_dtype,
                                         self.ledger.store, base.state_hash)
        store = self.ledger.store
        refs = [ArtifactRef(f"c0.L{layer}", shas[layer], "safetensors", store.size(shas[layer]))
                for layer in hp.layers]
        return c0, refs

    def _single_tensor(self, sha: str) -> torch.Tensor:
        tensors = get_tensors(self.ledger.store, sha)
        return next(iter(tensors.values()))

    def _templates(self, history, loaded: LoadedModel, hp: EditHparams) -> tuple[list[str], ArtifactRef]:
        for _, artifacts in history[1:]:
            ref = _role(artifacts, "templates")
            if ref is not None:
                return list(get_json(self.ledger.store, ref.sha256)), ref
        templates = generate_context_templates(loaded, hp.template_seed)
        return templates, put_json(self.ledger.store, "templates", templates)

    def _zstar_cache(self, history, hp: EditHparams) -> dict[str, torch.Tensor]:
        """z* recorded by earlier NSE rounds with the same hyperparameters: valid for any later round (rewinding)."""
        cache: dict[str, torch.Tensor] = {}
        wanted = hp.to_dict()
        for version, artifacts in history[1:]:
            if version.method != "nse" or version.hparams != wanted:
                continue
            ref = _role(artifacts, "zstar")
            if ref is not None:
                cache.update(get_tensors(self.ledger.store, ref.sha256))
        return cache

    # ---------------------------------------------------------------- edit
    def edit(self, requests: Sequence[EditRequest], *, branch: str = "main", method: str = "nse",
             batch_size: int = 20, author: str | None = None, reason: str = "", evaluate: bool = False,
             corpus: Path | None = None, overrides: dict | None = None, retry: int = 0) -> list:
        """Apply requests in rounds of `batch_size`; each round is one recorded version."""
        if not requests:
            raise LifecycleError("no requests to edit")
        if batch_size < 1:
            raise LifecycleError(f"--batch-size {batch_size}: must be at least 1")
        recorded = []
        batches = [list(requests[i:i + batch_size]) for i in range(0, len(requests), batch_size)]
        head = self.ledger.resolve(branch).commit_hash
        state, loaded, context_refs = self._state_at(head, method, None, corpus, overrides)
        needed, free = estimate_round_bytes(loaded, state.hparams, len(batches[0])), available_memory_bytes()
        if needed > free:
            raise LifecycleError(
                f"--batch-size {len(batches[0])}: a round needs about {_gib(needed)}, only {_gib(free)} "
                f"is available; use a smaller batch"
            )
        for number, batch in enumerate(batches, 1):
            self.say(f"round {number}/{len(batches)}: {len(batch)} requests with {method}")
            attempts = 0
            while True:
                try:
                    info = self._edit_round(state, loaded, context_refs, batch, branch, head, method,
                                            author or _author(), reason, evaluate)
                    break
                except ConflictRetry as lost:
                    attempts += 1
                    if attempts > retry:
                        raise lost.error from None
                    head = self.ledger.resolve(branch).commit_hash
                    self.say(f"branch {branch!r} moved; retrying on {head[:12]}")
                    state, loaded, context_refs = self._state_at(head, method, None, corpus, overrides)
            recorded.append(info)
            head = info.commit_hash
        return recorded

    def _edit_round(self, state: EditState, loaded: LoadedModel, context_refs: list[ArtifactRef],
                    batch: list[EditRequest], branch: str, head: str, method: str, author: str, reason: str,
                    evaluate: bool):
        result = run_round(state, batch, method)
        fault_point("edit.round_computed")
        artifacts = self._round_artifacts(result, context_refs)
        draft = VersionDraft(
            kind="edit", base_model=self.ledger.resolve(head).base_model, state_hash=state_hash(loaded.model),
            author=author, reason=reason, method=method, hparams=result.hparams,
            environment=environment_record(loaded), requests=[RequestEntry(r) for r in batch],
            footprint=result.footprint, outcomes=result.outcomes, artifacts=artifacts,
        )
        if evaluate:
            draft.scores = self._scores(loaded, [*self._history_requests(head), *batch])
        fault_point("edit.artifacts_stored")
        try:
            return self.ledger.append_version(draft, branch, expected_head=head)
        except ConflictError as error:
            raise ConflictRetry(error) from None

    def _round_artifacts(self, result, context_refs: list[ArtifactRef]) -> list[ArtifactRef]:
        """Blobs of one round, stored before its version is appended: the change, the keys, the z*."""
        artifacts = [
            put_tensors(self.ledger.store, "delta", changes_to_tensors(result.changes)),
            self._keys_artifact(0, result),
            *context_refs,
        ]
        if result.zstar:
            artifacts.append(put_tensors(self.ledger.store, "zstar", result.zstar))
        return artifacts

    def _keys_artifact(self, index: int, result) -> ArtifactRef:
        return put_tensors(self.ledger.store, f"keys.{index}", {f"L{layer}": k for layer, k in result.keys.items()})

    def _history_requests(self, ref: str) -> list[EditRequest]:
        return [r for round_ in self.rounds_of(ref) for r in round_.requests]

    def _scores(self, loaded: LoadedModel, requests: Sequence[EditRequest]) -> list[Score]:
        from editor.evaluate import evaluate_requests, report_scores

        if not requests:
            return []
        report = evaluate_requests(loaded.model, loaded.tokenizer, list(requests))
        return report_scores(report, suite="counterfact")

    def evaluate(self, ref: str, requests: Sequence[EditRequest] | None = None, record: bool = True):
        from editor.evaluate import evaluate_requests, report_scores

        loaded, version = self.checkout_model(ref)
        requests = list(requests) if requests is not None else self._history_requests(version.commit_hash)
        if not requests:
            raise LifecycleError(f"version {version.commit_hash[:12]} has no edited requests to evaluate")
        report = evaluate_requests(loaded.model, loaded.tokenizer, requests)
        if record:
            self.ledger.record_scores(version.commit_hash, report_scores(report, suite="counterfact"))
        return report

    # ---------------------------------------------------------------- replaying rounds
    def _replay(self, state: EditState, loaded: LoadedModel, rounds: Iterable[Round],
                on_round: Callable[[Round, object], None] | None = None) -> list:
        results = []
        for round_ in rounds:
            state.hparams = EditHparams.from_dict(round_.hparams)
            apply_determinism(state.hparams.seed)
            result = run_round(state, list(round_.requests), round_.method)
            results.append(result)
            if on_round is not None:
                on_round(round_, result)
        return results

    def _replay_from(self, start: str, rounds: Sequence[Round], recorded_in: str | None = None):
        """Recompute `rounds` on the model of version `start`, reading back what `recorded_in`'s history
        recorded (templates, C0, z*). Returns the model, the context artifacts and each round's result."""
        first = rounds[0] if rounds else None
        state, loaded, context_refs = self._state_at(start, first.method if first else "nse",
                                                     first.hparams if first else None, None, recorded_in=recorded_in)
        return loaded, context_refs, self._replay(state, loaded, rounds)

    def replay_rounds(self, start: str, rounds: Sequence[Round], recorded_in: str | None = None) -> LoadedModel:
        """The model that `rounds` give when recomputed from version `start`; nothing is recorded."""
        return self._replay_from(start, [r for r in rounds if r.requests], recorded_in)[0]

    def revert(self, target: str, *, branch: str = "main", author: str | None = None, reason: str = ""):
        """Append a version whose model is the replay of the history without `target` (a request or a version)."""
        head = self.ledger.resolve(branch)
        rounds = self.rounds_of(head.commit_hash)
        removed = self._removed_keys(target, rounds)
        first = next(i for i, r in enumerate(rounds) if removed & {q.request_key for q in r.requests})
        wanted = [r.without(removed) for r in rounds[first:]]
        wanted = [r for r in wanted if r.requests]
        anchor = self._anchor(head.commit_hash, rounds[:first])
        self.say(f"revert: replaying {len(wanted)} rounds from {anchor[:12]}")
        before = rewrite_weights_copy(self.checkout_model(head.commit_hash)[0])
        loaded, context_refs, results = self._replay_from(anchor, wanted, recorded_in=head.commit_hash)
        hparams = wanted[0].hparams if wanted else {}
        fault_point("revert.replayed")
        artifacts = [put_tensors(self.ledger.store, "delta", changes_to_tensors(diff_changes(loaded.model, before)))]
        artifacts += [self._keys_artifact(index, result) for index, result in enumerate(results)]
        artifacts.extend(context_refs)
        entries = [RequestEntry(self.ledger.request(key).request, "reverted") for key in sorted(removed)]
        entries += [RequestEntry(r, "replayed") for round_ in wanted for r in round_.requests]
        draft = VersionDraft(
            kind="revert", base_model=head.base_model, state_hash=state_hash(loaded.model),
            author=author or _author(), reason=reason, method=wanted[0].method if wanted else None,
            hparams=hparams, environment=environment_record(loaded), requests=entries,
            footprint=_renumbered_passes(results),
            outcomes=[o for result in results for o in result.outcomes], artifacts=artifacts,
            extra={"anchor": anchor, "target": target, "reverted": sorted(removed),
                   "rounds": [{"source": r.source, "request_keys": [q.request_key for q in r.requests]}
                              for r in wanted]},
        )
        fault_point("revert.artifacts_stored")
        info = self.ledger.append_version(draft, branch, expected_head=head.commit_hash)
        self.ledger.record_audit("revert", draft.author, info.commit_hash,
                                 {"target": target, "reverted": sorted(removed), "anchor": anchor})
        return info

    def _removed_keys(self, target: str, rounds: list[Round]) -> set[str]:
        by_source = {r.source: r for r in rounds}
        try:
            version = self.ledger.resolve(target)
        except LedgerError:
            version = None
        if version is not None and version.commit_hash in by_source:
            return {q.request_key for q in by_source[version.commit_hash].requests}
        key = self.ledger.request(target).request.request_key
        if not any(key == q.request_key for r in rounds for q in r.requests):
            raise LifecycleError(f"request {target!r} is not part of the branch's current history")
        return {key}

    def _anchor(self, head: str, prefix: list[Round]) -> str:
        """The latest ancestor whose rounds are a prefix of `prefix`, preferring the longest."""
        best, best_len = None, -1
        for version in self.ledger.ancestry(head):
            mine = [r.identity for r in self.rounds_of(version.commit_hash)]
            if len(mine) <= len(prefix) and mine == [r.identity for r in prefix[: len(mine)]] and len(mine) >= best_len:
                best, best_len = version.commit_hash, len(mine)
        if best_len != len(prefix):
            raise LifecycleError("revert needs a version that ends exactly before the reverted round")
        return best

    def replay_same_base(self, ref: str) -> list[ReplayStep]:
        """Recompute every version of `ref`'s history on its base and compare with the recorded state hashes."""
        chain = self.ledger.ancestry(ref)
        steps: list[ReplayStep] = [ReplayStep(chain[0].commit_hash, "base", chain[0].state_hash, chain[0].state_hash)]
        state = loaded = None
        for version in chain[1:]:
            rounds = self.rounds_of(version.commit_hash)
            if version.kind == "revert":
                new_rounds = rounds[len(self.rounds_of(version.extra["anchor"])):]
                start = version.extra["anchor"]
            else:
                new_rounds = rounds[-1:]
                start = version.parent_hash
            if state is None or version.kind == "revert":
                first = new_rounds[0] if new_rounds else None
                state, loaded, _ = self._state_at(start, first.method if first else "nse",
                                                  first.hparams if first else None, None, recorded_in=ref)
            self._replay(state, loaded, new_rounds)
            found = state_hash(loaded.model)
            steps.append(ReplayStep(version.commit_hash, version.kind, version.state_hash, found))
            self.say(f"replayed {version.commit_hash[:12]} ({version.kind}): "
                     f"{'same state hash' if found == version.state_hash else 'DIFFERENT state hash'}")
            if found != version.state_hash:
                state = None  # continue from the recorded state of the next version's parent
        return steps

    def replay_onto(self, branch: str, model_dir: Path, *, base_name: str, new_branch: str,
                    corpus: Path | None = None, author: str | None = None) -> ReplayOntoReport:
        """Recompute a branch's history (z* included) on another base model, recorded on a new branch."""
        from editor.evaluate import evaluate_requests

        source_head = self.ledger.resolve(branch)
        rounds = self.rounds_of(source_head.commit_hash)
        corpus = self.corpus_for(source_head.base_model, corpus)
        if not any(b.name == new_branch for b in self.ledger.branches()):
            self.add_model(base_name, model_dir, branch=new_branch, author=author, corpus=corpus)
        elif self.ledger.resolve(new_branch).kind != "base" or self.ledger.resolve(new_branch).base_model != base_name:
            raise LifecycleError(f"--new-branch {new_branch!r}: branch exists and has versions")
        head = self.ledger.resolve(new_branch).commit_hash
        report = ReplayOntoReport(branch=new_branch, base_model=base_name, versions=[])
        for number, round_ in enumerate(rounds, 1):
            self.say(f"replay onto {base_name}: round {number}/{len(rounds)}")
            state, loaded, context_refs = self._state_at(head, round_.method, round_.hparams, corpus)
            state.zstar_cache.clear()  # z* belongs to the old base: recompute on the new one
            result = run_round(state, list(round_.requests), round_.method)
            artifacts = self._round_artifacts(result, context_refs)
            draft = VersionDraft(
                kind="replay", base_model=base_name, state_hash=state_hash(loaded.model),
                author=author or _author(), reason=f"replay of {round_.source[:12]} from branch {branch}",
                method=round_.method, hparams=result.hparams, environment=environment_record(loaded),
                requests=[RequestEntry(r, "replayed") for r in round_.requests], footprint=result.footprint,
                outcomes=result.outcomes, artifacts=artifacts, extra={"replay_of": round_.source},
            )
            fault_point("replay.artifacts_stored")
            info = self.ledger.append_version(draft, new_branch, expected_head=head)
            head = info.commit_hash
            report.versions.append(head)
        requests = [r for round_ in rounds for r in round_.requests]
        if requests:
            final, _ = self.checkout_model(head)
            evaluation = evaluate_requests(final.model, final.tokenizer, requests)
            for request, row in zip(requests, evaluation.per_request, strict=True):
                report.took[request.request_key] = bool(row.get("efficacy_argmax", row.get("efficacy", 0.0)) >= 1.0)
                report.subjects[request.request_key] = request.subject
        return report


def _keys_blobs(artifacts: Sequence[ArtifactRef]) -> list[str]:
    """Blobs of the keys that a version added to Cp, in the order it added them."""
    keys = [a for a in artifacts if a.role.startswith("keys.")]
    return [a.sha256 for a in sorted(keys, key=lambda a: int(a.role.split(".")[1]))]


def _role(artifacts: Sequence[ArtifactRef], role: str) -> ArtifactRef | None:
    return next((a for a in artifacts if a.role == role), None)


def _renumbered_passes(results: Sequence) -> list[FootprintLayer]:
    """A revert replays several rounds in one version: number their passes one after another."""
    footprint: list[FootprintLayer] = []
    offset = 0
    for result in results:
        passes = sorted({f.pass_index for f in result.footprint})
        for f in result.footprint:
            footprint.append(replace(f, pass_index=offset + passes.index(f.pass_index)))
        offset += len(passes)
    return footprint


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


def estimate_round_bytes(loaded: LoadedModel, hp: EditHparams, n_requests: int, seq_len: int = 32) -> int:
    """A generous upper estimate of the extra memory one round of `n_requests` needs.

    Per edited layer: C0, Cp and the float64 solve matrix (d_ff² each) and the keys (d_ff x n, several copies);
    z*: the activations of the optimisation's forward/backward over 7 sequences per request."""
    arch = loaded.arch
    per_layer = 3 * arch.d_ff * arch.d_ff * 8 + 4 * arch.d_ff * n_requests * 8 + 2 * arch.d_model * n_requests * 8
    sequences = 7 * n_requests
    activations = sequences * seq_len * arch.d_model * arch.n_layers * 4 * 24
    return len(hp.layers) * per_layer + activations


class ConflictRetry(Exception):
    """Internal: a round lost the race for the branch head."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error
