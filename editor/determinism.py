"""The one place that sets up deterministic computation, chooses the CPU kernels, and records the numerics a
version ran with.

Two runs give the same bits only on the same numerics. On a CPU those are decided at process start, before
torch computes anything: ATen picks its vector kernels by the CPU (`ATEN_CPU_CAPABILITY`: default / avx2 /
avx512) and MKL its BLAS code path (`MKL_CBWR`); threads change how reductions are split. Measured on one machine
(tiny fact world, docs/design-notes.md "Numerics"), every one of those choices gives other weights.

*Portable* numerics pin all of them to paths that every x86-64 CPU runs the same way: ATen's baseline
(non-vector-dispatched) kernels, MKL's conditional numerical reproducibility in COMPATIBLE mode, one thread,
oneDNN off. A process gets them only from its start, so a process that does not run with them starts a child
that does (`portable_environment`): world builds always do; edits and replays do when their version asks for it
(`NumericsRestart`, which the CLI answers by starting itself again). *Native* numerics use what the CPU offers:
faster, and bit-exact only on the same kind of machine; `verify --replay` then reports what differs.
"""

from __future__ import annotations

import os
import platform
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch

from editor.errors import NumericsError, NumericsRestart

NUMERICS_MODES = ("native", "portable")
# The pinned kernel paths; MKL and OpenMP read these when they start, ATen on its first dispatch.
PORTABLE_ENVIRONMENT = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "MKL_DYNAMIC": "FALSE",
                        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
PORTABLE_THREADS = 1
# Fields of an environment record that decide the bits of a result (the others are informational).
NUMERIC_FIELDS = ("numerics", "device", "dtype", "cpu_capability", "blas", "mkl_cbwr", "threads", "mkldnn", "torch",
                  "cpu_model", "gpu", "cuda")
# Of those, what a portable result still depends on: everything but the CPU it ran on.
PORTABLE_FIELDS = ("numerics", "device", "dtype", "cpu_capability", "blas", "mkl_cbwr", "threads", "mkldnn", "torch")


def apply_determinism(seed: int) -> None:
    """Seed every generator; deterministic kernels; no TF32 (it changes float32 matmul results)."""
    # cuBLAS needs this before its first use to have a deterministic workspace.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy

        numpy.random.seed(seed % 2**32)
    except ImportError:
        pass
    torch.use_deterministic_algorithms(True, warn_only=False)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.set_float32_matmul_precision("highest")


def portable_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with the pinned kernel paths, for a child process."""
    return {**(os.environ if base is None else base), **PORTABLE_ENVIRONMENT}


def portable_supported() -> bool:
    """Portable numerics need an x86-64 CPU and torch's MKL (whose COMPATIBLE path is the same on every x86-64)."""
    return platform.machine().lower() in ("x86_64", "amd64") and torch.backends.mkl.is_available()


def runs_portable() -> bool:
    """Whether this process started with the pinned kernel paths."""
    return (torch.backends.cpu.get_cpu_capability() == "DEFAULT"
            and os.environ.get("MKL_CBWR", "").upper() == PORTABLE_ENVIRONMENT["MKL_CBWR"])


def check_numerics(mode: str, device: str = "cpu") -> None:
    """Refuse a numerics mode this process cannot run: an unknown name (NumericsError), or portable kernels in a
    native process (NumericsRestart)."""
    if mode not in NUMERICS_MODES:
        raise NumericsError(f"--numerics {mode!r}: unknown (choose from {', '.join(NUMERICS_MODES)})")
    if mode != "portable":
        return
    if torch.device(device).type != "cpu":
        raise NumericsError(f"--numerics portable: pins CPU kernels; device {device!r} is not a CPU")
    if not portable_supported():
        mkl = "with" if torch.backends.mkl.is_available() else "without"
        raise NumericsError(f"--numerics portable: needs an x86-64 CPU and torch built with MKL "
                            f"(this is {platform.machine()}, torch {mkl} MKL)")
    if not runs_portable():
        raise NumericsRestart("--numerics portable: this process runs native kernels; start it with "
                              + " ".join(f"{k}={v}" for k, v in PORTABLE_ENVIRONMENT.items()))


def use_numerics(mode: str, device: str = "cpu") -> str:
    """Switch this process to `mode` for good (a portable process was started for this work) and return it."""
    check_numerics(mode, device)
    if mode == "portable":
        torch.set_num_threads(PORTABLE_THREADS)
        torch.backends.mkldnn.enabled = False
    return mode


@contextmanager
def numerics(mode: str, device: str = "cpu") -> Iterator[None]:
    """Run the body under `mode`: portable pins threads and turns oneDNN off (the kernel paths were pinned at
    process start); native changes nothing. The caller's settings come back afterwards."""
    check_numerics(mode, device)
    if mode != "portable":
        yield
        return
    # Not `mkldnn.flags(...)`: it also sets oneDNN's TF32 switch, which warns on a CPU build.
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        with fixed_threads(PORTABLE_THREADS):
            yield
    finally:
        torch.backends.mkldnn.enabled = enabled


@contextmanager
def fixed_threads(count: int) -> Iterator[None]:
    """`count` intra-op threads for the body (how a reduction is split decides its bits)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _cpuinfo(field: str) -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's model name (what decides MKL's native code path beside the capability)."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_vendor() -> str:
    """The CPU maker's CPUID string (GenuineIntel, AuthenticAMD): MKL dispatches on it, and the values of the
    approximate instructions (RSQRTPS, RCPPS) are the maker's own."""
    return _cpuinfo("vendor_id") or "unknown"


def numerics_record(mode: str, device: str, dtype: str) -> dict[str, Any]:
    """What decides the bits of a result computed now under `mode`."""
    record: dict[str, Any] = {
        "numerics": mode,
        "device": str(torch.device(device)),
        "dtype": dtype,
        "cpu_model": cpu_model(),
        "cpu_vendor": cpu_vendor(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "blas": "mkl" if torch.backends.mkl.is_available() else "other",
        "mkl_cbwr": os.environ.get("MKL_CBWR", "") if torch.backends.mkl.is_available() else "",
        "threads": PORTABLE_THREADS if mode == "portable" else torch.get_num_threads(),
        "mkldnn": mode != "portable" and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled,
        "torch": torch.__version__,
    }
    if torch.device(device).type == "cuda":
        record["cuda"] = torch.version.cuda
        record["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return record


def environment_record(loaded: Any, mode: str = "native") -> dict[str, Any]:
    """What a replay must match to reproduce a state hash bit for bit, and the rest of where it ran."""
    return {
        **numerics_record(mode, str(loaded.device), str(loaded.dtype).removeprefix("torch.")),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "transformers": _version("transformers"),
        "safetensors": _version("safetensors"),
        "tokenizers": _version("tokenizers"),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }


def numerics_differences(recorded: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The numerics-deciding fields whose values differ: name -> (recorded, now). Older records lack some fields;
    a field missing on one side only counts as different."""
    return {name: (recorded.get(name), current.get(name)) for name in NUMERIC_FIELDS
            if recorded.get(name) != current.get(name) and (name in recorded or name in current)}


def bit_exact_promised(recorded: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether a replay under `current` must give the recorded bits: the same numerics, or portable numerics on
    both sides with the same library and settings (the CPU may differ)."""
    different = numerics_differences(recorded, current)
    if not different:
        return True
    portable = recorded.get("numerics") == current.get("numerics") == "portable"
    return portable and not (set(different) & set(PORTABLE_FIELDS))
