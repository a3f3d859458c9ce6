"""Shared test setup: offline Hugging Face, fixed torch threads, the data directory and the tiny fact worlds."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

# `make test` runs two pytest workers (pytest-xdist) on the 2-core machine: one thread each, and for the commands
# they start, so that nothing oversubscribes the cores (measured: an oversubscribed torch runs many times slower).
THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2
if THREADS == 1:
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
torch.set_num_threads(THREADS)

REPO_ROOT = Path(__file__).resolve().parents[1]
# The files that take longest, longest first (measured on a 2-core Intel Xeon, seconds: 176, 105, 104, 101, 71, 65,
# 60, 57, 49, 48, 47, 39, 35), then the rest in collection order. The Makefile turns off xdist's own reordering
# (most tests first), which ran the 3-minute one-test CounterFact world file last: one worker idle for 3 minutes.
LONGEST_FILES = ("tests/world/test_world_counterfact.py", "tests/lifecycle/test_real_model.py",
                 "tests/lifecycle/test_crash.py", "tests/world/test_world.py", "tests/lifecycle/test_concurrency.py",
                 "tests/test_benchmarks.py", "tests/world/test_numerics.py", "tests/lifecycle/test_numerics_replay.py",
                 "tests/lifecycle/test_bad_input.py", "tests/lifecycle/test_numerics.py",
                 "tests/lifecycle/test_team_store.py", "tests/audit/test_report.py", "tests/lifecycle/test_relocate.py")


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


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory):
    """The tiny fact world (seed 0, train_seed 0), built once per test session."""
    from editor.world import build_world

    return build_world(tmp_path_factory.mktemp("tiny_world"), preset="tiny", seed=0, train_seed=0, progress=False)


@pytest.fixture(scope="session")
def tiny_world_release2(tmp_path_factory: pytest.TempPathFactory):
    """The same facts learned by a second model (another train_seed): a base model's next release."""
    from editor.world import build_world

    return build_world(tmp_path_factory.mktemp("tiny_world_release2"), preset="tiny", seed=0, train_seed=1,
                       progress=False)


# A real S3-compatible server (moto's, as its own process) for the object-storage tests: `s3_server`, `s3_env`.
from tests.s3 import s3_env, s3_server  # noqa: E402, F401
