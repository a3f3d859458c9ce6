"""The auditor's tools: verify (the ledger, or an exported model), probe, the HTML report, and gc."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from commands.common import BasePathOpt, DeviceOpt, DtypeOpt, Fail, JsonOpt, open_ledger, quiet_transformers, workspace
from commands.render import emit_json, line, plain, show_gc, show_probe, show_verification

PANEL = "Audit"

app = typer.Typer()


@app.command(rich_help_panel=PANEL)
def verify(replay_: Annotated[bool, typer.Option("--replay", help="Also replay every branch from its base.")] = False,
           checkpoint: Annotated[
               Path | None, typer.Option(help="Write (when absent), or check, a checkpoint file kept outside the "
                                              "database.")
           ] = None,
           device: DeviceOpt = "auto", dtype: DtypeOpt = None, base_path: BasePathOpt = None,
           as_json: JsonOpt = False) -> None:
    """Recompute every commit hash and blob hash; optionally replay every branch and check a checkpoint."""
    if replay_:
        from editor.audit import verify_with_replay

        full = verify_with_replay(workspace(device, dtype, full_verify=True, base_path=base_path), checkpoint)
        report, problems = full.ledger, full.problems
        steps, branches = full.replayed, full.branches
    else:
        report = open_ledger().verify(checkpoint=checkpoint)
        problems, steps, branches = report.problems, [], []
    if as_json:
        emit_json({"ok": not problems, "versions_checked": report.versions_checked,
                   "blobs_checked": report.blobs_checked, "checkpoint": report.checkpoint,
                   "checkpoint_action": report.checkpoint_action, "replayed": len(steps),
                   "replayed_branches": branches, "problems": problems, "replay": [plain(s) for s in steps]})
    else:
        show_verification(report, problems, steps, branches, replayed=replay_)
    if problems:
        raise Fail(problems[0], 1)


@app.command("verify-export", rich_help_panel=PANEL)
def verify_export(directory: Annotated[Path, typer.Argument(help="A directory written by checkout.")],
                  as_json: JsonOpt = False) -> None:
    """Check an exported model directory against the ledger: its editledger.json and its recomputed state hash."""
    from editor.export_check import verify_export as check_export

    if not directory.is_dir():
        raise Fail(f"DIRECTORY {directory}: not a directory")
    quiet_transformers()
    result = check_export(open_ledger(), directory)
    if as_json:
        emit_json({**plain(result), "ok": result.ok})
    elif result.ok:
        line(f"ok: {directory} holds version {result.commit_hash} (state hash {result.found_state_hash} "
             "recomputed from its tensors)")
    if not result.ok:
        raise Fail(result.problems[0], 1)


@app.command(rich_help_panel=PANEL)
def probe(
    prompt: Annotated[str | None, typer.Argument(help="Prompt to complete (optional with --request).")] = None,
    at: Annotated[list[str] | None, typer.Option("--at", help="Version to probe, repeatable (default: main).")]
    = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Next tokens to list.")] = 5,
    tokens: Annotated[int, typer.Option(help="Tokens of greedy continuation.")] = 8,
    request: Annotated[str | None, typer.Option(
        help="Request key (prefix): probe its rewrite, paraphrase and neighbourhood prompts.")] = None,
    no_base: Annotated[bool, typer.Option("--no-base", help="Leave the base version out.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """What the model answers at each version side by side: top-k next tokens and a greedy continuation."""
    from editor.probe import probe as run_probe

    report = run_probe(workspace(), [prompt] if prompt else [], at or ["main"], request=request, top_k=top_k,
                       max_new_tokens=tokens, with_base=not no_base)
    if as_json:
        return emit_json(report)
    show_probe(report)
    return None


@app.command(rich_help_panel=PANEL)
def report(ref: Annotated[str, typer.Argument(help="Version whose history is reported.")] = "main",
           out_dir: Annotated[Path, typer.Option("--out", help="Directory for index.html and its plots.")]
           = Path("editledger-report")) -> None:
    """A static HTML audit report from the ledger alone: timeline, footprint heatmap, score curves, fact histories."""
    from ledger.report import build_report  # matplotlib: only this command pays for loading it

    info = build_report(open_ledger(), out_dir, ref)
    line(f"report of {ref}: {info.versions} versions, {info.facts} facts, {len(info.images)} plots, "
         f"written in {info.seconds:.2f}s: {info.index}")


@app.command(rich_help_panel=PANEL)
def gc(apply: Annotated[bool, typer.Option("--apply", help="Delete (default: list only).")] = False,
       grace: Annotated[float | None, typer.Option(
           "--grace", help="Keep blobs written less than SECONDS ago (default: 0 local, 3600 object storage).")
       ] = None) -> None:
    """List (or with --apply delete) blobs that no version references."""
    show_gc(open_ledger().gc(dry_run=not apply, grace_seconds=grace), applied=apply)
