"""The lifecycle: the engine joined to the ledger. Edit, record, checkout, revert, replay, verify.

Every operation reads the ledger, works on a model in memory, stores its artifacts first and then appends one
version in one database transaction: an error or a kill before that commit leaves the ledger as it was.

The history of a version is a list of *rounds* (requests, method, hyperparameters, and the version that first
applied them), read from the ledger (`ledger.history`). An edit appends one round; a revert computes the wanted
history (without the reverted requests, or for a revert of a revert, with the requests it removed back in their
rounds), starts from the latest ancestor whose rounds are the longest prefix of it (its *anchor*) and replays the
rest; a replay recomputes the rounds on the same or another base. Cp at any version is the sum of the keys its
rounds recorded, in order, from its anchor back to the base.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
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
from editor.determinism import (
    apply_determinism,
    bit_exact_promised,
    environment_record,
    numerics_differences,
    use_numerics,
)
from editor.engine import (
    EditState,
    add_keys_to_cp,
    apply_changes,
    diff_changes,
    outcome_warnings,
    rewrite_weights_copy,
)
from editor.errors import EditInterrupted, HparamsError, UnsuccessfulEditError
from editor.gguf import SOURCE_KEY, convert_gguf, converted_directory, inspect_gguf
from editor.hashing import BaseDigests, directory_fingerprint, file_sha256, root_hash, state_hash, tensor_digests
from editor.hparams import EditHparams, check_overrides, derive_hparams, read_model_hparams
from editor.model import LoadedModel, check_dtype, check_model_directory, load_model, resolve_device
from editor.rounds import METHODS, run_round
from editor.stats import cached_second_moments
from editor.targets import check_requests, validate_known_tokens
from editor.templates import SEED_WORDS, generate_context_templates
from editor.tracing import TRACE_PROMPTS, trace_model
from ledger import Ledger
from ledger.errors import ConflictError, LedgerError, StoreUnavailableError
from ledger.faults import fault_point
from ledger.history import Lineage, Round
from ledger.infos import BaseModelInfo, VersionInfo
from ledger.provenance import write_provenance
from ledger.records import (
    ArtifactRef,
    EditRequest,
    FootprintLayer,
    RequestEntry,
    RevertRecord,
    Score,
    VersionDraft,
)

ProgressFn = Callable[[str], None]


SNAPSHOT_INDEX = "snapshot-index"  # the store's index of checkout snapshots, by (commit, dtype)
REWIND_LIMIT = 8  # a revert that replays nothing rewinds the head's model over at most this many versions
NUMERICS_KEY = "editledger_numerics"  # in a base model's recorded config: the dtype (and device) it was added in
HPARAMS_KEY = "editledger_edit_hparams"  # in a base model's recorded config: what its directory said editing needs
CONTEXT_TEMPLATES = "context_templates"  # in hparams.extra: how many sampled context templates (default all 5)
TRACE_KEY = "editledger_layer_trace"  # in a base model's recorded config: the causal trace its layers came from
UNRECORDED_DTYPE = "float32"  # bases recorded before their numerics were: editledger then always loaded float32


class LifecycleError(LedgerError):
    """An operation that cannot proceed; the message names the version, request or model at fault."""


class RebuildError(LifecycleError):
    """A rebuilt model does not have the state hash its version recorded."""


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


@dataclass
class ReplayStep:
    """One version recomputed. When the state hash differs: which numerics differ from the recorded ones, how far
    the rewritten weights are from the recorded ones (largest |replayed - recorded| / max |recorded| over the
    rewritten tensors), and whether every request ended as recorded (edited, skipped, satisfied)."""

    commit_hash: str
    kind: str
    recorded_state_hash: str
    replayed_state_hash: str
    numerics_differ: dict[str, tuple] = field(default_factory=dict)
    bit_exact_promised: bool = True
    distance: float | None = None
    outcomes_same: bool | None = None

    @property
    def ok(self) -> bool:
        return self.recorded_state_hash == self.replayed_state_hash

    @property
    def broken(self) -> bool:
        """A different state hash where the recorded numerics promised the same bits."""
        return not self.ok and self.bit_exact_promised


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

    def __init__(self, ledger: Ledger, device: str = "auto", dtype: str | None = None,
                 progress: ProgressFn | None = None, full_verify: bool = False, base_path: Path | None = None,
                 warn: ProgressFn | None = None, numerics: str | None = None) -> None:
        """`dtype` None: each base model in the dtype it was recorded in (an explicit other one is refused).
        `base_path`: where the base model is now, instead of its recorded directory (verified by state hash)."""
        resolve_device(device)  # `--device cuda` without CUDA: refused before anything loads
        if dtype is not None:
            check_dtype(dtype)
        self.ledger = ledger
        self.device = device
        self.dtype = dtype
        self.base_path = Path(base_path) if base_path is not None else None
        # None: new versions keep the numerics their branch recorded last (native on a new branch).
        self.numerics = numerics
        self.active_numerics = "native"  # what the current computation runs under, recorded with its version
        self.say = progress or _no_progress
        self.warn = warn or self.say
        self._dtypes: dict[str, str] = {}
        self._added: set[str] = set()  # bases recorded by this workspace: `base_path` is not theirs
        self._warned: list[str] = []  # the warnings of the rounds computed so far
        # True: hash every tensor of a base model on every load, never trusting remembered digests.
        self.full_verify = full_verify
        self.base_digests = BaseDigests(ledger.store.machine_index)

    # ---------------------------------------------------------------- base models and statistics
    def add_model(self, name: str, path: Path, *, branch: str = "main", author: str | None = None,
                  corpus: Path | None = None, dtype: str | None = None, source: dict | None = None,
                  trace_requests: Sequence[EditRequest] | None = None, trace_limit: int = TRACE_PROMPTS):
        """Record a base model by its state hash in `dtype` (default: the workspace's, else float32); `source`:
        where its directory came from (a GGUF file's record), kept in its recorded config. With `trace_requests`,
        the blocks to edit are measured on the model (causal tracing over up to `trace_limit` of those facts it
        knows) and recorded with it: every edit of it starts from them."""
        dtype = dtype or self.dtype or UNRECORDED_DTYPE
        check_model_directory(path)
        if corpus is not None and not Path(corpus).is_file():
            raise LifecycleError(f"--corpus {corpus}: file not found")
        # What editing it needs, refused before the model loads when it does not fit the model's depth.
        depth = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
        needs = read_model_hparams(Path(path), depth.get("num_hidden_layers", depth.get("n_layer")))
        fingerprint = directory_fingerprint(Path(path))
        loaded = load_model(path, device=self.device, dtype=dtype)
        config = loaded.model.config.to_dict()
        # The state hash holds only in this dtype: every later load of this base uses it.
        config[NUMERICS_KEY] = {"dtype": dtype, "device": str(loaded.device)}
        if trace_requests is not None:
            traced = trace_model(loaded, trace_requests, trace_limit)
            config[TRACE_KEY] = traced
            needs = {"layers": traced["layers"], **needs}  # what the directory itself says still wins
        if needs:
            config[HPARAMS_KEY] = needs
        if source is not None:
            config[SOURCE_KEY] = source
        if corpus is not None:
            config = {**config, "editledger_corpus": str(Path(corpus).resolve())}
        digests = tensor_digests(loaded.model)
        version = self.ledger.add_base_model(
            name, root_hash(digests), loaded.arch.family, config, str(Path(path).resolve()),
            branch=branch, author=author or _author(),
        )
        self._added.add(name)
        self._dtypes[name] = dtype
        # The first edit or checkout then hashes only what it writes.
        self.base_digests.remember(version.base_state_hash, dtype, Path(path), fingerprint, digests)
        return version

    def add_model_gguf(self, name: str, gguf: str | Path, *, out: Path | None = None, branch: str = "main",
                       author: str | None = None, corpus: Path | None = None, dtype: str | None = None,
                       trace_requests: Sequence[EditRequest] | None = None, trace_limit: int = TRACE_PROMPTS):
        """Record a base model from a GGUF file (or a path inside an installed package): checked, converted once
        to a safetensors directory (`out`, default under the ledger's `.editledger/bases/`), recorded with the
        file's SHA-256 and the conversion's versions. Nothing is recorded when any step fails."""
        dtype = dtype or self.dtype or UNRECORDED_DTYPE
        if any(base.name == name for base in self.ledger.base_models()):
            raise LifecycleError(f"base model {name!r} is already recorded")
        if corpus is not None and not Path(corpus).is_file():
            raise LifecycleError(f"--corpus {corpus}: file not found")
        path, source = inspect_gguf(gguf, dtype)
        directory = convert_gguf(path, source, out or converted_directory(self.converted_bases_dir(), source))
        return self.add_model(name, directory, branch=branch, author=author, corpus=corpus, dtype=dtype,
                              source=source.record(), trace_requests=trace_requests, trace_limit=trace_limit)

    def converted_bases_dir(self) -> Path:
        return Path(self.ledger.root) / ".editledger" / "bases"

    def dtype_of(self, base_name: str) -> str:
        """The dtype a base model was recorded in; an explicit other `dtype` is refused, naming both."""
        if base_name not in self._dtypes:
            numerics = self.ledger.base_model(base_name).config.get(NUMERICS_KEY) or {}
            recorded = numerics.get("dtype", UNRECORDED_DTYPE)
            if self.dtype is not None and self.dtype != recorded:
                raise LifecycleError(
                    f"--dtype {self.dtype}: base model {base_name!r} was recorded in {recorded}, and its state "
                    f"hashes hold only in {recorded}; omit --dtype to use it"
                )
            self._dtypes[base_name] = recorded
        return self._dtypes[base_name]

    def base_directory(self, name: str, path: Path | None = None) -> Path:
        """Where base model `name` is read from: `path`, else the workspace's `base_path`, else this machine's
        configured one, else the recorded one."""
        if path is None and self.base_path is not None and name not in self._added:
            path = self.base_path
        # This machine's own place for it (`connect --model NAME=PATH`), else where it was recorded.
        recorded = self.ledger.model_paths.get(name) or self.ledger.base_model(name).source_path
        source = Path(path) if path is not None else Path(recorded or "")
        if not source.is_dir():
            raise LifecycleError(
                f"base model {name!r}: directory {str(source)!r} not found (give --base-path DIR, or record its "
                f"new place with `editledger model relocate {name} --path DIR`)"
            )
        return source

    def relocate(self, name: str, path: Path, actor: str | None = None) -> Path:
        """Record a new directory for base model `name`, after hashing the model there in full: refused unless
        it has the recorded state hash."""
        base = self.ledger.base_model(name)
        path = check_model_directory(path).resolve()
        dtype = self.dtype_of(name)
        fingerprint = directory_fingerprint(path)
        loaded = load_model(path, device=self.device, dtype=dtype)
        self._checked_digests(base, loaded, dtype, path, fingerprint, f"--path {path}: not relocated")
        self.ledger.relocate_base_model(name, str(path), actor or _author())
        return path

    def load_base(self, name: str, path: Path | None = None, verify: bool = True) -> LoadedModel:
        """Load a recorded base model and refuse it if its weights are not the recorded ones (`verify=False`:
        the caller checks a state hash computed later and loads again with verify to explain a mismatch)."""
        return self._load_base(name, path, verify)[0]

    def _load_base(self, name: str, path: Path | None, verify: bool) -> tuple[LoadedModel, dict[str, bytes] | None]:
        """The base model and its verified per-tensor digests: remembered ones while none of its files changed
        (unless `full_verify`), else hashed now when `verify` (None when neither)."""
        base = self.ledger.base_model(name)
        dtype = self.dtype_of(name)
        source = self.base_directory(name, path)
        fingerprint = directory_fingerprint(source)
        loaded = load_model(source, device=self.device, dtype=dtype)
        digests = None if self.full_verify else self.base_digests.lookup(base.state_hash, dtype, fingerprint)
        if verify and digests is None:
            digests = self._checked_digests(base, loaded, dtype, source, fingerprint,
                                            "refusing to apply edits to another model")
        return loaded, digests

    def _checked_digests(self, base: BaseModelInfo, loaded: LoadedModel, dtype: str, source: Path,
                         fingerprint: dict[str, list[int]], refusal: str) -> dict[str, bytes]:
        """Every tensor of `loaded` (read from `source`) hashed; refused unless that is `base`'s recorded state hash,
        then remembered with the directory's fingerprint."""
        digests = tensor_digests(loaded.model)
        found = root_hash(digests)
        if found != base.state_hash:
            raise LifecycleError(f"base model {base.name!r}: {source} has state hash {found[:12]} in {dtype}, the "
                                 f"ledger recorded {base.state_hash[:12]}; {refusal}")
        self.base_digests.remember(base.state_hash, dtype, source, fingerprint, digests)
        return digests

    @staticmethod
    def _state_hash_after(loaded: LoadedModel, base_digests: dict[str, bytes] | None, changed: set[str]) -> str:
        """The state hash of a base model whose `changed` tensors were written: only those are hashed again
        when the base's digests are known."""
        known = {n: d for n, d in (base_digests or {}).items() if n not in changed}
        return root_hash(tensor_digests(loaded.model, known))

    def corpus_for(self, base_name: str, corpus: Path | None) -> Path:
        """The corpus of a base model's C0: `corpus` if given, else that of its newest statistics record, else
        the one `model add --corpus` named."""
        if corpus is not None:
            return Path(corpus)
        statistics = self.ledger.statistics(base_name)
        recorded = statistics[0].corpus_path if statistics else None
        recorded = recorded or self.ledger.base_model(base_name).config.get("editledger_corpus")
        if not recorded:
            raise LifecycleError(
                f"no statistics corpus for model {base_name!r}: run `editledger stats {base_name} --corpus FILE`"
            )
        return Path(recorded)

    def compute_stats(self, base_name: str, corpus: Path, layers: Sequence[int] | None = None,
                      sample_count: int | None = None, method: str = "nse", actor: str | None = None):
        loaded = self.load_base(base_name)
        hp = self._derived_hparams(loaded, base_name, method)
        layers = list(layers) if layers else list(hp.layers)
        samples = sample_count or hp.mom2_n_samples
        base = self.ledger.base_model(base_name)
        _, shas = cached_second_moments(loaded, layers, Path(corpus), samples, hp.mom2_dtype,
                                        self.ledger.store, base.state_hash)
        fault_point("stats.computed")
        recorded = self._record_statistics(base_name, Path(corpus), samples, hp.mom2_dtype, shas)
        self.ledger.record_audit("stats", actor or _author(), None, {
            "model": base_name, "corpus": recorded.corpus_path, "corpus_sha256": recorded.corpus_sha256,
            "layers": layers, "sample_count": samples, "dtype": hp.mom2_dtype,
            "blobs": {str(k): v for k, v in shas.items()},
        })
        return layers, shas

    def _record_statistics(self, base_name: str, corpus: Path, samples: int, dtype: str, shas: dict[int, str]):
        return self.ledger.record_statistics(base_name, str(corpus.resolve()), file_sha256(corpus), samples, dtype,
                                             shas)

    # ---------------------------------------------------------------- reading history
    def rounds_of(self, ref: str) -> list[Round]:
        """The rounds that produce version `ref` from its base, in order (the ledger's one definition)."""
        return self.ledger.rounds(ref)

    def rebuild_cp(self, ref: str, lineage: Lineage | None = None,
                   history: Sequence[tuple[VersionInfo, list[ArtifactRef]]] | None = None) -> dict[int, torch.Tensor]:
        """Cp at a version: zeros plus every recorded key block of its history, in the order they were added
        (each version's keys after those of the version it continues: its parent, or a revert's anchor)."""
        lineage = lineage or self.ledger.lineage(ref)
        history = history if history is not None else self.ledger.ancestry_artifacts(lineage.head.commit_hash)
        artifacts_of = {version.commit_hash: artifacts for version, artifacts in history}
        blocks: list[list[str]] = []
        at: str | None = lineage.head.commit_hash
        while at is not None:
            blocks.append(_keys_blobs(artifacts_of[at]))
            at = lineage.step(at).start
        cp: dict[int, torch.Tensor] = {}
        for sha in (sha for block in reversed(blocks) for sha in block):
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
                    "dtype": self.dtype_of(last.base_model),
                })
            except StoreUnavailableError:
                pass  # a snapshot is a cache: a store this machine may only read (or that failed now) skips it

    def _snapshot_key(self, version: VersionInfo) -> str:
        return hashlib.sha256(f"{version.commit_hash}:{self.dtype_of(version.base_model)}".encode()).hexdigest()

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
        branch = ref if any(b.name == ref for b in self.ledger.branches()) else None
        write_provenance(self.ledger, version.commit_hash, staging, branch=branch, dtype=self.dtype)
        _readable(staging)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
        self.ledger.record_audit("checkout", actor or _author(), version.commit_hash,
                                 {"out": str(out.resolve()), "state_hash": version.state_hash})
        return out

    def _derived_hparams(self, loaded: LoadedModel, base_name: str, method: str) -> EditHparams:
        """Defaults for the loaded base, starting from what its model directory said editing it needs."""
        return derive_hparams(loaded, method, **self.ledger.base_model(base_name).config.get(HPARAMS_KEY, {}))

    # ---------------------------------------------------------------- engine state at a version
    def _state_at(self, ref: str, method: str, hparams: EditHparams | dict | None, corpus: Path | None,
                  overrides: dict | None = None, recorded_in: str | None = None, mode: str | None = None,
                  ) -> tuple[EditState, LoadedModel, list[ArtifactRef]]:
        """The model and engine state at version `ref`. Templates, C0 and cached z* are read from the history of
        `recorded_in` (default `ref`): a revert or a replay reads back what the original rounds recorded."""
        history = self.ledger.ancestry_artifacts(ref)
        recorded = self.ledger.ancestry_artifacts(recorded_in) if recorded_in else history
        lineage = self.ledger.lineage(history[-1][0].commit_hash)
        chain = [version for version, _ in history]
        # Before anything loads: portable numerics in a native process restart it (NumericsRestart).
        self.active_numerics = use_numerics(mode or self._branch_numerics(chain), str(resolve_device(self.device)))
        base = self.ledger.base_model(chain[0].base_model)
        loaded, base_digests = self._load_base(base.name, None, verify=True)
        if isinstance(hparams, dict):
            hp = EditHparams.from_dict(hparams)
        elif hparams is not None:
            hp = hparams
        else:
            previous = next((v.hparams for v in reversed(chain) if v.kind == "edit" and v.method == method), None)
            hp = EditHparams.from_dict(previous) if previous else self._derived_hparams(loaded, base.name, method)
            if overrides:
                hp = EditHparams.from_dict({**hp.to_dict(), **overrides})
        apply_determinism(hp.seed)
        c0, c0_refs = self._c0(recorded, loaded, hp, corpus)
        templates, templates_ref = self._templates(recorded, loaded, hp)
        original = rewrite_weights_copy(loaded)
        self._apply_history(loaded, base_digests, history)
        state = EditState(loaded, hp, templates, c0, original_weights=original,
                          cp=self.rebuild_cp(ref, lineage, history), zstar_cache=self._zstar_cache(recorded, hp))
        return state, loaded, [*c0_refs, templates_ref]

    def _environment(self, loaded: LoadedModel) -> dict:
        return environment_record(loaded, self.active_numerics)

    def _branch_numerics(self, chain: Sequence[VersionInfo]) -> str:
        """The numerics of new work after `chain`: the workspace's choice, else the last one recorded there."""
        recorded = (v.environment.get("numerics") for v in reversed(chain) if v.kind != "base")
        return self.numerics or next((mode for mode in recorded if mode), "native")

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
        self._record_statistics(base.base_model, path, hp.mom2_n_samples, hp.mom2_dtype, shas)
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
        count = hp.extra.get(CONTEXT_TEMPLATES, len(SEED_WORDS))
        if not (isinstance(count, int) and 0 <= count <= len(SEED_WORDS)):
            raise HparamsError(f"--set extra={{\"{CONTEXT_TEMPLATES}\": {count!r}}}: expected 0 to {len(SEED_WORDS)}")
        templates = generate_context_templates(loaded, hp.template_seed, count)
        return templates, put_json(self.ledger.store, "templates", templates)

    def _zstar_cache(self, history, hp: EditHparams) -> dict[str, torch.Tensor]:
        """z* recorded by earlier NSE rounds with the same hyperparameters: valid for any later round (rewinding)."""
        cache: dict[str, torch.Tensor] = {}
        wanted = hp.to_dict()
        for version, artifacts in history[1:]:
            # Compared as read today: a field added since (with its default) does not make old z* foreign.
            if version.method != "nse" or EditHparams.from_dict(version.hparams).to_dict() != wanted:
                continue
            ref = _role(artifacts, "zstar")
            if ref is not None:
                cache.update(get_tensors(self.ledger.store, ref.sha256))
        return cache

    # ---------------------------------------------------------------- edit
    def edit(self, requests: Sequence[EditRequest], *, branch: str = "main", method: str = "nse",
             batch_size: int = 20, author: str | None = None, reason: str = "", evaluate: bool = False,
             corpus: Path | None = None, overrides: dict | None = None, retry: int = 0,
             strict: bool = False) -> list:
        """Apply requests in rounds of `batch_size`; each round is one recorded version.

        A request that did not take, and every request of a round that changed no weight, gets a warning line
        (`warn`); `strict` records nothing when there is any (UnsuccessfulEditError). SIGINT stops the edit with
        EditInterrupted, naming the rounds already recorded; the interrupted round is not recorded."""
        head = self.ledger.resolve(branch)
        overrides = self._check_edit_input(requests, head.base_model, method, batch_size, overrides or {})
        author = author or _author()
        recorded: list[VersionInfo] = []
        batches = [list(requests[i:i + batch_size]) for i in range(0, len(requests), batch_size)]
        try:
            state, loaded, context_refs = self._state_at(head.commit_hash, method, None, corpus, overrides)
            needed, free = estimate_round_bytes(loaded, state.hparams, len(batches[0])), available_memory_bytes()
            if needed > free:
                raise LifecycleError(
                    f"--batch-size {len(batches[0])}: a round needs about {_gib(needed)}, only {_gib(free)} "
                    f"is available; use a smaller batch"
                )
            earlier = self._history_requests(head.commit_hash) if evaluate else []
            if strict:
                return self._edit_strict(state, loaded, context_refs, batches, branch, head.commit_hash, method,
                                         author, reason, evaluate, earlier, recorded)
            current = head.commit_hash
            for number, batch in enumerate(batches, 1):
                self.say(f"round {number}/{len(batches)}: {len(batch)} requests with {method}")
                attempts = 0
                while True:
                    draft = self._edit_draft(state, loaded, context_refs, batch, current, method, author, reason,
                                             [*earlier, *batch] if evaluate else None)
                    try:
                        self._append_reported(draft, branch, current, recorded)
                        break
                    except ConflictError as error:
                        attempts += 1
                        if attempts > retry:
                            raise error from None
                        current = self.ledger.resolve(branch).commit_hash
                        self.say(f"branch {branch!r} moved; retrying on {current[:12]}")
                        state, loaded, context_refs = self._state_at(current, method, None, corpus, overrides)
                        earlier = self._history_requests(current) if evaluate else []
                current = recorded[-1].commit_hash
                earlier += batch
        except KeyboardInterrupt:
            raise EditInterrupted(recorded) from None
        return recorded

    def _edit_strict(self, state: EditState, loaded: LoadedModel, context_refs: list[ArtifactRef],
                     batches: list[list[EditRequest]], branch: str, head: str, method: str, author: str,
                     reason: str, evaluate: bool, earlier: list[EditRequest], recorded: list[VersionInfo]) -> list:
        """Every round computed first; recorded only when none has a warning."""
        drafts, warnings = [], 0
        for number, batch in enumerate(batches, 1):
            self.say(f"round {number}/{len(batches)}: {len(batch)} requests with {method}")
            before = len(self._warned)
            drafts.append(self._edit_draft(state, loaded, context_refs, batch, head, method, author, reason,
                                           [*earlier, *batch] if evaluate else None))
            warnings += len(self._warned) - before
            earlier += batch
        if warnings:
            raise UnsuccessfulEditError(
                f"--strict: {warnings} of {sum(map(len, batches))} requests did not take or changed no weight "
                f"(warnings above); nothing recorded"
            )
        current = head
        for draft in drafts:
            self._append_reported(draft, branch, current, recorded)
            current = recorded[-1].commit_hash
        return recorded

    def _append_reported(self, draft: VersionDraft, branch: str, head: str, recorded: list[VersionInfo]) -> None:
        """Append a round's version; SIGINT waits until it is in `recorded` (or refused), never between."""
        with interrupts_deferred():
            recorded.append(self.ledger.append_version(draft, branch, expected_head=head))

    def _check_edit_input(self, requests: Sequence[EditRequest], base_name: str, method: str, batch_size: int,
                          overrides: dict) -> dict:
        """What can be refused before any model loads: method, batch size, `--set` values, and the requests
        with the base's tokenizer alone (prompts, subjects found, targets not the unknown token)."""
        from transformers import AutoTokenizer

        if not requests:
            raise LifecycleError("no requests to edit")
        if method not in METHODS:
            raise LifecycleError(f"--method {method!r}: unknown method; choose one of {', '.join(METHODS)}")
        if batch_size < 1:
            raise LifecycleError(f"--batch-size {batch_size}: must be at least 1")
        if method == "rome" and min(batch_size, len(requests)) > 1:
            raise LifecycleError(f"--batch-size {batch_size}: rome edits one request per round; use --batch-size 1")
        config = self.ledger.base_model(base_name).config
        n_layers = config.get("num_hidden_layers", config.get("n_layer"))
        checked = check_overrides(overrides, n_layers if isinstance(n_layers, int) else None)
        self.dtype_of(base_name)
        tokenizer = AutoTokenizer.from_pretrained(check_model_directory(self.base_directory(base_name)),
                                                  local_files_only=True)
        check_requests(tokenizer, requests)
        validate_known_tokens(tokenizer, requests)
        return checked

    def _edit_draft(self, state: EditState, loaded: LoadedModel, context_refs: list[ArtifactRef],
                    batch: list[EditRequest], head: str, method: str, author: str, reason: str,
                    scored: list[EditRequest] | None) -> VersionDraft:
        """One round computed on the in-memory model and its version drafted (its blobs stored first)."""
        result = run_round(state, batch, method)
        for line in outcome_warnings(result, batch):
            self._warned.append(line)
            self.warn(f"warning: {line}")
        fault_point("edit.round_computed")
        artifacts = self._round_artifacts(result, context_refs)
        draft = VersionDraft(
            kind="edit", base_model=self.ledger.resolve(head).base_model, state_hash=state_hash(loaded.model),
            author=author, reason=reason, method=method, hparams=result.hparams,
            environment=self._environment(loaded), requests=[RequestEntry(r) for r in batch],
            footprint=result.footprint, outcomes=result.outcomes, artifacts=artifacts,
        )
        if scored is not None:
            draft.scores = self._scores(loaded, scored)
        fault_point("edit.artifacts_stored")
        return draft

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
        return self.ledger.lineage(ref).live_requests()

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
        """Append a version whose model is the replay of the wanted history: the branch's rounds without `target`
        (a request, or the version that applied a round), or, when `target` is a revert, with the requests it
        removed back in their rounds (as `git revert` of a revert). The replay starts from the anchor, the latest
        ancestor whose rounds are the longest prefix of the wanted history, and computes every round after it."""
        head = self.ledger.resolve(branch)
        lineage = self.ledger.lineage(head.commit_hash)
        wanted, reverted, undone = self._wanted_history(target, lineage)
        anchor, kept = lineage.anchor(wanted)
        replayed = wanted[kept:]
        self.say(f"revert: replaying {len(replayed)} rounds from {anchor[:12]}")
        head_model, _ = self.checkout_model(head.commit_hash)
        before = rewrite_weights_copy(head_model)
        if replayed:
            loaded, context_refs, results = self._replay_from(anchor, replayed, recorded_in=head.commit_hash)
        else:  # the wanted history is an ancestor's: its recorded model, nothing to compute
            loaded, context_refs, results = self._rewound(head_model, head.commit_hash, anchor), [], []
        fault_point("revert.replayed")
        artifacts = [put_tensors(self.ledger.store, "delta", changes_to_tensors(diff_changes(loaded.model, before)))]
        artifacts += [self._keys_artifact(index, result) for index, result in enumerate(results)]
        artifacts.extend(context_refs)
        entries = [RequestEntry(request, "reverted") for request in reverted]
        entries += [RequestEntry(r, "replayed") for round_ in replayed for r in round_.requests]
        draft = VersionDraft(
            kind="revert", base_model=head.base_model, state_hash=state_hash(loaded.model),
            author=author or _author(), reason=reason, method=replayed[0].method if replayed else None,
            hparams=replayed[0].hparams if replayed else {}, environment=self._environment(loaded),
            requests=entries, footprint=_renumbered_passes(results),
            outcomes=[o for result in results for o in result.outcomes], artifacts=artifacts,
            revert=RevertRecord(anchor=anchor, rounds=tuple(r.record() for r in replayed), reverted_version=undone),
        )
        fault_point("revert.artifacts_stored")
        info = self.ledger.append_version(draft, branch, expected_head=head.commit_hash)
        live = {q.request_key for round_ in wanted for q in round_.requests}
        restored = sorted(live - {q.request_key for q in lineage.live_requests()})
        self.ledger.record_audit("revert", draft.author, info.commit_hash, {
            "target": target, "reverted": [r.request_key for r in reverted], "restored": restored,
            "anchor": anchor, "replayed_rounds": len(replayed),
        })
        return info

    def _rewound(self, loaded: LoadedModel, head: str, ancestor: str) -> LoadedModel:
        """The model of `ancestor`, from the model of `head` (changed in place): when only a few versions lie
        between them, write back the old values of their recorded changes, newest first (cheaper than a checkout
        of a version that has no snapshot); checked against `ancestor`'s recorded state hash."""
        history = self.ledger.ancestry_artifacts(head)
        commits = [version.commit_hash for version, _ in history]
        after = history[commits.index(ancestor) + 1:]
        if len(after) > REWIND_LIMIT:
            return self.checkout_model(ancestor)[0]
        for _, artifacts in reversed(after):
            delta = _role(artifacts, "delta")
            if delta is not None:
                changes = changes_from_tensors(get_tensors(self.ledger.store, delta.sha256))
                apply_changes(loaded.model, [replace(c, new=c.old) for c in changes.values()])
        if state_hash(loaded.model) != history[commits.index(ancestor)][0].state_hash:
            return self.checkout_model(ancestor)[0]  # a change that does not undo exactly: rebuild and verify
        return loaded

    def _wanted_history(self, target: str, lineage: Lineage) -> tuple[list[Round], list[EditRequest], str | None]:
        """(wanted rounds, requests removed, the revert undone or None) for reverting `target` at the lineage's
        head."""
        rounds = lineage.rounds()
        try:
            version = self.ledger.resolve(target)
        except LedgerError:
            version = None
        if version is not None and version.kind == "revert" and version.commit_hash in lineage:
            return self._restored_history(lineage, version.commit_hash), [], version.commit_hash
        by_source = {r.source: r for r in rounds}
        if version is not None and version.commit_hash in by_source:
            removed = set(by_source[version.commit_hash].request_keys)
        else:
            try:
                key = self.ledger.request(target).request.request_key
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

    @staticmethod
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

    def replay_same_base(self, ref: str) -> list[ReplayStep]:
        """Recompute every version of `ref`'s history on its base, each under the numerics it recorded, and
        compare with the recorded state hashes (explaining any difference: `ReplayStep`). One edit state carries on
        from version to version; a revert starts again from its anchor's model."""
        lineage = self.ledger.lineage(ref)
        base = lineage.steps[0].version
        steps: list[ReplayStep] = [ReplayStep(base.commit_hash, "base", base.state_hash, base.state_hash)]
        state = loaded = None
        at: str | None = None  # the version whose model `state` holds
        for step in lineage.steps[1:]:
            version = step.version
            mode = version.environment.get("numerics", "native")
            if state is None or step.start != at or mode != self.active_numerics:
                first = step.rounds[0] if step.rounds else None
                state, loaded, _ = self._state_at(step.start or base.commit_hash, first.method if first else "nse",
                                                  first.hparams if first else None, None, recorded_in=ref, mode=mode)
            results = self._replay(state, loaded, step.rounds)
            replayed = ReplayStep(version.commit_hash, version.kind, version.state_hash, state_hash(loaded.model))
            if not replayed.ok:
                self._explain(replayed, version, loaded, results)
            steps.append(replayed)
            self.say(f"replayed {version.commit_hash[:12]} ({version.kind}): "
                     f"{'same state hash' if replayed.ok else 'DIFFERENT state hash'}")
            at = version.commit_hash
            if not replayed.ok:
                state = None  # continue from the recorded state of the next version's start
        return steps

    def _explain(self, step: ReplayStep, version: VersionInfo, replayed: LoadedModel, results: Sequence) -> None:
        """Why a replay gave another state hash: the numerics that differ from the recorded ones, the distance of
        the rewritten weights from the recorded weights, and whether every request ended as recorded."""
        now = self._environment(replayed)
        step.numerics_differ = numerics_differences(version.environment, now)
        step.bit_exact_promised = bit_exact_promised(version.environment, now)
        recorded_weights = rewrite_weights_copy(self.checkout_model(version.commit_hash)[0])
        replayed_weights = rewrite_weights_copy(replayed)
        step.distance = max(
            float((replayed_weights[name].double() - weight.double()).abs().max()
                  / weight.double().abs().max().clamp_min(1e-30))
            for name, weight in recorded_weights.items()
        )
        recorded = {o.request_key: o.status for o in self.ledger.show(version.commit_hash).outcomes}
        replayed_outcomes = {o.request_key: o.status for result in results for o in result.outcomes}
        step.outcomes_same = recorded == replayed_outcomes

    def replay_onto(self, branch: str, model_dir: Path, *, base_name: str, new_branch: str,
                    corpus: Path | None = None, author: str | None = None) -> ReplayOntoReport:
        """Recompute a branch's history (z* included) on another base model, recorded on a new branch. One edit
        state carries through every round (the new base is loaded once)."""
        from editor.evaluate import evaluate_requests

        source_head = self.ledger.resolve(branch)
        rounds = self.ledger.rounds(source_head.commit_hash)
        corpus = self.corpus_for(source_head.base_model, corpus)
        if not any(b.name == new_branch for b in self.ledger.branches()):
            self.add_model(base_name, model_dir, branch=new_branch, author=author, corpus=corpus,
                           dtype=self.dtype_of(source_head.base_model))  # the new base in the old one's dtype
        elif self.ledger.resolve(new_branch).kind != "base" or self.ledger.resolve(new_branch).base_model != base_name:
            raise LifecycleError(f"--new-branch {new_branch!r}: branch exists and has versions")
        head = self.ledger.resolve(new_branch).commit_hash
        report = ReplayOntoReport(branch=new_branch, base_model=base_name, versions=[])
        if rounds:
            state, loaded, context_refs = self._state_at(head, rounds[0].method, rounds[0].hparams, corpus)
            state.zstar_cache.clear()  # z* belongs to the old base: recompute on the new one

            def record(round_: Round, result) -> None:
                nonlocal head
                artifacts = self._round_artifacts(result, context_refs)
                draft = VersionDraft(
                    kind="replay", base_model=base_name, state_hash=state_hash(loaded.model),
                    author=author or _author(), reason=f"replay of {round_.source[:12]} from branch {branch}",
                    method=round_.method, hparams=result.hparams, environment=self._environment(loaded),
                    requests=[RequestEntry(r, "replayed") for r in round_.requests], footprint=result.footprint,
                    outcomes=result.outcomes, artifacts=artifacts, extra={"replay_of": round_.source},
                )
                fault_point("replay.artifacts_stored")
                head = self.ledger.append_version(draft, new_branch, expected_head=head).commit_hash
                report.versions.append(head)
                self.say(f"replay onto {base_name}: round {len(report.versions)}/{len(rounds)}")

            self._replay(state, loaded, rounds, on_round=record)
        requests = [r for round_ in rounds for r in round_.requests]
        if requests:
            final, _ = self.checkout_model(head)
            evaluation = evaluate_requests(final.model, final.tokenizer, requests)
            for request, row in zip(requests, evaluation.per_request, strict=True):
                report.took[request.request_key] = bool(row.get("efficacy_argmax", row.get("efficacy", 0.0)) >= 1.0)
                report.subjects[request.request_key] = request.subject
        return report


def _readable(directory: Path) -> None:
    """An export is for sharing: 0755 directories and 0644 files (mkdtemp and some writers make them private)."""
    directory.chmod(0o755)
    for path in directory.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


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
