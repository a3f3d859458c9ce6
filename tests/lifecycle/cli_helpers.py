"""Run the `editledger` command in-process (its real entry point) or in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


def run_cli(capsys: pytest.CaptureFixture, cwd: Path, *args: str) -> Result:
    import cli

    old_cwd, old_argv = Path.cwd(), sys.argv
    os.chdir(cwd)
    sys.argv = ["editledger", *map(str, args)]
    code = 0
    try:
        cli.main()
    except SystemExit as done:
        code = int(done.code or 0)
    finally:
        os.chdir(old_cwd)
        sys.argv = old_argv
        cli.root_options.clear()
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def run_subprocess(cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: int = 300) -> Result:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), **(env or {})}
    done = subprocess.run([sys.executable, "-m", "cli", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    return Result(done.returncode, done.stdout, done.stderr)
