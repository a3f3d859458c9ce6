"""AlphaEdit: MEMIT's update projected on the null space of C0: ΔW = R Kᵀ P (Cp P + K Kᵀ P + μI)⁻¹."""

from __future__ import annotations

import torch

from editor.engine import (
    EditState,
    MethodOutput,
    add_to_columns,
    current_hidden,
    layer_keys,
    solve_projected,
    zstar_current,
)
from ledger.records import EditRequest


def alphaedit_round(state: EditState, requests: list[EditRequest]) -> MethodOutput:
    hp = state.hparams
    zstar = zstar_current(state, requests)
    footprint = []
    for i, layer in enumerate(hp.layers):
        keys = layer_keys(state, requests, layer)
        residual = (zstar - current_hidden(state, requests)).T / (len(hp.layers) - i)
        delta = solve_projected(state, layer, keys, residual)
        footprint.append(add_to_columns(state, layer, torch.arange(keys.shape[0]), delta, pass_index=0))
    return MethodOutput(zstar, ["edited"] * len(requests), footprint)
