"""Base models and their statistics: recording a base (from a directory or a GGUF file), finding and loading it
verified by its state hash, recording a new place for it, and the C0 statistics of its corpus."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from editor.errors import LifecycleError
from editor.gguf import SOURCE_KEY, convert_gguf, converted_directory, inspect_gguf
from editor.hashing import directory_fingerprint, file_sha256, root_hash, tensor_digests
from editor.hparams import EditHparams, derive_hparams, read_model_hparams
from editor.model import LoadedModel, check_model_directory, load_model
from editor.session import Session, author_name
from editor.stats import cached_second_moments
from editor.tracing import TRACE_PROMPTS, trace_model
from ledger.faults import fault_point
from ledger.infos import BaseModelInfo, StatisticsInfo, VersionInfo
from ledger.records import EditRequest

NUMERICS_KEY = "editledger_numerics"  # in a base model's recorded config: the dtype (and device) it was added in
HPARAMS_KEY = "editledger_edit_hparams"  # in a base model's recorded config: what its directory said editing needs
TRACE_KEY = "editledger_layer_trace"  # in a base model's recorded config: the causal trace its layers came from
UNRECORDED_DTYPE = "float32"  # bases recorded before their numerics were: editledger then always loaded float32


def add_model(session: Session, name: str, path: Path, *, branch: str = "main", author: str | None = None,
              corpus: Path | None = None, dtype: str | None = None, source: dict | None = None,
              trace_requests: Sequence[EditRequest] | None = None, trace_limit: int = TRACE_PROMPTS) -> VersionInfo:
    """Record a base model by its state hash in `dtype` (default: the session's, else float32); `source`:
    where its directory came from (a GGUF file's record), kept in its recorded config. With `trace_requests`,
    the blocks to edit are measured on the model (causal tracing over up to `trace_limit` of those facts it
    knows) and recorded with it: every edit of it starts from them."""
    dtype = dtype or session.dtype or UNRECORDED_DTYPE
    check_model_directory(path)
    if corpus is not None and not Path(corpus).is_file():
        raise LifecycleError(f"--corpus {corpus}: file not found")
    # What editing it needs, refused before the model loads when it does not fit the model's depth.
    depth = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    needs = read_model_hparams(Path(path), depth.get("num_hidden_layers", depth.get("n_layer")))
    fingerprint = directory_fingerprint(Path(path))
    loaded = load_model(path, device=session.device, dtype=dtype)
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
    version = session.ledger.add_base_model(
        name, root_hash(digests), loaded.arch.family, config, str(Path(path).resolve()),
        branch=branch, author=author or author_name(),
    )
    session.bases_added.add(name)
    session.base_dtypes[name] = dtype
    # The first edit or checkout then hashes only what it writes.
    session.base_digests.remember(version.base_state_hash, dtype, Path(path), fingerprint, digests)
    return version


def add_model_gguf(session: Session, name: str, gguf: str | Path, *, out: Path | None = None, branch: str = "main",
                   author: str | None = None, corpus: Path | None = None, dtype: str | None = None,
                   trace_requests: Sequence[EditRequest] | None = None,
                   trace_limit: int = TRACE_PROMPTS) -> VersionInfo:
    """Record a base model from a GGUF file (or a path inside an installed package): checked, converted once
    to a safetensors directory (`out`, default under the ledger's `.editledger/bases/`), recorded with the
    file's SHA-256 and the conversion's versions. Nothing is recorded when any step fails."""
    dtype = dtype or session.dtype or UNRECORDED_DTYPE
    if any(base.name == name for base in session.ledger.base_models()):
        raise LifecycleError(f"base model {name!r} is already recorded")
    if corpus is not None and not Path(corpus).is_file():
        raise LifecycleError(f"--corpus {corpus}: file not found")
    path, source = inspect_gguf(gguf, dtype)
    directory = convert_gguf(path, source, out or converted_directory(converted_bases_dir(session), source))
    return add_model(session, name, directory, branch=branch, author=author, corpus=corpus, dtype=dtype,
                     source=source.record(), trace_requests=trace_requests, trace_limit=trace_limit)


def converted_bases_dir(session: Session) -> Path:
    return Path(session.ledger.root) / ".editledger" / "bases"


def dtype_of(session: Session, base_name: str) -> str:
    """The dtype a base model was recorded in; an explicit other `dtype` is refused, naming both."""
    if base_name not in session.base_dtypes:
        numerics = session.ledger.base_model(base_name).config.get(NUMERICS_KEY) or {}
        recorded = numerics.get("dtype", UNRECORDED_DTYPE)
        if session.dtype is not None and session.dtype != recorded:
            raise LifecycleError(
                f"--dtype {session.dtype}: base model {base_name!r} was recorded in {recorded}, and its state "
                f"hashes hold only in {recorded}; omit --dtype to use it"
            )
        session.base_dtypes[base_name] = recorded
    return session.base_dtypes[base_name]


def base_directory(session: Session, name: str, path: Path | None = None) -> Path:
    """Where base model `name` is read from: `path`, else the session's `base_path`, else this machine's
    configured one, else the recorded one."""
    if path is None and session.base_path is not None and name not in session.bases_added:
        path = session.base_path
    # This machine's own place for it (`connect --model NAME=PATH`), else where it was recorded.
    recorded = session.ledger.model_paths.get(name) or session.ledger.base_model(name).source_path
    source = Path(path) if path is not None else Path(recorded or "")
    if not source.is_dir():
        raise LifecycleError(
            f"base model {name!r}: directory {str(source)!r} not found (give --base-path DIR, or record its "
            f"new place with `editledger model relocate {name} --path DIR`)"
        )
    return source


def relocate(session: Session, name: str, path: Path, actor: str | None = None) -> Path:
    """Record a new directory for base model `name`, after hashing the model there in full: refused unless
    it has the recorded state hash."""
    base = session.ledger.base_model(name)
    path = check_model_directory(path).resolve()
    dtype = dtype_of(session, name)
    fingerprint = directory_fingerprint(path)
    loaded = load_model(path, device=session.device, dtype=dtype)
    checked_digests(session, base, loaded, dtype, path, fingerprint, f"--path {path}: not relocated")
    session.ledger.relocate_base_model(name, str(path), actor or author_name())
    return path


def load_base(session: Session, name: str, path: Path | None,
              verify: bool) -> tuple[LoadedModel, dict[str, bytes] | None]:
    """The base model and its verified per-tensor digests: remembered ones while none of its files changed
    (unless `full_verify`), else hashed now when `verify` (None when neither)."""
    base = session.ledger.base_model(name)
    dtype = dtype_of(session, name)
    source = base_directory(session, name, path)
    fingerprint = directory_fingerprint(source)
    loaded = load_model(source, device=session.device, dtype=dtype)
    digests = None if session.full_verify else session.base_digests.lookup(base.state_hash, dtype, fingerprint)
    if verify and digests is None:
        digests = checked_digests(session, base, loaded, dtype, source, fingerprint,
                                  "refusing to apply edits to another model")
    return loaded, digests


def checked_digests(session: Session, base: BaseModelInfo, loaded: LoadedModel, dtype: str, source: Path,
                    fingerprint: dict[str, list[int]], refusal: str) -> dict[str, bytes]:
    """Every tensor of `loaded` (read from `source`) hashed; refused unless that is `base`'s recorded state hash,
    then remembered with the directory's fingerprint."""
    digests = tensor_digests(loaded.model)
    found = root_hash(digests)
    if found != base.state_hash:
        raise LifecycleError(f"base model {base.name!r}: {source} has state hash {found[:12]} in {dtype}, the "
                             f"ledger recorded {base.state_hash[:12]}; {refusal}")
    session.base_digests.remember(base.state_hash, dtype, source, fingerprint, digests)
    return digests


def derived_hparams(session: Session, loaded: LoadedModel, base_name: str, method: str) -> EditHparams:
    """Defaults for the loaded base, starting from what its model directory said editing it needs."""
    return derive_hparams(loaded, method, **session.ledger.base_model(base_name).config.get(HPARAMS_KEY, {}))


def corpus_for(session: Session, base_name: str, corpus: Path | None) -> Path:
    """The corpus of a base model's C0: `corpus` if given, else that of its newest statistics record, else
    the one `model add --corpus` named."""
    if corpus is not None:
        return Path(corpus)
    statistics = session.ledger.statistics(base_name)
    recorded = statistics[0].corpus_path if statistics else None
    recorded = recorded or session.ledger.base_model(base_name).config.get("editledger_corpus")
    if not recorded:
        raise LifecycleError(
            f"no statistics corpus for model {base_name!r}: run `editledger stats {base_name} --corpus FILE`"
        )
    return Path(recorded)


def compute_stats(session: Session, base_name: str, corpus: Path, layers: Sequence[int] | None = None,
                  sample_count: int | None = None, method: str = "nse",
                  actor: str | None = None) -> tuple[list[int], dict[int, str]]:
    loaded = load_base(session, base_name, None, verify=True)[0]
    hp = derived_hparams(session, loaded, base_name, method)
    layers = list(layers) if layers else list(hp.layers)
    samples = sample_count or hp.mom2_n_samples
    base = session.ledger.base_model(base_name)
    _, shas = cached_second_moments(loaded, layers, Path(corpus), samples, hp.mom2_dtype,
                                    session.ledger.store, base.state_hash)
    fault_point("stats.computed")
    recorded = record_statistics(session, base_name, Path(corpus), samples, hp.mom2_dtype, shas)
    session.ledger.record_audit("stats", actor or author_name(), None, {
        "model": base_name, "corpus": recorded.corpus_path, "corpus_sha256": recorded.corpus_sha256,
        "layers": layers, "sample_count": samples, "dtype": hp.mom2_dtype,
        "blobs": {str(k): v for k, v in shas.items()},
    })
    return layers, shas


def record_statistics(session: Session, base_name: str, corpus: Path, samples: int, dtype: str,
                      shas: dict[int, str]) -> StatisticsInfo:
    """Which corpus (by its SHA-256), how many samples and which dtype the C0 blobs `shas` came from."""
    return session.ledger.record_statistics(base_name, str(corpus.resolve()), file_sha256(corpus), samples, dtype,
                                            shas)
