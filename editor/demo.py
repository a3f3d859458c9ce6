"""`editledger demo`: the whole lifecycle on the built-in fact world; returns a report of what was proven.

The demo makes its ledger in `<dir>/ledger`. A ledger already there is not its to delete: it is replaced only
with `force` (a second `make demo` without it is refused, naming the directory)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from editor.evaluate import evaluate_requests
from editor.lifecycle import LifecycleError, Workspace
from editor.world import build_world
from ledger import Ledger


@dataclass
class DemoReport:
    """What the demo did and found, for the command to render."""

    world_dir: Path
    ledger_dir: Path
    n_facts: int
    base_state_hash: str
    n_edits: int
    n_rounds: int
    edit_seconds: float
    scores: dict[str, float]
    revert_commit: str
    reverted_back: bool
    others_efficacy: float
    checkouts: int
    export_dir: Path
    replayed_ok: int
    replayed: int
    verify_ok: bool
    versions_checked: int
    blobs_checked: int
    seconds: float
    versions: list[str] = field(default_factory=list)

    @property
    def replay_ok(self) -> bool:
        return self.replayed_ok == self.replayed


def _no_progress(_: str) -> None:
    return None


def run_demo(directory: Path, *, edits: int = 100, batch_size: int = 20, preset: str = "default",
             force: bool = False, progress: Callable[[str], None] | None = None) -> DemoReport:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one line per step, not a bar per model load
    say = progress or _no_progress
    started = time.perf_counter()
    directory = Path(directory)
    ledger_dir = directory / "ledger"
    if ledger_dir.exists() and any(ledger_dir.iterdir()) and not force:
        raise LifecycleError(f"--dir {directory}: {ledger_dir} already holds files (an earlier demo's ledger?); "
                             f"pass --force to replace it, or choose another --dir")
    directory.mkdir(parents=True, exist_ok=True)

    say(f"1. fact world ({preset}) in {directory / 'world'}")
    world = build_world(directory / "world", preset=preset)
    say(f"   {world.n_facts} facts, the model knows {world.accuracy:.1%} "
        f"(paraphrases {world.paraphrase_accuracy:.1%})")

    if ledger_dir.exists():
        shutil.rmtree(ledger_dir)  # only with force (checked above)
    ledger_dir.mkdir(parents=True)
    ledger = Ledger.init(ledger_dir)
    ws = Workspace(ledger, progress=lambda line: say(f"   {line}"))
    say(f"2. ledger in {ledger_dir / '.editledger'}")
    base = ws.add_model("fact-world", world.model_dir, corpus=world.corpus_path, author="demo")
    ws.compute_stats("fact-world", world.corpus_path, actor="demo")

    requests = world.requests()[:edits]
    say(f"3. editing {len(requests)} counterfactual facts with NSE in rounds of {batch_size}")
    t0 = time.perf_counter()
    versions = ws.edit(requests, method="nse", batch_size=batch_size, author="demo",
                       reason="demo: counterfactual updates")
    edit_seconds = time.perf_counter() - t0
    head = versions[-1]
    scores = ws.evaluate(head.commit_hash).aggregate

    round2 = ledger.show(versions[1].commit_hash) if len(versions) > 1 else ledger.show(versions[0].commit_hash)
    reverted = round2.requests[0].request
    say(f"4. revert the request {reverted.request_key[:12]} of round 2 "
        f"({reverted.subject!r} -> {reverted.target_new!r})")
    revert_version = ws.revert(reverted.request_key, author="demo", reason="demo: this edit was wrong")
    after, _ = ws.checkout_model(revert_version.commit_hash)
    back = evaluate_requests(after.model, after.tokenizer, [reverted]).per_request[0]
    others = [r for r in requests if r.request_key != reverted.request_key]
    kept = evaluate_requests(after.model, after.tokenizer, others).aggregate

    say("5. checkout of every version, each verified against its recorded state hash")
    checkouts = 0
    for version in ledger.log("main", limit=1000):
        ws.checkout_model(version.commit_hash)
        checkouts += 1
    old_dir = ws.export(versions[0].commit_hash, directory / "checkout-round1", force=True, actor="demo")

    say("6. replay of the branch on its base: every state hash must be reproduced bit for bit")
    steps = ws.replay_same_base("main")
    verified = ledger.verify()
    return DemoReport(
        world_dir=world.out_dir, ledger_dir=ledger_dir, n_facts=world.n_facts, base_state_hash=base.state_hash,
        n_edits=len(requests), n_rounds=len(versions), edit_seconds=edit_seconds, scores=scores,
        revert_commit=revert_version.commit_hash, reverted_back=back.get("efficacy", 1.0) == 0.0,
        others_efficacy=kept.get("efficacy", 0.0), checkouts=checkouts, export_dir=old_dir,
        replayed_ok=sum(s.ok for s in steps), replayed=len(steps), verify_ok=verified.ok,
        versions_checked=verified.versions_checked, blobs_checked=verified.blobs_checked,
        seconds=time.perf_counter() - started, versions=[v.commit_hash for v in versions],
    )
