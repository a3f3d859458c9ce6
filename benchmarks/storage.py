"""Storage: blob bytes per edit by method against the information floor, and database bytes per 1,000 edits.

The floor of one round's weight change is what must be kept to rebuild it: the touched columns' new values,
`touched columns x d_model x dtype bytes`. The stored delta also keeps the exact old values (so an auditor can check
a change against its parent without the parent) and the column indices, so about 2x the floor is expected.
Beside the delta, a round stores its keys (to rebuild Cp) and, for NSE, its z* (to replay without recomputing).

Run alone: `python -m benchmarks.storage [--quick]`.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.common import offline_and_threads, say, section_main, sqlite_bytes, workspace, world

METHODS = ("nse", "memit", "memit-cp", "alphaedit", "rome")
PER_BASE_ROLES = ("c0", "templates")  # stored once per base model and reused by every round: not per-edit costs


def floor_bytes(delta_tensors: dict) -> int:
    """Touched columns x rows x dtype bytes: the new values alone, no indices, no old values."""
    return sum(t.numel() * t.element_size() for name, t in delta_tensors.items() if name.endswith("::new"))


def method_storage(info, method: str, n_edits: int, round_size: int) -> dict[str, Any]:
    from editor.artifacts import get_tensors

    requests = info.requests()[:n_edits]
    with tempfile.TemporaryDirectory(prefix="editledger-storage-") as tmp:
        root = Path(tmp)
        space = workspace(root, info)
        db_before = sqlite_bytes(root)
        versions = space.edit(requests, method=method, batch_size=round_size)
        by_role: dict[str, int] = defaultdict(int)
        counted: set[str] = set()
        floor = columns = 0
        for version in versions:
            for artifact in space.ledger.show(version.commit_hash).artifacts:
                role = artifact.role.split(".")[0]
                if role in PER_BASE_ROLES or artifact.sha256 in counted:
                    continue
                counted.add(artifact.sha256)
                by_role[role] += artifact.size_bytes
                if role == "delta":
                    tensors = get_tensors(space.ledger.store, artifact.sha256)
                    floor += floor_bytes(tensors)
                    columns += sum(t.numel() for name, t in tensors.items() if name.endswith("::columns"))
        per_edit_blobs = sum(by_role.values())
        space.ledger.close()
        db_after = sqlite_bytes(root)
    n = len(requests)
    return {
        "method": method, "n_edits": n, "round_size": round_size, "rounds": len(versions),
        "delta_bytes_per_edit": by_role["delta"] / n, "floor_bytes_per_edit": floor / n,
        "delta_over_floor": by_role["delta"] / floor if floor else None,
        "columns_per_edit": columns / n,
        "bytes_per_edit_by_role": {role: size / n for role, size in sorted(by_role.items())},
        "blob_bytes_per_edit": per_edit_blobs / n,
        "sqlite_bytes_per_1000_edits": (db_after - db_before) / n * 1000,
        "blob_bytes_per_1000_edits": per_edit_blobs / n * 1000,
    }


def run(quick: bool = False) -> dict[str, Any]:
    offline_and_threads()
    info = world("small" if quick else "default")
    rows = []
    for method in METHODS:
        if method == "rome":
            n_edits, round_size = (5, 1) if quick else (20, 1)
        elif method == "nse":
            n_edits, round_size = (100, 25) if quick else (1000, 50)
        else:
            n_edits, round_size = (50, 25) if quick else (200, 50)
        say(f"storage: {method}: {n_edits} edits in rounds of {round_size}")
        rows.append(method_storage(info, method, n_edits, round_size))
        say(f"storage: {method}: {rows[-1]['delta_bytes_per_edit']:.0f} B/edit delta, "
            f"floor {rows[-1]['floor_bytes_per_edit']:.0f}, db {rows[-1]['sqlite_bytes_per_1000_edits']:.0f} B/1k")
    return {"world": {"preset": info.preset, "n_facts": info.n_facts}, "methods": rows}


if __name__ == "__main__":
    section_main("storage", run, __doc__.splitlines()[0])
