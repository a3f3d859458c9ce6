"""Scores of a version: its live requests evaluated on its model (`editledger eval`), and the scores an edit
round records with `--eval`. The protocols themselves are `editor/evaluate.py`'s."""

from __future__ import annotations

from collections.abc import Sequence

from editor.errors import LifecycleError
from editor.evaluate import EvalReport, evaluate_requests, report_scores
from editor.model import LoadedModel
from editor.session import Session
from editor.versions import checkout_model
from ledger.records import EditRequest, Score

SUITE = "counterfact"  # the suite name every recorded score carries


def live_requests(session: Session, ref: str) -> list[EditRequest]:
    """The requests in effect at version `ref` (edited, not reverted since)."""
    return session.ledger.lineage(ref).live_requests()


def scores(loaded: LoadedModel, requests: Sequence[EditRequest]) -> list[Score]:
    """The summary scores of `requests` on the model as it is now (none for no requests)."""
    if not requests:
        return []
    report = evaluate_requests(loaded.model, loaded.tokenizer, list(requests))
    return report_scores(report, suite=SUITE)


def evaluate(session: Session, ref: str, requests: Sequence[EditRequest] | None = None,
             record: bool = True) -> EvalReport:
    """`requests` (default: those live at `ref`) evaluated on the model of `ref`; with `record`, the summary
    scores are recorded with the version."""
    loaded, version = checkout_model(session, ref)
    requests = list(requests) if requests is not None else live_requests(session, version.commit_hash)
    if not requests:
        raise LifecycleError(f"version {version.commit_hash[:12]} has no edited requests to evaluate")
    report = evaluate_requests(loaded.model, loaded.tokenizer, requests)
    if record:
        session.ledger.record_scores(version.commit_hash, report_scores(report, suite=SUITE))
    return report
