"""The `editledger` command: parses arguments, calls `ledger/` and `editor/`, renders with Rich. No logic of its own.

Exit codes: 0 success, 1 a check failed (verify), 2 bad input or a refused operation, 3 lost a race (conflict).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

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

out = Console()
err = Console(stderr=True)

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


class Fail(Exception):
    """A refused operation: one line to stderr and an exit code."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


_options: dict[str, Any] = {}


@app.callback()
def _root(db: DbOpt = None, store: StoreOpt = None) -> None:
    _options["db"] = db
    _options["store"] = store


def open_ledger() -> Ledger:
    return Ledger.open(Path.cwd(), db_url=_options.get("db"), store_dir=_options.get("store"))


def workspace(device: str = "cpu", dtype: str = "float32", full_verify: bool = False):
    from transformers.utils import logging as hf_logging

    from editor.lifecycle import Workspace

    hf_logging.disable_progress_bar()  # our own progress goes to stderr; theirs would clutter one-line errors

    return Workspace(open_ledger(), device=device, dtype=dtype, full_verify=full_verify,
                     progress=lambda line: err.print(f"[dim]{line}[/dim]"))


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
def model_add(name: str, path: Annotated[Path, typer.Option("--path", help="Hugging Face model directory.")],
              branch: BranchOpt = "main", author: AuthorOpt = None,
              corpus: Annotated[Path | None, typer.Option(help="Text corpus for covariance statistics.")] = None,
              device: str = "cpu", dtype: str = "float32") -> None:
    """Record a base model (by its state hash) and start a branch on it."""
    version = workspace(device, dtype).add_model(name, path, branch=branch, author=author, corpus=corpus)
    out.print(f"model {name!r} recorded: state {short(version.state_hash)}, "
              f"branch {branch!r} at {short(version.commit_hash)}")


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
          device: str = "cpu", dtype: str = "float32") -> None:
    """Compute (or reuse) covariance statistics C0 of a base model and record them."""
    if not corpus.is_file():
        raise Fail(f"--corpus {corpus}: file not found")
    layer_list = [int(x) for x in layers.split(",")] if layers else None
    done, shas = workspace(device, dtype).compute_stats(name, corpus, layer_list, samples)
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
    hparam: SetOpt = None,
    device: str = "cpu", dtype: str = "float32", as_json: JsonOpt = False,
) -> None:
    """Edit facts: one from flags or many from a file, in rounds; each round is one recorded version."""
    from editor.engine import METHODS
    from editor.readers import read_requests
    from ledger.records import EditRequest

    if method not in METHODS:
        raise Fail(f"--method {method!r}: unknown method; choose one of {', '.join(METHODS)}")
    if file is not None:
        requests = read_requests(file, fmt=fmt, limit=limit, skip_invalid=skip_invalid)
    elif subject and prompt and target:
        requests = [EditRequest(subject=subject, prompt=prompt, target_new=target, target_true=target_true)]
    else:
        raise Fail("give a request FILE, or --subject, --prompt and --target")
    overrides = hparam_overrides(hparam or [])
    versions = workspace(device, dtype).edit(requests, branch=branch, method=method, batch_size=batch_size,
                                             author=author, reason=reason, evaluate=evaluate, corpus=corpus,
                                             overrides=overrides, retry=retry)
    if as_json:
        return emit_json(versions)
    for v in versions:
        out.print(f"[green]{short(v.commit_hash)}[/green] {v.kind} {v.n_requests} requests, "
                  f"state {short(v.state_hash)}")


@app.command("eval")
def eval_(ref: Annotated[str, typer.Argument(help="Version (commit prefix, tag, branch).")] = "main",
          as_json: JsonOpt = False) -> None:
    """Score every request in a version's history on that version's model, and record the scores."""
    report = workspace().evaluate(ref)
    if as_json:
        return emit_json(report.aggregate)
    table = Table("metric", "value")
    for k, v in sorted(report.aggregate.items()):
        table.add_row(k, f"{v:.4f}")
    out.print(table)


@app.command()
def checkout(ref: str, out_dir: Annotated[Path, typer.Option("--out", help="Directory to write.")],
             force: Annotated[bool, typer.Option(help="Overwrite a non-empty directory.")] = False,
             full_verify: Annotated[bool, typer.Option(
                 "--full-verify", help="Hash every tensor of the base too, even when none of its files changed.")
             ] = False,
             author: AuthorOpt = None) -> None:
    """Write a version as a Hugging Face directory, rebuilt from the recorded changes and verified."""
    path = workspace(full_verify=full_verify).export(ref, out_dir, force=force, actor=author)
    out.print(f"checked out {ref} to {path} (state hash verified)")


app.command("export", help="Same as checkout.")(checkout)


@app.command()
def revert(target: Annotated[str, typer.Argument(help="Request key prefix or version commit prefix.")],
           reason: Annotated[str, typer.Option(help="Why it is reverted.")],
           branch: BranchOpt = "main", author: AuthorOpt = None) -> None:
    """Append a version whose model is the history replayed without TARGET."""
    version = workspace().revert(target, branch=branch, author=author, reason=reason)
    out.print(f"[green]{short(version.commit_hash)}[/green] revert of {target}: state {short(version.state_hash)}")


@app.command()
def replay(branch: BranchOpt = "main",
           onto: Annotated[Path | None, typer.Option("--onto", help="Another base model directory.")] = None,
           name: Annotated[str | None, typer.Option(help="Name of the new base model (with --onto).")] = None,
           new_branch: Annotated[str | None, typer.Option("--new-branch", help="Branch for the replay.")] = None,
           corpus: Annotated[Path | None, typer.Option(help="Statistics corpus for the new base.")] = None,
           author: AuthorOpt = None, as_json: JsonOpt = False) -> None:
    """Replay a branch: on its own base (must reproduce every state hash) or --onto another base."""
    ws = workspace()
    if onto is None:
        steps = ws.replay_same_base(branch)
        if as_json:
            emit_json(steps)
        else:
            for s in steps:
                verdict = "[green]same[/green]" if s.ok else "[red]DIFFERENT[/red]"
                out.print(f"{short(s.commit_hash)} {s.kind:7} {verdict}")
        bad = [s for s in steps if not s.ok]
        if bad:
            raise Fail(f"replay of {branch!r}: version {short(bad[0].commit_hash)} did not reproduce its state hash", 1)
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
@app.command()
def log(branch: BranchOpt = "main", limit: int = 20, offset: int = 0, as_json: JsonOpt = False) -> None:
    """Versions of a branch, newest first."""
    versions = open_ledger().log(branch, limit=limit, offset=offset)
    if as_json:
        return emit_json(versions)
    table = Table("commit", "kind", "method", "requests", "author", "when", "reason", "state")
    for v in versions:
        table.add_row(short(v.commit_hash), v.kind, v.method or "", str(v.n_requests), v.author, v.created_at[:19],
                      v.reason, short(v.state_hash))
    out.print(table)
    return None


@app.command()
def show(ref: str, as_json: JsonOpt = False) -> None:
    """One version: its record, requests, footprint, outcomes, artifacts and scores."""
    detail = open_ledger().show(ref)
    if as_json:
        return emit_json(detail)
    v = detail.version
    out.print(f"[bold]{v.commit_hash}[/bold]  {v.kind}  parent {short(v.parent_hash)}")
    out.print(f"author {v.author}  at {v.created_at}  method {v.method}  state {v.state_hash}")
    if v.reason:
        out.print(f"reason: {v.reason}")
    if v.hparams:
        out.print("hparams: " + ", ".join(f"{k}={json.dumps(x)}" for k, x in sorted(v.hparams.items())), markup=False)
    requests = Table("role", "request", "subject", "prompt", "target_new", "target_true", title="requests")
    for entry in detail.requests:
        r = entry.request
        requests.add_row(entry.role, short(r.request_key), r.subject, r.prompt, r.target_new, r.target_true or "")
    out.print(requests)
    footprint = Table("layer", "pass", "neurons", "‖ΔW‖", title="footprint")
    for f in detail.footprint:
        footprint.add_row(str(f.layer), str(f.pass_index), str(len(f.neurons)), f"{f.delta_norm:.4g}")
    out.print(footprint)
    outcomes = Table("request", "residual before", "after", "status", title="outcomes")
    for o in detail.outcomes:
        outcomes.add_row(short(o.request_key), f"{o.residual_before:.4g}", f"{o.residual_after:.4g}", o.status)
    out.print(outcomes)
    artifacts = Table("role", "sha256", "kind", "bytes", title="artifacts")
    for a in detail.artifacts:
        artifacts.add_row(a.role, short(a.sha256), a.kind, str(a.size_bytes))
    out.print(artifacts)
    return None


@app.command()
def diff(a: str, b: str, as_json: JsonOpt = False) -> None:
    """What changed between two versions: requests added and removed, layers and neurons touched."""
    result = open_ledger().diff(a, b)
    if as_json:
        return emit_json(result)
    emit_rich_dataclass(result)
    return None


def emit_rich_dataclass(value: Any) -> None:
    for key, item in plain(value).items():
        out.print(f"[bold]{key}[/bold]: {json.dumps(item, ensure_ascii=False, default=str)}")


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


@app.command()
def history(subject: Annotated[str | None, typer.Option(help="Subject of the fact.")] = None,
            request: Annotated[str | None, typer.Option(help="Request key prefix.")] = None,
            as_json: JsonOpt = False) -> None:
    """Every version that edited, evaluated, replayed or reverted a fact."""
    if not subject and not request:
        raise Fail("give --subject or --request")
    events = open_ledger().history(subject=subject, request=request)
    if as_json:
        return emit_json(events)
    table = Table("commit", "event", "kind", "request", "detail", "when")
    for e in events:
        table.add_row(short(e.commit_hash), e.event, e.kind, short(e.request_key), str(e.detail or ""),
                      e.created_at[:19])
    out.print(table)
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
               Path | None, typer.Option(help="Write, or check, a checkpoint file kept outside the database.")
           ] = None,
           as_json: JsonOpt = False) -> None:
    """Recompute every commit hash and blob hash; optionally replay every branch and check a checkpoint."""
    ledger = open_ledger()
    report = ledger.verify()
    problems = list(report.problems)
    if checkpoint is not None:
        if checkpoint.exists():
            problems += ledger.check_checkpoint(checkpoint)
        elif report.ok:
            ledger.write_checkpoint(checkpoint)
            err.print(f"checkpoint written to {checkpoint}")
    replayed: list[Any] = []
    if replay_ and report.ok:
        ws = workspace(full_verify=True)
        for b in ledger.branches():
            steps = ws.replay_same_base(b.name)
            replayed += steps
            problems += [f"branch {b.name!r}: version {short(s.commit_hash)} did not reproduce its state hash on replay"
                         for s in steps if not s.ok]
    if as_json:
        emit_json({"ok": not problems, "versions_checked": report.versions_checked,
                   "blobs_checked": report.blobs_checked, "replayed": len(replayed), "problems": problems})
    elif not problems:
        extra = f", {len(replayed)} versions replayed bit-exactly" if replay_ else ""
        out.print(f"[green]ok[/green]: {report.versions_checked} versions, "
                  f"{report.blobs_checked} blobs verified{extra}")
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
    out.print(f"world in {info.out_dir}: {info.n_facts} facts, knows {info.accuracy:.1%} "
              f"(paraphrases {info.paraphrase_accuracy:.1%}), state {short(info.state_hash)}, "
              f"built in {info.build_seconds:.1f}s")
    if info.edit_hparams:
        settings = " ".join(f"--set {k}={json.dumps(v)}" for k, v in info.edit_hparams.items())
        out.print(f"edit this world with: editledger edit ... {settings}")
    return None


@app.command()
def demo(directory: Annotated[Path, typer.Option("--dir", help="Where the world and the ledger go.")] = Path(".demo"),
         edits: Annotated[int, typer.Option(help="Number of edits.")] = 100,
         batch_size: Annotated[int, typer.Option("--batch-size")] = 20,
         preset: Annotated[str, typer.Option(help="World preset.")] = "default") -> None:
    """Build (or reuse) the default fact world and run the whole lifecycle on it, then print a summary."""
    from editor.demo import run_demo

    run_demo(directory, edits=edits, batch_size=batch_size, preset=preset, console=out)


def fail_line(message: str) -> None:
    """One line on stderr, never wrapped: scripts and tests read it whole."""
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    sys.stderr.write(first + "\n")


def main() -> None:
    """Console entry point: known failures become one line on stderr and an exit code."""
    try:
        app(standalone_mode=False)
    except ConflictError as error:
        fail_line(f"conflict: {error}")
        raise SystemExit(3) from None
    except Fail as error:
        fail_line(f"error: {error}")
        raise SystemExit(error.code) from None
    except (LedgerError, ValueError, FileNotFoundError, KeyError) as error:
        fail_line(f"error: {error}" if str(error).strip() else f"error: {type(error).__name__}")
        raise SystemExit(2) from None
    except typer.Exit as done:
        raise SystemExit(done.exit_code) from None
    except typer.Abort:
        raise SystemExit(130) from None
    except Exception as error:  # usage errors and anything else: still one line, never a traceback
        exit_code = getattr(error, "exit_code", None)
        if exit_code is not None and hasattr(error, "format_message"):
            fail_line(f"error: {error.format_message()} (see `editledger --help`)")
            raise SystemExit(exit_code) from None
        if os.environ.get("EDITLEDGER_DEBUG"):
            raise
        fail_line(f"error: {type(error).__name__}: {error}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
