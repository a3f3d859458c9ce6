"""What every command group shares: its options, `Fail`, the root options (--db, --store), opening the ledger and
the workspace, and the progress line of long steps."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from commands.render import err, warn_line
from ledger import Ledger

if TYPE_CHECKING:
    from editor.lifecycle import Workspace

DbOpt = Annotated[
    str | None, typer.Option("--db", envvar="EDITLEDGER_DB", help="Database URL (default: SQLite in .editledger/).")
]
StoreOpt = Annotated[str | None, typer.Option(
    "--store", envvar="EDITLEDGER_STORE", help="Blob store: a directory, or object storage as s3://BUCKET/PREFIX.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
BranchOpt = Annotated[str, typer.Option("--branch", "-b", help="Branch to work on.")]
AuthorOpt = Annotated[str | None, typer.Option("--author", envvar="EDITLEDGER_AUTHOR", help="Who makes the change.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when available, else cpu), cpu or cuda.")]
DtypeOpt = Annotated[str | None, typer.Option(
    "--dtype", help="float32 | float16 | bfloat16 (default: the dtype the base model was recorded in).")]
BasePathOpt = Annotated[Path | None, typer.Option(
    "--base-path", help="The base model's directory, if it moved (verified by its state hash).")]


class Fail(Exception):
    """A refused operation: one line to stderr and an exit code."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


root_options: dict[str, Any] = {}  # --db and --store given before the command (set by the root callback)


def open_ledger() -> Ledger:
    return Ledger.open(Path.cwd(), db_url=root_options.get("db"), store_dir=root_options.get("store"))


class StepProgress:
    """Long steps (rounds, replays, checkouts): on a terminal one status line updated in place; piped, one plain
    line per step on stderr."""

    def __init__(self) -> None:
        self.status: Any = None

    def __call__(self, step: str) -> None:
        if not err.is_terminal:
            err.print(step, soft_wrap=True, markup=False, highlight=False)
        elif self.status is None:
            self.status = err.status(step)
            self.status.start()
        else:
            self.status.update(step)

    def stop(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None


progress = StepProgress()


def quiet_transformers() -> None:
    """Our own progress goes to stderr; transformers' bars and warnings would clutter it and the one-line errors."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", module=r"transformers(\.|$)")  # deprecation notes about its own API


def workspace(device: str = "auto", dtype: str | None = None, full_verify: bool = False,
              base_path: Path | None = None, numerics: str | None = None) -> Workspace:
    # imported here: commands that need no model (log, show, verify, ...) start without torch
    from editor.lifecycle import Workspace

    quiet_transformers()
    return Workspace(open_ledger(), device=device, dtype=dtype, full_verify=full_verify, base_path=base_path,
                     numerics=numerics, progress=progress, warn=warn_line)
