"""Shared test setup: offline Hugging Face, fixed torch threads, the data directory and the tiny fact worlds."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch
from filelock import FileLock

from editor.world import WorldInfo, build_world

# `make test` runs two pytest workers (pytest-xdist) on the 2-core machine: one thread each, and for the commands
# they start, so that nothing oversubscribes the cores (measured: an oversubscribed torch runs many times slower).
THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2
if THREADS == 1:
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
torch.set_num_threads(THREADS)

REPO_ROOT = Path(__file__).resolve().parents[1]
# The files that take longest, longest first (measured on a 2-core AMD EPYC, seconds: 139, 136, 110, 75, 66, 55,
# 50, 49, 48, 16, 13, 10), then the rest in collection order. The Makefile turns off xdist's own reordering (most
# tests first), which ran the 2.5-minute one-test CounterFact world file last: one worker idle for minutes.
LONGEST_FILES = ("tests/world/test_world_counterfact.py", "tests/lifecycle/test_crash.py", "tests/world/test_world.py",
                 "tests/lifecycle/test_concurrency.py", "tests/lifecycle/test_real_model.py",
                 "tests/lifecycle/test_numerics_replay.py", "tests/test_benchmarks.py", "tests/world/test_numerics.py",
                 "tests/lifecycle/test_team_store.py", "tests/lifecycle/test_relocate.py",
                 "tests/lifecycle/test_bad_input.py", "tests/lifecycle/test_numerics.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest files first; a stable sort, so each file's tests stay together and in their order."""
    missing = [path for path in LONGEST_FILES if not (REPO_ROOT / path).is_file()]
    if missing:  # a renamed file would quietly lose its place
        raise pytest.UsageError(f"tests/conftest.py LONGEST_FILES: no such file {missing[0]}")

    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]
        return LONGEST_FILES.index(path) if path in LONGEST_FILES else len(LONGEST_FILES)

    items.sort(key=rank)


def shared_data_dir() -> Path:
    """The project's read-only benchmark data, beside the repository (`../shared/data`)."""
    return REPO_ROOT / ".." / "shared" / "data"


def session_world(tmp_path_factory: pytest.TempPathFactory, name: str, **settings: int) -> WorldInfo:
    """A tiny fact world built once for the whole run. Under pytest-xdist the workers share it: the first to ask
    builds it under a file lock and the others then load it (`build_world` returns a complete world with the same
    settings as it is), instead of each worker spending its own 20 s on the same bits."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build_world(tmp_path_factory.mktemp(name), preset="tiny", progress=False, **settings)
    run_dir = tmp_path_factory.getbasetemp().parent  # this run's temporary directory, above every worker's own
    with FileLock(str(run_dir / f"{name}.lock")):
        return build_world(run_dir / name, preset="tiny", progress=False, **settings)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> WorldInfo:
    """The tiny fact world (seed 0, train_seed 0)."""
    return session_world(tmp_path_factory, "tiny_world", seed=0, train_seed=0)


@pytest.fixture(scope="session")
def tiny_world_release2(tmp_path_factory: pytest.TempPathFactory) -> WorldInfo:
    """The same facts learned by a second model (another train_seed): a base model's next release."""
    return session_world(tmp_path_factory, "tiny_world_release2", seed=0, train_seed=1)


# A real S3-compatible server (moto's, as its own process) for the object-storage tests: `s3_server`, `s3_env`.
from tests.s3 import s3_env, s3_server  # noqa: E402, F401
