"""NSE: z* on the original weights (rewinding), a few passes, only the neurons that carry the keys' mass."""

from __future__ import annotations

from editor.engine import (
    EditState,
    MethodOutput,
    add_to_columns,
    classify,
    current_hidden,
    layer_keys,
    select_neurons,
    solve_columns,
    zstar_current,
    zstar_rewound,
)
from ledger.records import EditRequest, FootprintLayer


def nse_round(state: EditState, requests: list[EditRequest]) -> MethodOutput:
    hp = state.hparams
    zstar = zstar_rewound(state, requests) if hp.rewind else zstar_current(state, requests)  # rewinding
    statuses: list[str] = []
    footprint: list[FootprintLayer] = []
    for pass_index in range(hp.max_iterations):
        residuals = (zstar - current_hidden(state, requests)).norm(dim=1)
        if pass_index == 0:
            statuses = classify(residuals, hp)
        active = [i for i, e in enumerate(residuals.tolist()) if hp.alpha < e < hp.upper_bound]
        if not active or pass_index == hp.max_iterations - 1:
            break
        edited = [requests[i] for i in active]
        for i, layer in enumerate(hp.layers):
            keys = layer_keys(state, edited, layer)  # K: d_ff × |A|
            columns = select_neurons(keys, hp.neuron_threshold, hp.neuron_rule)  # S
            residual = (zstar[active] - current_hidden(state, edited)).T / (len(hp.layers) - i)  # R_l
            delta = solve_columns(state, layer, keys, residual, columns, use_cp=True)  # R (M⁻¹ K_S)ᵀ
            footprint.append(add_to_columns(state, layer, columns, delta, pass_index))
    return MethodOutput(zstar, statuses, footprint)
