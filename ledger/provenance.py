"""Provenance written beside every exported model: `editledger.json` (which ledger, version, state hash, base,
branch, time) and a `README.md` model card listing the version's edits in effect and its latest scores.

Built from the ledger alone (no torch): `editor.export_check` reads `editledger.json` back to verify a directory."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ledger.api import Ledger
from ledger.infos import LiveEdit, VersionInfo
from ledger.records import EditRequest, Score
from ledger.values import utc_now

PROVENANCE_FILE = "editledger.json"
MODEL_CARD_FILE = "README.md"
PROVENANCE_FORMAT = 1


def provenance_record(ledger: Ledger, version: VersionInfo, branch: str | None, dtype: str,
                      exported_at: str | None = None) -> dict[str, Any]:
    return {
        "editledger_export": PROVENANCE_FORMAT,
        "ledger_id": ledger.ledger_id,
        "commit_hash": version.commit_hash,
        "state_hash": version.state_hash,
        "kind": version.kind,
        "depth": version.depth,
        "base_model": version.base_model,
        "base_state_hash": version.base_state_hash,
        "branch": branch,
        "dtype": dtype,
        "exported_at": exported_at or utc_now(),
    }


def _cell(text: object) -> str:
    """A Markdown table cell: pipes escaped, one line."""
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def _score_label(score: Score) -> str:
    return f"{score.suite}/{score.metric}" if score.suite else score.metric


def reverted_edits(ledger: Ledger, ref: str) -> list[tuple[EditRequest, VersionInfo]]:
    """Every request a revert in `ref`'s history took out, with that revert."""
    found = []
    for version in ledger.ancestry(ref):
        if version.kind == "revert":
            found += [(e.request, version) for e in ledger.show(version.commit_hash).requests if e.role == "reverted"]
    return found


def model_card(record: dict[str, Any], edits: list[LiveEdit], scored_at: str | None, scores: list[Score],
               reverted: Sequence[tuple[EditRequest, VersionInfo]] = ()) -> str:
    """The README.md of an export: what the model is, the edits in effect (who, when, why), its latest scores."""
    commit, branch = record["commit_hash"], record["branch"]
    lines = [
        "---",
        "library_name: transformers",
        "tags: [editledger, knowledge-editing]",
        "---",
        "",
        f"# {record['base_model']}, edited: version {commit[:12]}",
        "",
        f"Written by editledger from ledger `{record['ledger_id'][:12]}` on {record['exported_at']}.",
        "",
        f"- version: `{commit}` ({record['kind']}, depth {record['depth']}"
        + (f", branch `{branch}`" if branch else "") + ")",
        f"- state hash: `{record['state_hash']}` (every tensor; `editledger verify-export DIR` recomputes it)",
        f"- base model: `{record['base_model']}` (state hash `{record['base_state_hash']}`)",
        f"- dtype: {record['dtype']}",
        "",
        f"## Edits in effect ({len(edits)})",
        "",
    ]
    if edits:
        lines += ["| subject | prompt | old → new | who | when | why | version |",
                  "|---|---|---|---|---|---|---|"]
        for e in edits:
            r = e.request
            lines.append(
                f"| {_cell(r.subject)} | {_cell(r.prompt)} | {_cell(r.target_true or '?')} → {_cell(r.target_new)} "
                f"| {_cell(e.author)} | {_cell(e.created_at[:19])} | {_cell(e.reason)} "
                f"| `{e.commit_hash[:12]}` ({e.kind}) |"
            )
    else:
        lines.append("None: this is the base model's state.")
    if reverted:
        lines += ["", f"## Reverted in this history ({len(reverted)})", "",
                  "| subject | prompt | old → new (taken out) | who | when | why | revert |",
                  "|---|---|---|---|---|---|---|"]
        for r, v in reverted:
            lines.append(
                f"| {_cell(r.subject)} | {_cell(r.prompt)} | {_cell(r.target_true or '?')} → {_cell(r.target_new)} "
                f"| {_cell(v.author)} | {_cell(v.created_at[:19])} | {_cell(v.reason)} | `{v.commit_hash[:12]}` |"
            )
    lines += ["", "## Latest scores", ""]
    summary = [s for s in scores if s.request_key is None]
    if summary:
        lines += [f"Recorded at version `{scored_at}`.", "", "| metric | value |", "|---|---|"]
        lines += [f"| {_cell(_score_label(s))} | {s.value:.4g} |" for s in summary]
    else:
        lines.append("No scores recorded in this history (run `editledger eval REF`).")
    return "\n".join(lines) + "\n"


def write_provenance(ledger: Ledger, ref: str, directory: Path, branch: str | None, dtype: str) -> dict[str, Any]:
    """Write editledger.json and README.md for version `ref` into `directory`; returns the JSON record."""
    version = ledger.resolve(ref)
    record = provenance_record(ledger, version, branch, dtype)
    scored_at, scores = ledger.latest_scores(version.commit_hash)
    card = model_card(record, ledger.live_edits(version.commit_hash), scored_at, scores,
                      reverted_edits(ledger, version.commit_hash))
    (Path(directory) / PROVENANCE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    (Path(directory) / MODEL_CARD_FILE).write_text(card, encoding="utf-8")
    return record


def read_provenance(directory: Path) -> dict[str, Any]:
    path = Path(directory) / PROVENANCE_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{directory}: no {PROVENANCE_FILE} (not a directory written by editledger "
                                "checkout)") from None
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: unreadable ({error})") from None
    missing = [k for k in ("ledger_id", "commit_hash", "state_hash") if not isinstance(record.get(k), str)]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)}")
    return record
