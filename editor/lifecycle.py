"""The lifecycle: the engine joined to the ledger. Edit, record, checkout, revert, replay, verify.

Every operation reads the ledger, works on a model in memory, stores its artifacts first and then appends one
version in one database transaction: an error or a kill before that commit leaves the ledger as it was.

The history of a version is a list of *rounds* (requests, method, hyperparameters, and the version that first
applied them), read from the ledger (`ledger.history`). An edit appends one round; a revert computes the wanted
history (without the reverted requests, or for a revert of a revert, with the requests it removed back in their
rounds), starts from the latest ancestor whose rounds are the longest prefix of it (its *anchor*) and replays the
rest; a replay recomputes the rounds on the same or another base. Cp at any version is the sum of the keys its
rounds recorded, in order, from its anchor back to the base.

`Workspace` is the facade: it holds the ledger, the engine settings, the caches and where progress goes (its
`Session`), and hands each call to the module that owns the operation (docs/map.md, `editor/`): `bases`
(base models, statistics), `versions` (a version's model and engine state), `editing`, `scoring`, `exporting`,
`replaying`, `reverting`. The names callers import from here are re-exported from those modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from editor import bases, editing, exporting, replaying, reverting, scoring, versions
from editor.bases import HPARAMS_KEY, NUMERICS_KEY, TRACE_KEY, UNRECORDED_DTYPE
from editor.editing import available_memory_bytes, estimate_round_bytes, interrupts_deferred
from editor.errors import LifecycleError, RebuildError
from editor.evaluate import EvalReport
from editor.model import LoadedModel
from editor.replaying import ReplayOntoReport, ReplayStep
from editor.reverting import REWIND_LIMIT
from editor.session import ProgressFn, Session
from editor.tracing import TRACE_PROMPTS
from editor.versions import CONTEXT_TEMPLATES, SNAPSHOT_INDEX, History
from ledger.history import Lineage, Round
from ledger.infos import VersionInfo
from ledger.records import EditRequest

__all__ = [
    "CONTEXT_TEMPLATES",
    "HPARAMS_KEY",
    "NUMERICS_KEY",
    "REWIND_LIMIT",
    "SNAPSHOT_INDEX",
    "TRACE_KEY",
    "UNRECORDED_DTYPE",
    "LifecycleError",
    "ProgressFn",
    "RebuildError",
    "ReplayOntoReport",
    "ReplayStep",
    "Round",
    "Workspace",
    "available_memory_bytes",
    "estimate_round_bytes",
    "interrupts_deferred",
]


class Workspace(Session):
    """A ledger plus the engine settings used to materialise its models; one method per lifecycle operation."""

    # ---------------------------------------------------------------- base models and statistics
    def add_model(self, name: str, path: Path, *, branch: str = "main", author: str | None = None,
                  corpus: Path | None = None, dtype: str | None = None, source: dict | None = None,
                  trace_requests: Sequence[EditRequest] | None = None, trace_limit: int = TRACE_PROMPTS,
                  ) -> VersionInfo:
        """`bases.add_model`: record a base model by its state hash (optionally its traced layers)."""
        return bases.add_model(self, name, path, branch=branch, author=author, corpus=corpus, dtype=dtype,
                               source=source, trace_requests=trace_requests, trace_limit=trace_limit)

    def add_model_gguf(self, name: str, gguf: str | Path, *, out: Path | None = None, branch: str = "main",
                       author: str | None = None, corpus: Path | None = None, dtype: str | None = None,
                       trace_requests: Sequence[EditRequest] | None = None,
                       trace_limit: int = TRACE_PROMPTS) -> VersionInfo:
        """`bases.add_model_gguf`: record a base model from a GGUF file, converted once."""
        return bases.add_model_gguf(self, name, gguf, out=out, branch=branch, author=author, corpus=corpus,
                                    dtype=dtype, trace_requests=trace_requests, trace_limit=trace_limit)

    def converted_bases_dir(self) -> Path:
        return bases.converted_bases_dir(self)

    def dtype_of(self, base_name: str) -> str:
        return bases.dtype_of(self, base_name)

    def base_directory(self, name: str, path: Path | None = None) -> Path:
        return bases.base_directory(self, name, path)

    def relocate(self, name: str, path: Path, actor: str | None = None) -> Path:
        return bases.relocate(self, name, path, actor)

    def load_base(self, name: str, path: Path | None = None, verify: bool = True) -> LoadedModel:
        """Load a recorded base model and refuse it if its weights are not the recorded ones (`verify=False`:
        the caller checks a state hash computed later and loads again with verify to explain a mismatch)."""
        return bases.load_base(self, name, path, verify)[0]

    def corpus_for(self, base_name: str, corpus: Path | None) -> Path:
        return bases.corpus_for(self, base_name, corpus)

    def compute_stats(self, base_name: str, corpus: Path, layers: Sequence[int] | None = None,
                      sample_count: int | None = None, method: str = "nse",
                      actor: str | None = None) -> tuple[list[int], dict[int, str]]:
        return bases.compute_stats(self, base_name, corpus, layers, sample_count, method, actor)

    # ---------------------------------------------------------------- versions
    def rounds_of(self, ref: str) -> list[Round]:
        """The rounds that produce version `ref` from its base, in order (the ledger's one definition)."""
        return self.ledger.rounds(ref)

    def rebuild_cp(self, ref: str, lineage: Lineage | None = None,
                   history: History | None = None) -> dict[int, torch.Tensor]:
        return versions.rebuild_cp(self, ref, lineage, history)

    def checkout_model(self, ref: str, base_path: Path | None = None) -> tuple[LoadedModel, VersionInfo]:
        """Base weights plus the recorded changes of every ancestor, applied as exact values, then verified."""
        return versions.checkout_model(self, ref, base_path)

    def export(self, ref: str, out: Path, force: bool = False, actor: str | None = None) -> Path:
        return exporting.export(self, ref, out, force, actor)

    # ---------------------------------------------------------------- edit and evaluate
    def edit(self, requests: Sequence[EditRequest], *, branch: str = "main", method: str = "nse",
             batch_size: int = 20, author: str | None = None, reason: str = "", evaluate: bool = False,
             corpus: Path | None = None, overrides: dict | None = None, retry: int = 0,
             strict: bool = False) -> list[VersionInfo]:
        """`editing.edit`: requests applied in rounds of `batch_size`, each round one recorded version."""
        return editing.edit(self, requests, branch=branch, method=method, batch_size=batch_size, author=author,
                            reason=reason, evaluate=evaluate, corpus=corpus, overrides=overrides, retry=retry,
                            strict=strict)

    def evaluate(self, ref: str, requests: Sequence[EditRequest] | None = None, record: bool = True) -> EvalReport:
        return scoring.evaluate(self, ref, requests, record)

    # ---------------------------------------------------------------- replay and revert
    def replay_rounds(self, start: str, rounds: Sequence[Round], recorded_in: str | None = None) -> LoadedModel:
        """The model that `rounds` give when recomputed from version `start`; nothing is recorded."""
        return replaying.replay_rounds(self, start, rounds, recorded_in)

    def replay_same_base(self, ref: str) -> list[ReplayStep]:
        """`replaying.replay_same_base`: every version of `ref`'s history recomputed and compared."""
        return replaying.replay_same_base(self, ref)

    def replay_onto(self, branch: str, model_dir: Path, *, base_name: str, new_branch: str,
                    corpus: Path | None = None, author: str | None = None) -> ReplayOntoReport:
        """`replaying.replay_onto`: a branch's rounds recomputed on another base, recorded on a new branch."""
        return replaying.replay_onto(self, branch, model_dir, base_name=base_name, new_branch=new_branch,
                                     corpus=corpus, author=author)

    def revert(self, target: str, *, branch: str = "main", author: str | None = None,
               reason: str = "") -> VersionInfo:
        """`reverting.revert`: a version whose model is the replay of the history without `target`."""
        return reverting.revert(self, target, branch=branch, author=author, reason=reason)
