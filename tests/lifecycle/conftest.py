"""A ledger with a short NSE history on the tiny fact world, built once per module that asks for it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from editor.lifecycle import Workspace
from ledger import Ledger
from ledger.records import EditRequest

ROUNDS = 3
PER_ROUND = 4


@dataclass
class EditedLedger:
    root: Path
    ledger: Ledger
    ws: Workspace
    requests: list[EditRequest]
    versions: list  # VersionInfo of each round, in order
    base_commit: str


def make_edited_ledger(root: Path, world, rounds: int = ROUNDS, per_round: int = PER_ROUND) -> EditedLedger:
    ledger = Ledger.init(root)
    ws = Workspace(ledger)
    base = ws.add_model("tiny-world", world.model_dir, corpus=world.corpus_path, author="tests")
    requests = world.requests()[: rounds * per_round]
    versions = ws.edit(requests, method="nse", batch_size=per_round, author="tests", reason="lifecycle test")
    return EditedLedger(root, ledger, ws, requests, versions, base.commit_hash)


@pytest.fixture(scope="module")
def edited(tiny_world, tmp_path_factory) -> EditedLedger:
    return make_edited_ledger(tmp_path_factory.mktemp("ledger"), tiny_world)
