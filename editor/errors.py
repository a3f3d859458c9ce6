"""Errors of the editing engine: each names the request, layer or argument at fault in one line."""

from __future__ import annotations

from ledger.errors import LedgerError


class EditorError(ValueError):
    """Base class: a bad input to the engine. Nothing was written when one is raised."""


class UnsupportedModelError(EditorError):
    """The loaded model's module layout is not one the engine knows how to edit."""


class RequestError(EditorError):
    """An edit request that cannot be edited (no `{}` in the prompt, empty target, subject not found)."""


class HparamsError(EditorError):
    """Hyperparameters that do not fit the model (layer out of range, unknown field, missing statistics)."""


class SolveError(EditorError):
    """A solve produced non-finite values; the weights were left untouched."""


class NumericsError(EditorError):
    """Numerics that cannot be had in this process or on this build of torch."""


class NumericsRestart(NumericsError):
    """This process runs native kernels and the work needs portable ones: start again with
    `editor.determinism.portable_environment()` (the CLI does so by itself). Raised before anything is written."""


class ModelDirectoryError(EditorError):
    """A model directory that cannot be loaded: missing, no config, or weights only as pickle files."""


class UnsuccessfulEditError(Exception):
    """`edit --strict`: a request did not take, or a round changed no weight; nothing was recorded."""


class EditInterrupted(Exception):
    """An edit stopped by SIGINT (Ctrl-C): `recorded` holds the rounds already in the ledger (VersionInfo);
    the interrupted round left nothing (its blobs, if any, are unreferenced and `gc` lists them)."""

    def __init__(self, recorded: list) -> None:
        super().__init__(f"interrupted after {len(recorded)} recorded rounds")
        self.recorded = recorded


class LifecycleError(LedgerError):
    """A lifecycle operation that cannot proceed; the message names the version, request or model at fault.
    (A ledger error: the CLI reports it as it reports the ledger's own refusals.)"""


class RebuildError(LifecycleError):
    """A rebuilt model does not have the state hash its version recorded."""
