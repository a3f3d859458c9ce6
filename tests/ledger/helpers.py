"""Synthetic requests and drafts for the ledger tests (and the ledger benchmark)."""

from __future__ import annotations

import hashlib

from ledger import Ledger, VersionInfo
from ledger.records import (
    ArtifactRef,
    EditRequest,
    EvalPrompt,
    FootprintLayer,
    RequestEntry,
    RequestOutcome,
    Score,
    VersionDraft,
)

STATE = "5" * 64


def make_request(tag: str, subject: str | None = None) -> EditRequest:
    return EditRequest(
        subject=subject or f"Subject {tag}",
        prompt="{} is located in",
        target_new=f"City {tag}",
        target_true="Nowhere",
        relation_id="P131",
        case_id=tag,
        eval_prompts=(
            EvalPrompt("paraphrase", "Where is {}? In", None),
            EvalPrompt("neighborhood", "X is in", "Y"),
        ),
    )


def make_draft(
    ledger: Ledger,
    tag: str,
    requests: list[EditRequest] | None = None,
    *,
    roles: list[str] | None = None,
    kind: str = "edit",
    layer: int = 1,
    neurons: tuple[int, ...] = (3, 17, 40),
    reason: str | None = None,
    base_model: str = "tiny",
) -> VersionDraft:
    requests = requests if requests is not None else [make_request(tag)]
    roles = roles or ["edited"] * len(requests)
    blob = ledger.store.put(f"delta of {tag}".encode())
    return VersionDraft(
        kind=kind,
        base_model=base_model,
        state_hash=hashlib.sha256(tag.encode()).hexdigest(),
        author=f"author-{tag}",
        reason=reason or f"round {tag}",
        method="nse",
        hparams={"layers": [1, 2], "lr": 0.1, "tag": tag},
        environment={"torch": "2.13.0", "device": "cpu"},
        requests=[RequestEntry(r, role) for r, role in zip(requests, roles, strict=True)],  # type: ignore[arg-type]
        footprint=[
            FootprintLayer(layer, 0, neurons, 0.1 + len(tag) / 7),
            FootprintLayer(layer + 1, 1, (5,), 1 / 3),
        ],
        outcomes=[RequestOutcome(r.request_key, 2.5, 0.125, "edited") for r in requests],
        artifacts=[ArtifactRef("delta", blob, "json", len(f"delta of {tag}"))],
        scores=[Score("efficacy", 1.0, requests[0].request_key)] if requests else [],
    )


def add_base(ledger: Ledger, name: str = "tiny", branch: str = "main") -> VersionInfo:
    return ledger.add_base_model(
        name,
        "b" * 63 + "1",
        "gpt2",
        {"n_layer": 4, "n_embd": 128},
        "/models/tiny",
        branch=branch,
        author="tests",
    )


def build_chain(ledger: Ledger, rounds: int, branch: str = "main") -> list[VersionInfo]:
    """A base version and `rounds` edit versions on `branch`; returns them oldest first."""
    versions = [add_base(ledger, branch=branch)]
    for i in range(rounds):
        draft = make_draft(ledger, f"{branch}-{i}")
        versions.append(ledger.append_version(draft, branch, expected_head=versions[-1].commit_hash))
    return versions
