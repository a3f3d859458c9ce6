"""What every lifecycle operation works with: the ledger, the engine settings that materialise its models, the
caches kept between calls, and where progress and warnings go.

`Workspace` (`editor/lifecycle.py`) is a `Session` with one method per operation; the operation modules
(`bases`, `versions`, `editing`, `scoring`, `exporting`, `replaying`, `reverting`) take the session as their first
argument, so that none of them needs the facade.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from editor.hashing import BaseDigests
from editor.model import check_dtype, resolve_device
from ledger import Ledger

ProgressFn = Callable[[str], None]


def no_progress(_: str) -> None:
    return None


def author_name() -> str:
    """Who a record names when the caller names nobody: `EDITLEDGER_AUTHOR`, else the login name."""
    return os.environ.get("EDITLEDGER_AUTHOR") or os.environ.get("USER") or "unknown"


class Session:
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
        self.say = progress or no_progress
        self.warn = warn or self.say
        self.base_dtypes: dict[str, str] = {}  # base model name -> the dtype its state hashes hold in
        self.bases_added: set[str] = set()  # bases recorded by this session: `base_path` is not theirs
        self.round_warnings: list[str] = []  # the warnings of the rounds computed so far
        # True: hash every tensor of a base model on every load, never trusting remembered digests.
        self.full_verify = full_verify
        self.base_digests = BaseDigests(ledger.store.machine_index)
