"""Fault injection for crash-safety tests: stop the process dead at a named point.

`EDITLEDGER_KILL_AT=name` (several names separated by commas) makes `fault_point(name)` send SIGKILL to the
process itself, as a power cut or an OOM killer would: no cleanup, no `finally`, no flush.
"""

from __future__ import annotations

import os
import signal


def fault_point(name: str) -> None:
    wanted = os.environ.get("EDITLEDGER_KILL_AT")
    if wanted and name in wanted.split(","):
        os.kill(os.getpid(), signal.SIGKILL)
