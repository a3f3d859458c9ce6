"""Reading the record (no model needed): log, show, diff, blame, history, and branches and tags."""

from __future__ import annotations

from typing import Annotated

import typer

from commands.common import BranchOpt, Fail, JsonOpt, open_ledger
from commands.render import (
    emit_json,
    out,
    short,
    show_blame,
    show_branches,
    show_diff,
    show_history,
    show_log,
    show_request,
    show_tags,
    show_version,
    show_version_all,
)
from ledger.infos import RequestDetail

PANEL = "History"

app = typer.Typer()

LogFormat = Annotated[str | None, typer.Option(
    "--format", help="table | short (one line per version, full hashes) | full (like git log); "
                     "default: table on a terminal, short when piped.")]


@app.command(rich_help_panel=PANEL)
def log(branch: BranchOpt = "main", limit: int = 20, offset: int = 0, fmt: LogFormat = None,
        as_json: JsonOpt = False) -> None:
    """Versions of a branch, newest first."""
    if fmt not in (None, "table", "short", "full"):
        raise Fail(f"--format {fmt!r}: expected table, short or full")
    versions = open_ledger().log(branch, limit=limit, offset=offset)
    if as_json:
        return emit_json(versions)
    show_log(versions, fmt or ("table" if out.is_terminal else "short"))
    return None


@app.command(rich_help_panel=PANEL)
def show(ref: Annotated[str, typer.Argument(help="A version (branch, tag, commit prefix, main~2) or a request key.")],
         show_all: Annotated[bool, typer.Option("--all", help="Every request, outcome, footprint row, artifact.")]
         = False,
         as_json: JsonOpt = False) -> None:
    """One version (record, requests, footprint, outcomes, scores, artifacts) or one request (its fact, every version
    that touched it, its residuals and scores over time)."""
    detail = open_ledger().describe(ref)
    if as_json:
        return emit_json(detail)
    if isinstance(detail, RequestDetail):
        return show_request(detail)
    if show_all:
        return show_version_all(detail)
    return show_version(detail)


@app.command(rich_help_panel=PANEL)
def diff(a: str, b: str,
         show_all: Annotated[bool, typer.Option("--all", help="List every request added or removed.")] = False,
         as_json: JsonOpt = False) -> None:
    """What changed between two versions: requests added and removed, per layer the neurons touched and norms."""
    result = open_ledger().diff(a, b)
    if as_json:
        return emit_json(result)
    show_diff(result, show_all)
    return None


@app.command(rich_help_panel=PANEL)
def blame(layer: int, neuron: int, as_json: JsonOpt = False) -> None:
    """Every version whose footprint touched (LAYER, NEURON)."""
    entries = open_ledger().blame(layer, neuron)
    if as_json:
        return emit_json(entries)
    show_blame(entries)
    return None


@app.command(rich_help_panel=PANEL)
def history(subject: Annotated[str | None, typer.Option(help="Subject of the fact (any case).")] = None,
            request: Annotated[str | None, typer.Option(help="Request key prefix.")] = None,
            as_json: JsonOpt = False) -> None:
    """Every version that edited, evaluated, replayed or reverted a fact (exit 1 when nothing matches)."""
    if not subject and not request:
        raise Fail("give --subject or --request")
    events = open_ledger().history(subject=subject, request=request)
    if as_json:
        emit_json(events)
    else:
        show_history(events)
    if not events:
        what = f"--subject {subject!r}: no recorded request has this subject" if subject else \
            f"--request {request!r}: no version touched or scored this request"
        raise Fail(what, 1)
    return None


@app.command(rich_help_panel=PANEL)
def branch(name: Annotated[str | None, typer.Argument(help="New branch name.")] = None,
           at: Annotated[str, typer.Option(help="Version the new branch starts at.")] = "main",
           as_json: JsonOpt = False) -> None:
    """List branches, or create one at a version."""
    ledger = open_ledger()
    if name:
        created = ledger.create_branch(name, at)
        out.print(f"branch {name!r} at {short(created.head_hash)}")
        return None
    branches = ledger.branches()
    if as_json:
        return emit_json(branches)
    show_branches(branches)
    return None


@app.command(rich_help_panel=PANEL)
def tag(name: Annotated[str | None, typer.Argument()] = None, ref: Annotated[str, typer.Argument()] = "main",
        as_json: JsonOpt = False) -> None:
    """List tags, or tag a version."""
    ledger = open_ledger()
    if name:
        ledger.tag(name, ref)
        out.print(f"tag {name!r} -> {short(ledger.resolve(name).commit_hash)}")
        return None
    tags = ledger.tags()
    if as_json:
        return emit_json(tags)
    show_tags(tags)
    return None
