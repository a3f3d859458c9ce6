"""The one place that sets up deterministic computation and records the environment a version ran in."""

from __future__ import annotations

import os
import platform
import random
import sys
from typing import Any

import torch


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


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def environment_record(loaded: Any) -> dict[str, Any]:
    """What a replay must match to reproduce a state hash bit for bit."""
    device = torch.device(loaded.device)
    record: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "safetensors": _version("safetensors"),
        "tokenizers": _version("tokenizers"),
        "device": str(device),
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }
    if device.type == "cuda":
        record["cuda"] = torch.version.cuda
        record["gpu"] = torch.cuda.get_device_name(device)
    return record
