"""`editledger verify-export DIR`: does a model directory hold the version its `editledger.json` names?"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from editor.hashing import state_hash
from editor.model import load_model
from ledger import Ledger
from ledger.errors import UnknownRefError
from ledger.provenance import read_provenance


@dataclass(frozen=True)
class ExportCheck:
    directory: str
    commit_hash: str
    recorded_state_hash: str  # what the ledger recorded for that version
    found_state_hash: str | None  # what the directory's tensors hash to (None when not loaded)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_export(ledger: Ledger, directory: Path, device: str = "cpu") -> ExportCheck:
    """Recompute the state hash of the model in `directory` and check it, and its provenance record, against the
    ledger's record of the version it names."""
    record = read_provenance(directory)
    commit = record["commit_hash"]
    problems: list[str] = []
    if record["ledger_id"] != ledger.ledger_id:
        problems.append(f"{directory} was exported from ledger {record['ledger_id'][:12]}, not this one "
                        f"({ledger.ledger_id[:12]})")
    try:
        version = ledger.resolve(commit)
    except UnknownRefError:
        problems.append(f"{directory}: version {commit[:12]} is not recorded in this ledger")
        return ExportCheck(str(directory), commit, "", None, problems)
    if record["state_hash"] != version.state_hash:
        problems.append(f"{directory}/editledger.json: state hash {record['state_hash'][:12]} is not the one the "
                        f"ledger recorded for {commit[:12]} ({version.state_hash[:12]})")
    loaded = load_model(directory, device=device, dtype=record.get("dtype") or "float32")
    found = state_hash(loaded.model)
    if found != version.state_hash:
        problems.append(f"{directory}: its tensors hash to {found[:12]}, the ledger recorded {version.state_hash[:12]} "
                        f"for version {commit[:12]}: the weights were changed after export")
    return ExportCheck(str(directory), version.commit_hash, version.state_hash, found, problems)
