"""The round machinery every method shares: state, z* (with rewinding), keys, the solve, writing columns, Cp.

A method (editor/methods/) is a short function that strings these steps together the way its formula in
NSE.md reads. `editor.rounds.run_round` (above the methods, as a registry sits above the files it names)
validates the input, runs the method, and turns what it did into a `RoundResult`; if anything fails the rewrite
weights are restored exactly and the state is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace

import torch
from torch import nn

from editor.errors import HparamsError, SolveError
from editor.hparams import EditHparams
from editor.keys import compute_keys, hidden_states, keys_per_template
from editor.model import LoadedModel, is_conv1d, read_columns, write_columns
from editor.phases import phase
from editor.zstar import compute_zstar
from ledger.records import EditRequest, FootprintLayer, RequestOutcome


@dataclass
class ColumnChange:
    """One edited tensor: exact old and new values of its touched columns, math layout [d_model, n_cols]."""

    weight_name: str
    columns: torch.LongTensor
    old: torch.Tensor
    new: torch.Tensor


@dataclass
class RoundResult:
    method: str
    hparams: dict
    templates: list[str]
    changes: dict[str, ColumnChange]
    footprint: list[FootprintLayer]
    outcomes: list[RequestOutcome]
    zstar: dict[str, torch.Tensor]  # request_key -> [d_model] float32
    keys: dict[int, torch.Tensor]  # layer -> [d_ff, n] keys of all round requests on the post-round model


@dataclass
class MethodOutput:
    """What a method reports back: the targets it aimed at, each request's status, and what it changed."""

    zstar: torch.Tensor  # [n, d_model] float32
    statuses: list[str]
    footprint: list[FootprintLayer]


class EditState:
    """Everything a sequence of rounds needs. c0/cp live on CPU; they move to the model's device per layer."""

    def __init__(
        self,
        loaded: LoadedModel,
        hparams: EditHparams,
        templates: list[str],
        c0: dict[int, torch.Tensor],
        original_weights: dict[str, torch.Tensor] | None = None,
        cp: dict[int, torch.Tensor] | None = None,
        zstar_cache: dict[str, torch.Tensor] | None = None,
    ):
        self.loaded = loaded
        self.hparams = hparams
        self.templates = list(templates)
        self.c0 = c0
        self.cp: dict[int, torch.Tensor] = cp if cp is not None else {}
        self.original_weights = (
            original_weights if original_weights is not None else rewrite_weights_copy(loaded)
        )
        self.zstar_cache: dict[str, torch.Tensor] = zstar_cache if zstar_cache is not None else {}
        self.projectors: dict[int, torch.Tensor] = {}  # AlphaEdit null-space projectors, per layer
        self.aimed: dict[str, torch.Tensor] = {}  # during an anchored round: each kept request's target

    def c0_of(self, layer: int) -> torch.Tensor:
        if layer not in self.c0:
            raise HparamsError(
                f"layer {layer}: no C0 statistics in the edit state (compute them for this layer)"
            )
        return self.c0[layer].to(torch.float64)

    def cp_of(self, layer: int) -> torch.Tensor:
        d_ff = self.loaded.arch.d_ff
        return self.cp[layer] if layer in self.cp else torch.zeros(d_ff, d_ff, dtype=torch.float64)


def rewrite_weights_copy(loaded: LoadedModel) -> dict[str, torch.Tensor]:
    """A CPU copy of every block's rewrite weight: the original weights NSE rewinds to."""
    arch = loaded.arch
    return {
        arch.rewrite_weight_name(layer): arch.rewrite_weight(loaded.model, layer)
        .detach()
        .to("cpu", copy=True)
        for layer in range(arch.n_layers)
    }


# ------------------------------------------------------------------------------------------------ weights
def _owner_is_conv1d(model: nn.Module, weight_name: str) -> bool:
    return is_conv1d(model.get_submodule(weight_name.rsplit(".", 1)[0]))


@torch.no_grad()
def apply_changes(model: nn.Module, changes: Iterable[ColumnChange]) -> None:
    """Scatter each change's `new` values into its columns: exact values, no arithmetic."""
    for change in changes:
        weight = model.get_parameter(change.weight_name)
        write_columns(weight, change.columns, change.new, _owner_is_conv1d(model, change.weight_name))


@phase("write")
@torch.no_grad()
def diff_changes(model: nn.Module, before: Mapping[str, torch.Tensor]) -> dict[str, ColumnChange]:
    """The columns of each weight in `before` whose values now differ, with exact old and new values (CPU)."""
    changes = {}
    for name in sorted(before):
        conv1d = _owner_is_conv1d(model, name)
        now = model.get_parameter(name).detach().to("cpu")
        old = before[name].to("cpu")
        differs = (now != old) if now.dtype.is_floating_point else now.ne(old)
        columns = torch.nonzero(differs.any(dim=1) if conv1d else differs.any(dim=0)).squeeze(1)
        if len(columns):
            changes[name] = ColumnChange(
                name, columns, read_columns(old, columns, conv1d), read_columns(now, columns, conv1d)
            )
    return changes


@contextmanager
def rewound(state: EditState) -> Iterator[None]:
    """The original rewrite weights in place of the current ones; the current ones restored exactly after."""
    with weights_in_place(state.loaded.model, state.original_weights):
        yield


@contextmanager
def weights_in_place(model: nn.Module, weights: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """`weights` (by parameter name) in place of the model's; the model's own restored exactly after."""
    saved = {}
    with torch.no_grad():
        for name, values in weights.items():
            weight = model.get_parameter(name)
            saved[name] = weight.detach().clone()
            weight.copy_(values.to(weight.device))
    try:
        yield
    finally:
        with torch.no_grad():
            for name, current in saved.items():
                model.get_parameter(name).copy_(current)


@phase("write")
def add_to_columns(
    state: EditState, layer: int, columns: torch.Tensor, delta: torch.Tensor, pass_index: int
) -> FootprintLayer:
    """W[:, S] += ΔW (computed in float64, stored in the weight's dtype); the footprint of the write."""
    arch = state.loaded.arch
    if not torch.isfinite(delta).all():
        raise SolveError(
            f"layer {layer}: the solve gave non-finite values (check C0/Cp and the hyperparameters)"
        )
    weight = arch.rewrite_weight(state.loaded.model, layer)
    old = read_columns(weight.detach(), columns.to(weight.device), arch.rewrite_is_conv1d)
    new = (old.to(torch.float64) + delta.to(old.device)).to(weight.dtype)
    write_columns(weight, columns, new, arch.rewrite_is_conv1d)
    change_norm = float((new.to(torch.float64) - old.to(torch.float64)).norm())
    return FootprintLayer(
        layer=layer, pass_index=pass_index, neurons=tuple(columns.tolist()), delta_norm=change_norm
    )


# ------------------------------------------------------------------------------------------- shared steps
def zstar_current(state: EditState, requests: Sequence[EditRequest]) -> torch.Tensor:
    """z* on the current (possibly already edited) model: MEMIT, AlphaEdit, ROME (anchored: the aimed targets)."""
    if state.aimed:
        return torch.stack([state.aimed[r.request_key] for r in requests])
    return compute_zstar(state.loaded, requests, state.templates, state.hparams)


def zstar_rewound(state: EditState, requests: Sequence[EditRequest]) -> torch.Tensor:
    """z* on the original weights (NSE's weights rewinding), from the cache where it has them (anchored: the
    aimed targets)."""
    if state.aimed:
        return torch.stack([state.aimed[r.request_key] for r in requests])
    missing = [r for r in requests if r.request_key not in state.zstar_cache]
    computed: dict[str, torch.Tensor] = {}
    if missing:
        unique = list({r.request_key: r for r in missing}.values())
        with rewound(state):
            values = compute_zstar(state.loaded, unique, state.templates, state.hparams)
        computed = {r.request_key: values[i] for i, r in enumerate(unique)}
    return torch.stack([state.zstar_cache.get(r.request_key, computed.get(r.request_key)) for r in requests])


# ------------------------------------------------------------------------------------------- norm anchoring
def norm_anchored_round(
    state: EditState,
    requests: Sequence[EditRequest],
    round_function: Callable[[EditState, list[EditRequest]], MethodOutput],
    rewind: bool,
) -> tuple[MethodOutput, torch.Tensor]:
    """A round with norm anchoring (NAS): δ = z* − h0 of every request rescaled to the anchor norm, and the
    requests whose ‖δ‖ is over twice the anchor skipped (status "skipped"; their z* is left as optimised). h0 is
    block z_layer's output at the bare prompt on the weights z* is optimised on (`rewind`: the original ones).
    Unless hparams.norm_anchor_norm is set, it is measured here, once: the mean ‖δ‖ of this round's requests
    with z* on the original weights (the pilot edits), put in state.hparams to be recorded with the round.
    Returns the method's output over all requests and z* as optimised (what a replay recomputes from)."""
    optimised = zstar_rewound(state, requests) if rewind else zstar_current(state, requests)
    with rewound(state) if rewind else nullcontext():
        h0 = current_hidden(state, requests)
    delta = optimised - h0
    if state.hparams.norm_anchor_norm is None:
        pilot = delta
        if not rewind:
            on_original = zstar_rewound(state, requests)
            with rewound(state):
                pilot = on_original - current_hidden(state, requests)
        state.hparams = replace(state.hparams, norm_anchor_norm=float(pilot.norm(dim=1).mean()))
    anchor = state.hparams.norm_anchor_norm
    norms = delta.norm(dim=1, keepdim=True)
    aimed = h0 + torch.where(norms > 0, delta * (anchor / norms), delta)  # δ = 0: nothing to rescale
    kept = [i for i, norm in enumerate(norms.squeeze(1).tolist()) if norm <= 2 * anchor]
    zstar, statuses, footprint = optimised.clone(), ["skipped"] * len(requests), []
    if kept:
        state.aimed = {requests[i].request_key: aimed[i] for i in kept}
        try:
            output = round_function(state, [requests[i] for i in kept])
        finally:
            state.aimed = {}
        zstar[kept] = output.zstar
        for i, status in zip(kept, output.statuses, strict=True):
            statuses[i] = status
        footprint = output.footprint
    return MethodOutput(zstar, statuses, footprint), optimised


def layer_keys(state: EditState, requests: Sequence[EditRequest], layer: int) -> torch.Tensor:
    """K_l of `requests` on the current model, float64 [d_ff, n]."""
    return compute_keys(state.loaded, requests, layer, state.templates).to(torch.float64)


def template_keys(state: EditState, request: EditRequest, layer: int) -> torch.Tensor:
    """The request's key in each context template separately, on the current model: float64 [d_ff, T]."""
    return keys_per_template(state.loaded, [request], [layer], state.templates)[layer][0].T.to(torch.float64)


def current_hidden(state: EditState, requests: Sequence[EditRequest]) -> torch.Tensor:
    """h^{z_layer} at each bare prompt on the current model, float32 [n, d_model]."""
    return hidden_states(state.loaded, requests, state.hparams.z_layer)


def select_neurons(keys: torch.Tensor, threshold: float, rule: str = "reach") -> torch.Tensor:
    """NSE's neurons S, by activation mass Σ_r |K[j, r]| in descending order. `reach`: the smallest set whose mass
    reaches `threshold` of the total (the paper's rule: S carries at least that share). `under`: the largest set
    whose mass stays within it (the reference code's rule: one neuron fewer, unless the share is hit exactly; at
    least one neuron). p >= 1: all."""
    d_ff = keys.shape[0]
    if threshold >= 1.0:
        return torch.arange(d_ff)
    mass = keys.abs().sum(dim=1).to(torch.float64)
    order = torch.sort(mass, descending=True, stable=True).indices
    cumulative = torch.cumsum(mass[order], dim=0)
    bound = threshold * cumulative[-1]
    if rule == "under":
        count = max(1, int(torch.searchsorted(cumulative, bound, right=True).item()))
    else:
        count = int(torch.searchsorted(cumulative, bound).item()) + 1
    return torch.sort(order[: min(count, d_ff)]).values


def _checked(layer: int, solve) -> torch.Tensor:
    try:
        result = solve()
    except RuntimeError as error:  # torch.linalg errors on singular or non-finite input
        raise SolveError(f"layer {layer}: the solve failed ({str(error).splitlines()[0]})") from None
    if not torch.isfinite(result).all():
        raise SolveError(
            f"layer {layer}: the solve gave non-finite values (check C0/Cp and the hyperparameters)"
        )
    return result


@phase("solve")
def solve_columns(
    state: EditState,
    layer: int,
    keys: torch.Tensor,
    residual: torch.Tensor,
    columns: torch.Tensor,
    use_cp: bool,
) -> torch.Tensor:
    """ΔW[:, S] = R (M⁻¹ K_S)ᵀ with M = λ C0[S,S] (+ Cp[S,S]) + K_S K_Sᵀ, in float64 on CPU.

    keys [d_ff, n], residual [d_model, n]; returns [d_model, |S|].
    """
    lam = state.hparams.mom2_update_weight
    keys_s = keys[columns]
    index = torch.meshgrid(columns, columns, indexing="ij")
    matrix = lam * state.c0_of(layer)[index] + keys_s @ keys_s.T
    if use_cp:
        matrix = matrix + state.cp_of(layer)[index]
    matrix = with_ridge(matrix, state.hparams.solve_ridge)
    return _checked(layer, lambda: residual.to(torch.float64) @ torch.linalg.solve(matrix, keys_s).T)


def with_ridge(matrix: torch.Tensor, ridge: float) -> torch.Tensor:
    """M + ridge·mean(diag M)·I. A C0 from fewer tokens than d_ff is singular: M then has directions no key
    reaches, where an unregularised solve returns rounding noise amplified ~1e16 (seen as edits that push the
    residual up 50x, and differently on Intel and AMD). The ridge bounds that noise; a solve moves by about ridge × M's
    condition number (0.1% for SmolLM2's M with 2,048 tokens of C0)."""
    if ridge == 0.0:
        return matrix
    scale = ridge * float(torch.diagonal(matrix).mean())
    return matrix + scale * torch.eye(matrix.shape[0], dtype=matrix.dtype, device=matrix.device)


def nullspace_projector(state: EditState, layer: int) -> torch.Tensor:
    """AlphaEdit's P: projector on the eigenvectors of C0 with eigenvalue < nullspace_threshold (cached)."""
    if layer not in state.projectors:
        c0 = state.c0_of(layer)
        if not torch.isfinite(c0).all():
            raise SolveError(f"layer {layer}: C0 has non-finite values")
        try:
            eigenvalues, eigenvectors = torch.linalg.eigh(c0)
        except RuntimeError as error:
            raise SolveError(
                f"layer {layer}: eigendecomposition of C0 failed ({str(error).splitlines()[0]})"
            ) from None
        threshold = state.hparams.nullspace_threshold
        if state.hparams.nullspace_relative:
            threshold = threshold * float(eigenvalues.max())
        basis = eigenvectors[:, eigenvalues < threshold]
        state.projectors[layer] = basis @ basis.T
    return state.projectors[layer]


@phase("solve")
def solve_projected(state: EditState, layer: int, keys: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """AlphaEdit: ΔW = R Kᵀ P (Cp P + K Kᵀ P + μI)⁻¹, solved as (P (Cp + K Kᵀ) + μI) X = P K Rᵀ, ΔW = Xᵀ."""
    projector = nullspace_projector(state, layer)
    identity = torch.eye(projector.shape[0], dtype=torch.float64)
    matrix = projector @ (state.cp_of(layer) + keys @ keys.T) + state.hparams.L2 * identity
    rhs = projector @ keys @ residual.to(torch.float64).T
    return _checked(layer, lambda: torch.linalg.solve(matrix, rhs).T)


@phase("solve")
def solve_rank_one(state: EditState, layer: int, keys: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """ΔW = r uᵀ with u = C0⁻¹K (Kᵀ C0⁻¹ K)⁻¹ 1: of all rank-one changes that add r at every key (column of
    K), the one smallest in the C0 norm. One key gives ROME's u = C0⁻¹k / (kᵀ C0⁻¹ k)."""

    def solve() -> torch.Tensor:
        spread = torch.linalg.solve(with_ridge(state.c0_of(layer), state.hparams.solve_ridge), keys)
        ones = torch.ones(keys.shape[1], 1, dtype=torch.float64, device=keys.device)
        u = spread @ torch.linalg.solve(keys.T @ spread, ones)
        return residual.to(torch.float64) @ u.T

    return _checked(layer, solve)


@phase("Cp")
def add_keys_to_cp(cp: dict[int, torch.Tensor], keys: Mapping[int, torch.Tensor]) -> None:
    """Cp_l += K Kᵀ in float64, layers in ascending order: the one way Cp grows (recording and rebuilding)."""
    for layer in sorted(keys):
        k = keys[layer].to("cpu", torch.float64)
        outer = k @ k.T
        cp[layer] = cp[layer] + outer if layer in cp else outer


def classify(residuals: torch.Tensor, hp: EditHparams) -> list[str]:
    """Status of each request from its first residual: satisfied (≤ alpha), skipped (≥ upper_bound)."""
    return [
        "satisfied" if e <= hp.alpha else "skipped" if e >= hp.upper_bound else "edited"
        for e in residuals.tolist()
    ]


ZSTAR_REACHED = 0.5  # z* "reached" its target when the target's probability with z* in place is at least this


def outcome_warnings(result: RoundResult, requests: Sequence[EditRequest]) -> list[str]:
    """One line per request that did not take, or of a round that changed no weight, naming it and why."""
    lines = []
    by_key = {r.request_key: r for r in requests}
    for outcome in result.outcomes:
        request = by_key[outcome.request_key]
        if result.changes and outcome.took is not False:
            continue
        if outcome.status == "skipped" and result.hparams.get("norm_anchor"):
            why = (f"skipped: its z* is an outlier (‖z* − h0‖ over twice the norm anchor "
                   f"{result.hparams['norm_anchor_norm']:.4g}, or a residual at or over upper_bound)")
        elif outcome.zstar_target_prob is not None and outcome.zstar_target_prob < ZSTAR_REACHED:
            why = (f"z* did not reach its target (probability {outcome.zstar_target_prob:.3g} at z*, "
                   f"loss {outcome.zstar_loss:.3g})")
        elif not result.changes and outcome.already_true:
            why = "the model already gave this target before the edit"
        elif not result.changes:
            why = f"status {outcome.status}: z* is within alpha of the current hidden state, so nothing was written"
        else:
            why = (f"the target is not the model's prediction after the round (probability "
                   f"{outcome.target_prob_after:.3g}, before {outcome.target_prob_before:.3g})")
        if not result.changes:
            why = f"the round changed no weight: {why}"
        lines.append(f"request {outcome.request_key[:12]} ({request.subject!r} -> {request.target_new!r}): {why}")
    return lines
