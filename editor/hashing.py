"""The state hash of a model: what a version's weights are, independent of file formats and hardware.

sha256 over (name, dtype, shape, raw bytes) of every state_dict tensor in name order, each tensor hashed on
its own and the digests combined into one root. Tensors move to CPU one at a time: no full copy of the model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch
from torch import nn

from ledger.records import canonical_json


def tensor_digest(name: str, tensor: torch.Tensor) -> bytes:
    cpu = tensor.detach().to("cpu").contiguous()
    header = canonical_json([name, str(cpu.dtype).removeprefix("torch."), list(cpu.shape)]).encode()
    # A uint8 view reads the raw bytes of any dtype (bf16 and fp8 included, which numpy cannot hold).
    raw = cpu.reshape(-1).view(torch.uint8).numpy().tobytes() if cpu.numel() else b""
    digest = hashlib.sha256(header)
    digest.update(b"\0")
    digest.update(raw)
    return digest.digest()


def state_hash(model_or_tensors: nn.Module | Mapping[str, torch.Tensor]) -> str:
    tensors = model_or_tensors.state_dict() if isinstance(model_or_tensors, nn.Module) else model_or_tensors
    root = hashlib.sha256()
    for name in sorted(tensors):  # tied weights appear under each of their names
        root.update(tensor_digest(name, tensors[name]))
    return root.hexdigest()
