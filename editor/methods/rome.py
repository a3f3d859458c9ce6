"""ROME: one request, one layer (z_layer), a rank-one update: ΔW = r uᵀ / (uᵀ k), u = C0⁻¹ k."""

from __future__ import annotations

import torch

from editor.engine import (
    EditState,
    MethodOutput,
    add_to_columns,
    current_hidden,
    layer_keys,
    solve_rank_one,
    zstar_current,
)
from ledger.records import EditRequest


def rome_round(state: EditState, requests: list[EditRequest]) -> MethodOutput:
    layer = state.hparams.z_layer
    zstar = zstar_current(state, requests)
    key = layer_keys(state, requests, layer)  # k: d_ff × 1
    residual = (zstar - current_hidden(state, requests)).T  # r = z* − h: d_model × 1
    delta = solve_rank_one(state, layer, key, residual)
    footprint = [add_to_columns(state, layer, torch.arange(key.shape[0]), delta, pass_index=0)]
    return MethodOutput(zstar, ["edited"], footprint)
