"""Exporting a version (`editledger checkout --out DIR`): its model written as a safetensors directory with its
tokenizer and provenance record, all at once (a kill leaves no half model), and the checkout audited."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from editor.errors import LifecycleError
from editor.session import Session, author_name
from editor.versions import checkout_model
from ledger.faults import fault_point
from ledger.provenance import write_provenance


def export(session: Session, ref: str, out: Path, force: bool = False, actor: str | None = None) -> Path:
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise LifecycleError(f"--out {out}: directory is not empty (use --force to overwrite)")
    loaded, version = checkout_model(session, ref)
    out.resolve().parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename: a kill mid-write never leaves a half model under `out`.
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.resolve().parent))
    loaded.model.save_pretrained(staging, safe_serialization=True)
    fault_point("checkout.model_written")
    loaded.tokenizer.save_pretrained(staging)
    branch = ref if any(b.name == ref for b in session.ledger.branches()) else None
    write_provenance(session.ledger, version.commit_hash, staging, branch=branch, dtype=session.dtype)
    _readable(staging)
    if out.exists():
        shutil.rmtree(out)
    os.replace(staging, out)
    session.ledger.record_audit("checkout", actor or author_name(), version.commit_hash,
                                {"out": str(out.resolve()), "state_hash": version.state_hash})
    return out


def _readable(directory: Path) -> None:
    """An export is for sharing: 0755 directories and 0644 files (mkdtemp and some writers make them private)."""
    directory.chmod(0o755)
    for path in directory.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
