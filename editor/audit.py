"""Lifecycle operations with what the auditor reads back: `verify --replay` (the ledger's checks, then every branch
recomputed from its base) and `edit` with the scores each round recorded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from editor.lifecycle import ReplayStep, Workspace
from ledger.infos import VerifyReport, VersionInfo
from ledger.records import EditRequest, Score


@dataclass(frozen=True)
class ReplayVerifyReport:
    ledger: VerifyReport
    replayed: list[ReplayStep]  # each version once, even when several branches share it
    branches: list[str]  # the branches replayed (a branch whose head another one's replay reached is not rerun)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_with_replay(ws: Workspace, checkpoint: Path | None = None) -> ReplayVerifyReport:
    report = ws.ledger.verify(checkpoint=checkpoint)
    problems = list(report.problems)
    replayed: dict[str, ReplayStep] = {}
    branches: list[str] = []
    if report.ok:
        # Longest first: a shorter branch inside a longer one's history is then already replayed.
        for branch in sorted(ws.ledger.branches(), key=lambda b: (-b.depth, b.name)):
            if branch.head_hash in replayed:
                continue
            branches.append(branch.name)
            for step in ws.replay_same_base(branch.name):
                if step.commit_hash in replayed:
                    continue
                replayed[step.commit_hash] = step
                if step.broken:  # other numerics than recorded: explained, not a broken promise (ReplayStep)
                    problems.append(f"branch {branch.name!r}: version {step.commit_hash[:12]} did not reproduce "
                                    "its state hash on the numerics it was recorded with")
    return ReplayVerifyReport(report, list(replayed.values()), branches, problems)


@dataclass(frozen=True)
class EditedRound:
    version: VersionInfo
    scores: list[Score]  # the summary scores `--eval` recorded with the round (empty without it)


def edit_rounds(ws: Workspace, requests: Sequence[EditRequest], **options: Any) -> list[EditedRound]:
    """`Workspace.edit`, each recorded round returned with the summary scores it recorded (what `edit --eval`
    prints)."""
    versions = ws.edit(requests, **options)
    if not options.get("evaluate"):
        return [EditedRound(v, []) for v in versions]
    return [EditedRound(v, [s for s in ws.ledger.scores(v.commit_hash) if s.request_key is None]) for v in versions]
