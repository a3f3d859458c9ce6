"""Changing the model and using it: edit, eval, revert, replay, checkout (export) and the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from commands.common import (
    AuthorOpt,
    BasePathOpt,
    BranchOpt,
    DeviceOpt,
    DtypeOpt,
    Fail,
    JsonOpt,
    quiet_transformers,
    workspace,
)
from commands.render import (
    emit_json,
    out,
    plain,
    short,
    show_aggregate,
    show_demo,
    show_replay,
    show_rounds,
    warn_line,
)
from ledger.records import EditRequest

PANEL = "Editing"

app = typer.Typer()

SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Hyperparameter KEY=VALUE (VALUE as JSON), repeatable: --set v_num_grad_steps=50.")]


def hparam_overrides(items: list[str]) -> dict[str, Any]:
    """`--set KEY=VALUE` options as a dict (`editor.hparams.parse_assignments`); a bad one is a one-line Fail."""
    from editor.errors import HparamsError
    from editor.hparams import parse_assignments

    try:
        return parse_assignments(items)
    except HparamsError as error:
        raise Fail(str(error)) from None


@app.command(rich_help_panel=PANEL)
def edit(
    file: Annotated[Path | None, typer.Argument(help="Request file (CounterFact, zsRE, KnowEdit, JSONL, CSV).")] = None,
    subject: Annotated[str | None, typer.Option(help="Subject of a single fact.")] = None,
    prompt: Annotated[str | None, typer.Option(help="Prompt with {} for the subject.")] = None,
    target: Annotated[str | None, typer.Option(help="New target.")] = None,
    target_true: Annotated[str | None, typer.Option(help="The current (true) target.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="Request file format (auto detects).")] = "auto",
    limit: Annotated[int | None, typer.Option(help="Take only the first N records of the file.")] = None,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Skip malformed records (reported).")] = False,
    method: Annotated[str, typer.Option(help="nse | memit | memit-cp | alphaedit | rome")] = "nse",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Requests per round.")] = 20,
    branch: BranchOpt = "main", author: AuthorOpt = None,
    reason: Annotated[str, typer.Option(help="Why the change is made.")] = "",
    evaluate: Annotated[bool, typer.Option("--eval", help="Score the round's and all earlier requests.")] = False,
    corpus: Annotated[Path | None, typer.Option(help="Corpus for statistics (default: the recorded one).")] = None,
    retry: Annotated[int, typer.Option(help="Retry a round that lost a race on the new head, N times.")] = 0,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Exit 1 and record nothing if a request did not take or a round changed no weight.")
    ] = False,
    hparam: SetOpt = None,
    numerics: Annotated[str | None, typer.Option(
        help="CPU kernels: native (fast, bit-exact on the same kind of CPU) or portable (the same bits on any "
             "x86-64 CPU, slower); recorded with each version. Default: what the branch recorded last.")] = None,
    device: DeviceOpt = "auto", dtype: DtypeOpt = None, base_path: BasePathOpt = None, as_json: JsonOpt = False,
) -> None:
    """Edit facts: one from flags or many from a file, in rounds; each round is one recorded version."""
    from editor.audit import edit_rounds
    from editor.readers import read_request_file
    from editor.rounds import METHODS

    if method not in METHODS:
        raise Fail(f"--method {method!r}: unknown method; choose one of {', '.join(METHODS)}")
    if file is not None:
        read = read_request_file(file, fmt=fmt, limit=limit, skip_invalid=skip_invalid)
        requests = read.requests
        if read.skipped:
            warn_line(f"skipped {len(read.skipped)} invalid records: " + "; ".join(read.skipped[:3])
                      + ("; ..." if len(read.skipped) > 3 else ""))
    elif subject and prompt and target:
        requests = [EditRequest(subject=subject, prompt=prompt, target_new=target, target_true=target_true)]
    else:
        raise Fail("give a request FILE, or --subject, --prompt and --target")
    overrides = hparam_overrides(hparam or [])
    ws = workspace(device, dtype, base_path=base_path, numerics=numerics)
    rounds = edit_rounds(ws, requests, branch=branch, method=method, batch_size=batch_size, author=author,
                         reason=reason, evaluate=evaluate, corpus=corpus, overrides=overrides, retry=retry,
                         strict=strict)
    if as_json:
        return emit_json([{**plain(r.version), "scores": plain(r.scores)} for r in rounds])
    show_rounds(rounds)
    return None


@app.command("eval", rich_help_panel=PANEL)
def eval_(ref: Annotated[str, typer.Argument(help="Version (commit prefix, tag, branch).")] = "main",
          device: DeviceOpt = "auto", dtype: DtypeOpt = None, base_path: BasePathOpt = None,
          as_json: JsonOpt = False) -> None:
    """Score every request in a version's history on that version's model, and record the scores."""
    report = workspace(device, dtype, base_path=base_path).evaluate(ref)
    if as_json:
        return emit_json(report.aggregate)
    show_aggregate(report.aggregate)
    return None


@app.command(rich_help_panel=PANEL)
def checkout(ref: str, out_dir: Annotated[Path, typer.Option("--out", help="Directory to write.")],
             force: Annotated[bool, typer.Option(help="Overwrite a non-empty directory.")] = False,
             full_verify: Annotated[bool, typer.Option(
                 "--full-verify", help="Hash every tensor of the base too, even when none of its files changed.")
             ] = False,
             author: AuthorOpt = None, device: DeviceOpt = "auto", dtype: DtypeOpt = None,
             base_path: BasePathOpt = None) -> None:
    """Write a version as a Hugging Face directory, rebuilt from the recorded changes and verified."""
    ws = workspace(device, dtype, full_verify=full_verify, base_path=base_path)
    path = ws.export(ref, out_dir, force=force, actor=author)
    out.print(f"checked out {ref} to {path} (state hash verified)")


app.command("export", help="Same as checkout.", rich_help_panel=PANEL)(checkout)


@app.command(rich_help_panel=PANEL)
def revert(target: Annotated[str, typer.Argument(help="Request key prefix or version commit prefix.")],
           reason: Annotated[str, typer.Option(help="Why it is reverted.")],
           branch: BranchOpt = "main", author: AuthorOpt = None, device: DeviceOpt = "auto",
           dtype: DtypeOpt = None, base_path: BasePathOpt = None) -> None:
    """Append a version whose model is the history replayed without TARGET."""
    version = workspace(device, dtype, base_path=base_path).revert(target, branch=branch, author=author,
                                                                  reason=reason)
    out.print(f"[green]{short(version.commit_hash)}[/green] revert of {target}: state {short(version.state_hash)}")


@app.command(rich_help_panel=PANEL)
def replay(branch: BranchOpt = "main",
           onto: Annotated[Path | None, typer.Option("--onto", help="Another base model directory.")] = None,
           name: Annotated[str | None, typer.Option(help="Name of the new base model (with --onto).")] = None,
           new_branch: Annotated[str | None, typer.Option("--new-branch", help="Branch for the replay.")] = None,
           corpus: Annotated[Path | None, typer.Option(help="Statistics corpus for the new base.")] = None,
           author: AuthorOpt = None, device: DeviceOpt = "auto", dtype: DtypeOpt = None,
           base_path: BasePathOpt = None, as_json: JsonOpt = False) -> None:
    """Replay a branch: on its own base (must reproduce every state hash) or --onto another base."""
    ws = workspace(device, dtype, base_path=base_path)
    if onto is None:
        steps = ws.replay_same_base(branch)
        if as_json:
            emit_json(steps)
        else:
            show_replay(steps)
        bad = [s for s in steps if s.broken]
        if bad:
            raise Fail(f"replay of {branch!r}: version {short(bad[0].commit_hash)} did not reproduce its state hash "
                       f"on the numerics it was recorded with", 1)
        return None
    base_name = name or onto.resolve().name
    report = ws.replay_onto(branch, onto, base_name=base_name, new_branch=new_branch or f"{branch}-on-{base_name}",
                            corpus=corpus, author=author)
    if as_json:
        return emit_json(report)
    out.print(f"replayed {len(report.versions)} rounds onto {base_name!r} on branch {report.branch!r}: "
              f"{sum(report.took.values())}/{len(report.took)} facts took ({report.success_rate:.1%})")
    return None


@app.command(rich_help_panel=PANEL)
def demo(directory: Annotated[Path, typer.Option("--dir", help="Where the model and ledger go.")] = Path(".demo"),
         model: Annotated[str, typer.Option(
             "--model", help="smollm2 (a real pretrained model, from its GGUF package) or fact-world.")] = "smollm2",
         edits: Annotated[int, typer.Option(help="Number of edits.")] = 100,
         batch_size: Annotated[int, typer.Option("--batch-size")] = 20,
         preset: Annotated[str, typer.Option(help="World preset (--model fact-world).")] = "default",
         requests: Annotated[Path | None, typer.Option(
             "--requests", help="CounterFact file of the facts to edit (--model smollm2).")] = None,
         force: Annotated[bool, typer.Option(help="Replace a ledger already in DIR/ledger.")] = False) -> None:
    """Run the whole lifecycle on a real model (or the fact world), then print a summary."""
    from editor.demo import run_demo

    quiet_transformers()
    report = run_demo(directory, model=model, edits=edits, batch_size=batch_size, preset=preset, force=force,
                      requests_file=requests, progress=lambda line: out.print(line, markup=False, highlight=False))
    show_demo(report)
    if not (report.verify_ok and report.replay_ok):
        raise Fail("the demo's ledger did not verify or replay (see the summary)", 1)
