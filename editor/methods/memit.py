"""MEMIT: z* on the current model, one pass, every neuron: ΔW = R Kᵀ (λC0 + K Kᵀ)⁻¹ (+ Cp for MEMIT-seq)."""

from __future__ import annotations

import torch

from editor.engine import (
    EditState,
    MethodOutput,
    add_to_columns,
    current_hidden,
    layer_keys,
    solve_columns,
    zstar_current,
)
from ledger.records import EditRequest


def memit_update(state: EditState, requests: list[EditRequest], use_cp: bool) -> MethodOutput:
    hp = state.hparams
    zstar = zstar_current(state, requests)
    footprint = []
    for i, layer in enumerate(hp.layers):
        keys = layer_keys(state, requests, layer)
        residual = (zstar - current_hidden(state, requests)).T / (len(hp.layers) - i)
        every_neuron = torch.arange(keys.shape[0])
        delta = solve_columns(state, layer, keys, residual, every_neuron, use_cp=use_cp)
        footprint.append(add_to_columns(state, layer, every_neuron, delta, pass_index=0))
    return MethodOutput(zstar, ["edited"] * len(requests), footprint)


def memit_round(state: EditState, requests: list[EditRequest]) -> MethodOutput:
    return memit_update(state, requests, use_cp=False)


def memit_cp_round(state: EditState, requests: list[EditRequest]) -> MethodOutput:
    return memit_update(state, requests, use_cp=True)
