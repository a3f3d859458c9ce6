"""Numerics: the fact world is the same weights on any x86-64 CPU, and portable processes run the pinned kernels."""

from __future__ import annotations

import json
import subprocess
import sys

from editor.determinism import (
    PORTABLE_ENVIRONMENT,
    bit_exact_promised,
    numerics_differences,
    portable_environment,
    portable_supported,
)
from tests.conftest import REPO_ROOT

# The tiny world (seed 0, train seed 0) as every x86-64 CPU builds it (portable numerics, WORLD_FORMAT 5). Built
# on this project's machines with the kernels of AVX-512, AVX2 and baseline CPUs forced (docs/design-notes.md).
TINY_WORLD_STATE_HASH = "2d240847aa5effac4e066146014b6481cc53f22a1cb750491d3e366fd769994d"


def test_the_tiny_world_has_the_same_weights_on_every_x86_64_machine(tiny_world):
    meta = json.loads((tiny_world.out_dir / "world.json").read_text())
    assert portable_supported() and meta["numerics"] == "portable", (
        f"this machine cannot build portable worlds (numerics {meta['numerics']!r}): its worlds are its own")
    assert tiny_world.state_hash == TINY_WORLD_STATE_HASH, (
        f"the tiny world built here has state hash {tiny_world.state_hash[:12]}, not the {TINY_WORLD_STATE_HASH[:12]} "
        f"every x86-64 CPU builds: its kernels were not pinned (see editor/determinism.py), or the build changed "
        f"(then bump WORLD_FORMAT and this constant)")


def test_a_portable_process_runs_mkl_reproducibly_on_one_thread_with_baseline_kernels():
    # MKL reports its conditional-reproducibility mode and threads per call when verbose.
    code = ("import torch; from editor.determinism import use_numerics; use_numerics('portable'); "
            "a = torch.ones(64, 64); a @ a; print(torch.backends.cpu.get_cpu_capability())")
    env = {**portable_environment(), "MKL_VERBOSE": "1", "PYTHONPATH": str(REPO_ROOT),
           "ATEN_CPU_CAPABILITY": PORTABLE_ENVIRONMENT["ATEN_CPU_CAPABILITY"]}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    gemm = next(line for line in done.stdout.splitlines() if "SGEMM" in line)
    assert "CNR:COMPATIBLE" in gemm and "NThr:1" in gemm, gemm
    assert done.stdout.strip().splitlines()[-1] == "DEFAULT"
    # And a native process (this one's settings) does not.
    native = {k: v for k, v in env.items() if k not in PORTABLE_ENVIRONMENT}
    done = subprocess.run([sys.executable, "-c", code.replace("use_numerics('portable'); ", "")],
                          env=native, capture_output=True, text=True, check=True)
    assert "CNR:COMPATIBLE" not in next(line for line in done.stdout.splitlines() if "SGEMM" in line)


def test_which_replays_promise_the_same_bits():
    here = {"numerics": "native", "device": "cpu", "dtype": "float32", "cpu_model": "A", "cpu_capability": "AVX512",
            "blas": "mkl", "mkl_cbwr": "", "threads": 2, "mkldnn": True, "torch": "2.13.0+cpu"}
    assert numerics_differences(here, dict(here)) == {} and bit_exact_promised(here, dict(here))
    other_cpu = {**here, "cpu_model": "B", "cpu_capability": "AVX2"}
    assert numerics_differences(here, other_cpu) == {"cpu_model": ("A", "B"), "cpu_capability": ("AVX512", "AVX2")}
    assert not bit_exact_promised(here, other_cpu)
    portable = {**here, "numerics": "portable", "cpu_capability": "DEFAULT", "mkl_cbwr": "COMPATIBLE", "threads": 1,
                "mkldnn": False}
    assert bit_exact_promised(portable, {**portable, "cpu_model": "B"})  # any CPU
    assert not bit_exact_promised(portable, {**portable, "torch": "2.14.0"})  # not any torch
    assert not bit_exact_promised({k: v for k, v in here.items() if k != "numerics"}, here)  # unrecorded: no promise
