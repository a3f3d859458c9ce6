"""`editledger demo`: the whole lifecycle on the built-in fact world, with a summary of what was proven."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from editor.evaluate import evaluate_requests
from editor.lifecycle import Workspace
from editor.world import build_world
from ledger import Ledger


def run_demo(directory: Path, *, edits: int = 100, batch_size: int = 20, preset: str = "default",
             console: Console | None = None) -> dict:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one line per step, not a bar per model load
    console = console or Console()
    say = console.print
    started = time.perf_counter()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    say(f"[bold]1. fact world[/bold] ({preset}) in {directory / 'world'}")
    world = build_world(directory / "world", preset=preset)
    say(f"   {world.n_facts} facts, the model knows {world.accuracy:.1%} (paraphrases {world.paraphrase_accuracy:.1%})")

    ledger_dir = directory / "ledger"
    if ledger_dir.exists():
        shutil.rmtree(ledger_dir)
    ledger_dir.mkdir(parents=True)
    ledger = Ledger.init(ledger_dir)
    ws = Workspace(ledger, progress=lambda line: say(f"   [dim]{line}[/dim]"))
    say(f"[bold]2. ledger[/bold] in {ledger_dir / '.editledger'}")
    base = ws.add_model("fact-world", world.model_dir, corpus=world.corpus_path, author="demo")
    ws.compute_stats("fact-world", world.corpus_path, actor="demo")

    requests = world.requests()[:edits]
    say(f"[bold]3. editing[/bold] {len(requests)} counterfactual facts with NSE in rounds of {batch_size}")
    t0 = time.perf_counter()
    versions = ws.edit(requests, method="nse", batch_size=batch_size, author="demo",
                       reason="demo: counterfactual updates")
    edit_seconds = time.perf_counter() - t0
    head = versions[-1]
    final = ws.evaluate(head.commit_hash)
    scores = final.aggregate

    round2 = ledger.show(versions[1].commit_hash) if len(versions) > 1 else ledger.show(versions[0].commit_hash)
    reverted = round2.requests[0].request
    say(f"[bold]4. revert[/bold] the request {reverted.request_key[:12]} of round 2 "
        f"({reverted.subject!r} -> {reverted.target_new!r})")
    revert_version = ws.revert(reverted.request_key, author="demo", reason="demo: this edit was wrong")
    after, _ = ws.checkout_model(revert_version.commit_hash)
    back = evaluate_requests(after.model, after.tokenizer, [reverted]).per_request[0]
    others = [r for r in requests if r.request_key != reverted.request_key]
    kept = evaluate_requests(after.model, after.tokenizer, others).aggregate

    say("[bold]5. checkout[/bold] of every version, each verified against its recorded state hash")
    checkouts = 0
    for version in ledger.log("main", limit=1000):
        ws.checkout_model(version.commit_hash)
        checkouts += 1
    old_dir = ws.export(versions[0].commit_hash, directory / "checkout-round1", force=True, actor="demo")

    say("[bold]6. replay[/bold] of the branch on its base: every state hash must be reproduced bit for bit")
    steps = ws.replay_same_base("main")
    replay_ok = all(s.ok for s in steps)
    report = ledger.verify()

    elapsed = time.perf_counter() - started
    table = Table(title="editledger demo: summary", show_header=True)
    table.add_column("what")
    table.add_column("result")
    table.add_row("base model", f"fact-world {base.state_hash[:12]} ({world.n_facts} facts)")
    table.add_row("edits", f"{len(requests)} in {len(versions)} NSE rounds, {edit_seconds:.1f}s")
    for metric in ("efficacy", "generalization", "specificity"):
        if metric in scores:
            table.add_row(f"  {metric} after the last round", f"{scores[metric]:.3f}")
    table.add_row("revert", f"{revert_version.commit_hash[:12]}: reverted fact back to its base answer: "
                  f"{'yes' if back.get('efficacy', 1.0) == 0.0 else 'no'}; "
                  f"others' efficacy {kept.get('efficacy', 0):.3f}")
    table.add_row("checkout", f"{checkouts} versions rebuilt and verified; round 1 exported to {old_dir}")
    table.add_row("replay", f"{sum(s.ok for s in steps)}/{len(steps)} versions reproduced bit-exactly")
    table.add_row("verify", f"{'ok' if report.ok else 'FAILED'}: {report.versions_checked} versions, "
                  f"{report.blobs_checked} blobs")
    table.add_row("files", f"world {world.out_dir}, ledger {ledger_dir / '.editledger'}")
    table.add_row("time", f"{elapsed:.1f}s")
    console.print(table)
    console.print(f"Explore: cd {ledger_dir} && editledger log")
    return {"scores": scores, "replay_ok": replay_ok, "verify_ok": report.ok, "seconds": elapsed,
            "reverted_back": back, "others": kept, "versions": [v.commit_hash for v in versions]}
