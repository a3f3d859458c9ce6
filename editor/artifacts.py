"""Tensors and texts to and from content-addressed blobs: safetensors for tensors, JSON for the rest.

Never pickle: a blob from the store is outside data, and safetensors/JSON cannot execute code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from editor.engine import ColumnChange
from ledger.records import ArtifactRef, canonical_json
from ledger.store import ContentStore


def tensors_to_bytes(tensors: Mapping[str, torch.Tensor]) -> bytes:
    return save_safetensors({name: t.detach().cpu().contiguous() for name, t in sorted(tensors.items())})


def tensors_from_bytes(data: bytes) -> dict[str, torch.Tensor]:
    return load_safetensors(data)


def put_tensors(store: ContentStore, role: str, tensors: Mapping[str, torch.Tensor]) -> ArtifactRef:
    data = tensors_to_bytes(tensors)
    return ArtifactRef(role=role, sha256=store.put(data), kind="safetensors", size_bytes=len(data))


def put_json(store: ContentStore, role: str, value: Any) -> ArtifactRef:
    data = canonical_json(value).encode()
    return ArtifactRef(role=role, sha256=store.put(data), kind="json", size_bytes=len(data))


def get_tensors(store: ContentStore, sha256: str) -> dict[str, torch.Tensor]:
    return tensors_from_bytes(store.get(sha256))


def get_json(store: ContentStore, sha256: str) -> Any:
    return json.loads(store.get(sha256))


# A weight change is stored as three tensors per edited weight: the touched column indices and their exact
# old and new values. `new` alone rebuilds the model; `old` lets an auditor check the change against its parent.
def changes_to_tensors(changes: Mapping[str, ColumnChange]) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for name, change in changes.items():
        tensors[f"{name}::columns"] = change.columns.to(torch.int64)
        tensors[f"{name}::old"] = change.old
        tensors[f"{name}::new"] = change.new
    return tensors


def changes_from_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, ColumnChange]:
    names = sorted({key.rsplit("::", 1)[0] for key in tensors})
    return {
        name: ColumnChange(
            weight_name=name,
            columns=tensors[f"{name}::columns"],
            old=tensors[f"{name}::old"],
            new=tensors[f"{name}::new"],
        )
        for name in names
    }
