"""The `editledger` command: the root app (--db, --store, --version), the command groups of `commands/`, and `main`,
which turns known failures into one line on stderr and an exit code. No logic of its own.

Exit codes: 0 success, 1 a check failed (verify), 2 bad input or a refused operation, 3 lost a race (conflict).
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated

import typer

from commands import audit, editing, history, setup
from commands.common import DbOpt, Fail, StoreOpt, progress, root_options
from commands.render import err, fail_line, out, short
from editor.errors import EditInterrupted, UnsuccessfulEditError
from ledger.errors import ConflictError, LedgerError

app = typer.Typer(help="Keep a language model's knowledge edits the way git keeps source changes.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
for command_group in (setup, editing, history, audit):  # in this order on `editledger --help`, one panel each
    app.add_typer(command_group.app)


def _print_version(value: bool) -> None:
    if value:
        try:
            out.print(f"editledger {version('editledger')}", highlight=False)
        except PackageNotFoundError:
            out.print("editledger (not installed: running from a source tree)", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _root(db: DbOpt = None, store: StoreOpt = None,
          show_version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                                     help="Print editledger's version and exit.")] = False) -> None:
    root_options["db"] = db
    root_options["store"] = store


def restart_with_portable_numerics() -> int:
    """Run this same command again in a process started with portable CPU kernels (they are chosen when a process
    starts); returns its exit code."""
    from editor.determinism import portable_environment

    if os.environ.get("EDITLEDGER_PORTABLE_RESTART"):
        raise Fail("portable numerics could not be enabled in the restarted process")
    err.print("[dim]restarting with portable CPU kernels (recorded numerics)[/dim]")
    env = {**portable_environment(), "EDITLEDGER_PORTABLE_RESTART": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).resolve().parent), env.get("PYTHONPATH")) if p)
    child = subprocess.Popen([sys.executable, "-m", "cli", *sys.argv[1:]], env=env)
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:  # the child got the same Ctrl-C: let it end as it does
            continue


def main() -> None:
    """Console entry point: known failures become one line on stderr and an exit code."""
    from editor.errors import NumericsRestart

    try:
        try:
            app(standalone_mode=False, prog_name="editledger")
        finally:
            progress.stop()
    except NumericsRestart:
        try:
            raise SystemExit(restart_with_portable_numerics()) from None
        except Fail as error:
            fail_line(f"error: {error}")
            raise SystemExit(error.code) from None
    except ConflictError as error:
        fail_line(f"conflict: {error}")
        raise SystemExit(3) from None
    except Fail as error:
        fail_line(f"error: {error}")
        raise SystemExit(error.code) from None
    except EditInterrupted as stopped:
        done = ", ".join(short(v.commit_hash) for v in stopped.recorded) or "none"
        fail_line(f"interrupted: the round in progress was not recorded; rounds recorded before it: {done}")
        raise SystemExit(130) from None
    except UnsuccessfulEditError as error:
        fail_line(f"error: {error}")
        raise SystemExit(1) from None
    except (LedgerError, ValueError, FileNotFoundError, KeyError) as error:
        fail_line(f"error: {error}" if str(error).strip() else f"error: {type(error).__name__}")
        raise SystemExit(2) from None
    except typer.Exit as done:
        raise SystemExit(done.exit_code) from None
    except typer.Abort:
        raise SystemExit(130) from None
    except Exception as error:  # usage errors and anything else: still one line, never a traceback
        exit_code = getattr(error, "exit_code", None)
        if exit_code is not None and hasattr(error, "format_message") and not error.format_message().strip():
            raise SystemExit(0) from None  # `editledger` alone: the help was printed, nothing failed
        if exit_code is not None and hasattr(error, "format_message"):
            fail_line(f"error: {error.format_message()} (see `editledger --help`)")
            raise SystemExit(exit_code) from None
        if os.environ.get("EDITLEDGER_DEBUG"):
            raise
        fail_line(f"error: {type(error).__name__}: {error}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
