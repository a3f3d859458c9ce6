"""One round of any method: the registry of methods (each a file in editor/methods/) and the steps every round
shares around its method: checks, the weights before, the outcome of each request, the keys Cp grows by."""

from __future__ import annotations

from collections.abc import Callable

import torch

from editor.engine import (
    EditState,
    MethodOutput,
    RoundResult,
    add_keys_to_cp,
    current_hidden,
    diff_changes,
    norm_anchored_round,
    weights_in_place,
)
from editor.errors import HparamsError, RequestError
from editor.keys import BARE_TEMPLATE, compute_keys_layers, validate_layers, validate_requests
from editor.methods import alphaedit, memit, nse, rome
from editor.zstar import target_fit
from ledger.records import EditRequest, RequestOutcome

ROUND_FUNCTIONS: dict[str, Callable[[EditState, list[EditRequest]], MethodOutput]] = {
    "nse": nse.nse_round,
    "memit": memit.memit_round,
    "memit-cp": memit.memit_cp_round,
    "alphaedit": alphaedit.alphaedit_round,
    "rome": rome.rome_round,
}
METHODS: tuple[str, ...] = tuple(ROUND_FUNCTIONS)


def run_round(state: EditState, requests: list[EditRequest], method: str) -> RoundResult:
    """One round of `method` over `requests`: edits the model in place; grows state.cp, state.zstar_cache."""
    if method not in METHODS:
        raise ValueError(f"method {method!r}: unknown (choose from {', '.join(METHODS)})")
    loaded, hp = state.loaded, state.hparams
    rewinds = method == "nse" and hp.rewind  # z* on the original weights
    validate_layers(loaded, hp)
    validate_requests(loaded, requests)
    if any("{}" not in t for t in state.templates):
        raise HparamsError("templates: every context template needs {} for the prompt")
    if method == "rome" and len(requests) != 1:
        raise RequestError(f"rome edits one request per round, got {len(requests)}")
    for layer in hp.layers:
        state.c0_of(layer)
    arch = loaded.arch
    before = {
        arch.rewrite_weight_name(layer): arch.rewrite_weight(loaded.model, layer).detach().clone()
        for layer in hp.layers
    }
    try:
        h_before = current_hidden(state, requests)
        fit_before = target_fit(loaded, requests, [BARE_TEMPLATE], hp.z_layer)
        if hp.norm_anchor:
            output, optimised = norm_anchored_round(state, requests, ROUND_FUNCTIONS[method], rewinds)
        else:
            output = ROUND_FUNCTIONS[method](state, requests)
            optimised = output.zstar
        h_after = current_hidden(state, requests)
        fit_after = target_fit(loaded, requests, [BARE_TEMPLATE], hp.z_layer)
        # z* measured on the weights it was optimised on: NSE's original ones, the round's starting ones else.
        with weights_in_place(loaded.model, state.original_weights if rewinds else before):
            shift = output.zstar - current_hidden(state, requests)
            fit_zstar = target_fit(loaded, requests, state.templates, hp.z_layer, shift)
        round_keys = compute_keys_layers(loaded, requests, hp.layers, state.templates)
    except BaseException:
        state.hparams = hp  # without an anchor norm measured by the failed round
        with torch.no_grad():
            for name, weight in before.items():
                loaded.model.get_parameter(name).copy_(weight)
        raise
    add_keys_to_cp(state.cp, round_keys)
    # z* as optimised: an anchored round aimed at a rescaled one, which a replay recomputes from it
    zstar = {r.request_key: optimised[i].clone() for i, r in enumerate(requests)}
    if rewinds:  # z* on the original weights holds for any later round
        state.zstar_cache.update(zstar)
    residual_before = (output.zstar - h_before).norm(dim=1).tolist()
    residual_after = (output.zstar - h_after).norm(dim=1).tolist()
    outcomes = [
        RequestOutcome(
            r.request_key, residual_before[i], residual_after[i], output.statuses[i],  # type: ignore[arg-type]
            zstar_loss=fit_zstar.nll[i], zstar_target_prob=fit_zstar.probability[i],
            target_prob_before=fit_before.probability[i], target_prob_after=fit_after.probability[i],
            already_true=fit_before.top[i], took=fit_after.top[i],
        )
        for i, r in enumerate(requests)
    ]
    return RoundResult(
        method=method,
        hparams=state.hparams.to_dict(),  # with the anchor norm a first anchored round measured
        templates=list(state.templates),
        changes=diff_changes(loaded.model, before),
        footprint=output.footprint,
        outcomes=outcomes,
        zstar=zstar,
        keys=round_keys,
    )
