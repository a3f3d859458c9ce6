"""Numerics: the fact world is the same weights on any x86-64 CPU, Intel's or AMD's, and portable processes run the
pinned kernels."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy
import torch

from editor.determinism import (
    PORTABLE_ENVIRONMENT,
    bit_exact_promised,
    cpu_vendor,
    numerics_differences,
    portable_environment,
    portable_supported,
)
from editor.optim import Adam, exact_sqrt
from tests.conftest import REPO_ROOT

# The tiny world (seed 0, train seed 0) as every x86-64 CPU builds it (portable numerics, WORLD_FORMAT 9): built
# natively on an AMD EPYC and under qemu as an Intel Cascadelake-Server, the same bits (docs/design-notes.md).
TINY_WORLD_STATE_HASH = "6e7f10b02f89ccca6dfabb3eebe40db8c95a3ead252cf8dfddeb8156e1f5ac21"


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


# qemu-user's model of the other CPU maker's server CPU, by this machine's maker.
OTHER_VENDOR_CPU = {"AuthenticAMD": "Cascadelake-Server", "GenuineIntel": "EPYC"}


def _cross_vendor_check(out: Path, emulator: list[str]) -> dict[str, str]:
    out.mkdir()
    env = {**portable_environment(), "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([*emulator, sys.executable, "-m", "tests.cross_vendor", str(out)], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_portable_training_and_editing_give_the_same_bits_on_the_other_cpu_makers_instruction_stream(tmp_path):
    """A few world-training steps, the ledger's base and one NSE round (z*, keys, C0, solves) under portable
    numerics, here and under qemu as the other maker's CPU: the same state hashes. Before editor/optim.py's Adam
    (torch's square root through MKL's vector math) the two differed at the first training step."""
    vendor = cpu_vendor()
    assert vendor in OTHER_VENDOR_CPU, f"an x86-64 CPU of Intel or AMD expected, not {vendor!r}"
    qemu = shutil.which("qemu-x86_64")
    assert qemu, "qemu-x86_64 not found: install Debian's qemu-user (.ci/run does)"
    native = _cross_vendor_check(tmp_path / "native", [])
    emulated = _cross_vendor_check(tmp_path / "emulated", [qemu, "-cpu", OTHER_VENDOR_CPU[vendor]])
    assert emulated == native and native["trained"] != native["edited"]


def test_the_exact_square_root_is_ieee_rounded_in_every_dtype():
    values = torch.rand(200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1e4

    def rounded_root(x: torch.Tensor) -> torch.Tensor:
        # numpy's float64 root is the hardware's, rounded once; rounding it again to float32 (or float32 to
        # bfloat16) is exact, since 53 >= 2 * 24 + 2 (and 24 >= 2 * 8 + 2)
        return torch.from_numpy(numpy.sqrt(x.double().numpy())).to(x.dtype)

    assert torch.equal(exact_sqrt(values), rounded_root(values))
    assert torch.equal(exact_sqrt(values.float()), rounded_root(values.float()))
    brain = values.bfloat16()
    assert torch.equal(exact_sqrt(brain), rounded_root(brain.float()).bfloat16())


def test_adam_follows_torchs_adam_and_adamw_formula():
    for weight_decay in (0.0, 0.01):
        torch.manual_seed(0)
        ours, theirs = torch.nn.Linear(16, 8), torch.nn.Linear(16, 8)
        theirs.load_state_dict(ours.state_dict())
        optimizers = (Adam(ours.parameters(), lr=1e-2, betas=(0.9, 0.98), weight_decay=weight_decay),
                      torch.optim.AdamW(theirs.parameters(), lr=1e-2, betas=(0.9, 0.98), weight_decay=weight_decay))
        inputs = torch.randn(32, 16, generator=torch.Generator().manual_seed(1))
        for _ in range(20):
            for model, optimizer in zip((ours, theirs), optimizers, strict=True):
                optimizer.zero_grad()
                model(inputs).pow(2).mean().backward()
                optimizer.step()
        # torch's square root is one unit in the last place off in places; nothing else differs
        assert torch.allclose(ours.weight, theirs.weight, rtol=1e-5, atol=1e-6)
        assert not torch.equal(ours.weight, torch.nn.Linear(16, 8).weight)
