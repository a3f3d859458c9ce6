"""Every method on tiny random models of every family: what changes, by how much, and on bad input."""

from __future__ import annotations

import pytest
import torch

from editor import zstar as zstar_steps
from editor.activations import block_hidden, hooked, pad, with_block_hidden
from editor.engine import EditState, apply_changes, solve_rank_one
from editor.errors import HparamsError, RequestError, SolveError
from editor.hashing import state_hash
from editor.hparams import EditHparams
from editor.keys import hidden_states
from editor.rounds import METHODS, run_round
from editor.zstar import compute_zstar
from ledger.records import EditRequest
from tests.editor.conftest import FAMILIES, TEMPLATES, make_requests

# Small λ: on a random tiny model C0 is not a meaningful prior, so the update follows the keys closely.
# 8 z* steps: the tests check that edits reach z*, not how good z* is.
# AlphaEdit: P projects on the directions of C0 below its 90th-percentile eigenvalue (90% of the key space).
EDITED_LAYERS = [0, 1, 2]


def small_hparams(method: str, c0: dict[int, torch.Tensor], **changes) -> EditHparams:
    threshold = max(
        float(torch.quantile(torch.linalg.eigvalsh(c0[layer].double()), 0.9)) for layer in EDITED_LAYERS
    )
    values = dict(
        layers=EDITED_LAYERS if method != "rome" else [2],
        v_num_grad_steps=8,
        v_lr=0.5,
        mom2_update_weight=0.1,
        alpha=0.0,
        upper_bound=1e9,
        neuron_threshold=0.9 if method == "nse" else 1.0,
        nullspace_threshold=threshold,
        L2=1e-3,
        max_iterations=3,
    )
    values.update(changes)
    return EditHparams(**values)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", METHODS)
def test_round_moves_hidden_states_halfway_and_touches_only_edited_layers(tiny_models, family, method):
    tiny = tiny_models[family]
    loaded = tiny.load()
    hp = small_hparams(method, tiny.c0)
    requests = make_requests(1 if method == "rome" else 6)
    before = snapshot(loaded.model)
    result = run_round(EditState(loaded, hp, TEMPLATES, tiny.c0), requests, method)

    after = loaded.model.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    allowed = {loaded.arch.rewrite_weight_name(layer) for layer in hp.layers}
    assert changed and changed <= allowed
    assert set(result.changes) == changed
    # AlphaEdit's one pass on the tiny Gemma-3 closed 40% of the residual where z* lives (its MLP's output, measured:
    # 0.0046 -> 0.0028; its null-space projector and absolute μ weigh more against that model's small keys).
    closes = 0.7 if (family, method) == ("gemma3", "alphaedit") else 0.5
    for outcome in result.outcomes:
        assert outcome.status == "edited"
        assert outcome.residual_after <= closes * outcome.residual_before, outcome
    assert set(result.keys) == set(hp.layers)
    assert all(k.shape == (loaded.arch.d_ff, len(requests)) for k in result.keys.values())


def test_nse_changes_only_selected_columns(tiny_models):
    tiny = tiny_models["gpt2"]
    loaded = tiny.load()
    hp = small_hparams("nse", tiny.c0, neuron_threshold=0.5)
    before = snapshot(loaded.model)
    result = run_round(EditState(loaded, hp, TEMPLATES, tiny.c0), make_requests(4), "nse")
    arch = loaded.arch
    for layer in hp.layers:
        selected = sorted({n for f in result.footprint if f.layer == layer for n in f.neurons})
        assert 0 < len(selected) < arch.d_ff
        name = arch.rewrite_weight_name(layer)
        untouched = torch.ones(arch.d_ff, dtype=torch.bool)
        untouched[selected] = False
        # Conv1D: a math column is a stored row
        now, old = loaded.model.state_dict()[name], before[name]
        assert torch.equal(now[untouched], old[untouched])
        assert not torch.equal(now[~untouched], old[~untouched])
        assert set(result.changes[name].columns.tolist()) <= set(selected)


def test_one_pass_nse_with_every_neuron_is_memit(tiny_models):
    tiny = tiny_models["llama"]
    requests = make_requests(5)
    weights = {}
    for method in ("nse", "memit"):
        loaded = tiny.load()
        hp = small_hparams(method, tiny.c0, max_iterations=2, neuron_threshold=1.0)
        run_round(EditState(loaded, hp, TEMPLATES, tiny.c0), requests, method)
        weights[method] = {
            layer: loaded.arch.rewrite_weight(loaded.model, layer).detach().clone() for layer in EDITED_LAYERS
        }
    for layer in EDITED_LAYERS:
        torch.testing.assert_close(weights["nse"][layer], weights["memit"][layer], rtol=1e-5, atol=1e-5)


def test_same_round_twice_is_bit_identical_and_changes_replay_exactly(tiny_models):
    tiny = tiny_models["gptj"]
    hashes, results = [], []
    for _ in range(2):
        loaded = tiny.load()
        state = EditState(loaded, small_hparams("nse", tiny.c0), TEMPLATES, tiny.c0)
        results.append(run_round(state, make_requests(4), "nse"))
        results.append(run_round(state, make_requests(4, offset=4), "nse"))
        hashes.append(state_hash(loaded.model))
        cp = state.cp
    assert hashes[0] == hashes[1]
    for first, second in zip(results[:2], results[2:], strict=True):
        assert first.outcomes == second.outcomes and first.footprint == second.footprint
        for name, change in first.changes.items():
            assert torch.equal(change.new, second.changes[name].new)
    # The recorded changes alone rebuild the edited model (checkout), bit for bit.
    fresh = tiny.load()
    for result in results[:2]:
        apply_changes(fresh.model, result.changes.values())
    assert state_hash(fresh.model) == hashes[0]
    # Cp is the sum of the recorded keys' outer products.
    for layer in EDITED_LAYERS:
        expected = sum(r.keys[layer].double() @ r.keys[layer].double().T for r in results[:2])
        torch.testing.assert_close(cp[layer], expected, rtol=1e-12, atol=1e-12)


def test_batched_zstar_equals_one_request_at_a_time(tiny_models):
    tiny = tiny_models["gpt2"]
    loaded = tiny.load()
    # float64 weights: batching changes matmul rounding, and Adam's m/sqrt(v) turns float32 noise in near-zero
    # gradients into lr-sized steps; in float64 only the batching logic itself can make a difference.
    loaded.model.double()
    hp = small_hparams("nse", tiny.c0)
    requests = make_requests(6)
    batched = compute_zstar(loaded, requests, TEMPLATES, hp)
    for i, request in enumerate(requests):
        alone = compute_zstar(loaded, [request], TEMPLATES, hp)[0]
        assert float((batched[i] - alone).norm() / alone.norm()) < 1e-4


# Gemma-3's z* lives inside block z_layer (at its MLP's output): there every block runs at every step.
@pytest.mark.parametrize("family", [family for family in FAMILIES if family != "gemma3"])
def test_zstar_computes_the_blocks_below_z_layer_once(tiny_models, family):
    tiny = tiny_models[family]
    loaded = tiny.load()
    hp = small_hparams("nse", tiny.c0, layers=[0, 1])  # z_layer 1 of 4 blocks
    calls = {0: 0, 1: 0, 3: 0}
    for layer in calls:
        loaded.arch.rewrite_module(loaded.model, layer).register_forward_hook(
            lambda *_, layer=layer: calls.__setitem__(layer, calls[layer] + 1)
        )
    zstar = compute_zstar(loaded, make_requests(3), TEMPLATES, hp)
    assert calls[0] == calls[1] == 1  # the first step only: later steps reuse block 1's output
    assert calls[3] > 1  # the blocks above z_layer run at every step
    assert torch.isfinite(zstar).all()
    assert "forward" not in vars(loaded.arch.block_module(loaded.model, 0))  # the blocks are themselves again


def whole_sequence_forward(batch: zstar_steps._ZstarBatch):
    """z*'s step forward done the plain way, as the reference: every block on the whole sequences, the shift
    added at the subject's last token, read back at the suffix tokens; same arguments as `_suffix_forward`."""

    def forward(loaded, suffixes, rows, shift, z_layer):
        ids, mask = pad([batch.sequences[i] for i in rows.tolist()], loaded.tokenizer.pad_token_id, loaded.device)
        at = (torch.arange(len(rows)), batch.subject_at[rows])

        def add(module, args, output):
            hidden = block_hidden(output)
            return with_block_hidden(output, hidden.index_put(at, hidden[at] + shift.to(hidden.dtype)))

        with hooked([loaded.arch.hidden_module(loaded.model, z_layer).register_forward_hook(add)]):
            final = loaded.model.base_model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        return final[torch.arange(len(rows))[:, None], suffixes.positions[rows]]

    return forward


@pytest.mark.parametrize("family", FAMILIES)
def test_suffix_forward_with_the_recorded_prefix_equals_the_whole_sequence_forward(tiny_models, family):
    loaded = tiny_models[family].load()
    batch = zstar_steps._zstar_batch(loaded, make_requests(4), TEMPLATES)
    rows = torch.tensor([0, 2, 3, 5, 6, 7, 9, 11])  # a subset, as when some requests have stopped
    shift = torch.randn(len(rows), loaded.arch.d_model, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        suffixes = zstar_steps._split_at_subject(loaded, batch, 1)
        fast = zstar_steps._suffix_forward(loaded, suffixes, rows, shift, 1)
        plain = whole_sequence_forward(batch)(loaded, suffixes, rows, shift, 1)
    real = suffixes.mask[rows, -fast.shape[1] :].bool()
    assert real.sum() > len(rows)  # suffixes longer than the subject's last token
    # float32 rounding of differently shaped products only (measured: at most 7e-7 on values up to 3)
    torch.testing.assert_close(fast[real], plain[real], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3"])  # z* at the block's output, and inside the block
def test_zstar_with_the_recorded_prefix_equals_the_whole_sequence_steps(tiny_models, family, monkeypatch):
    loaded = tiny_models[family].load()
    hp = small_hparams("nse", tiny_models[family].c0, layers=[0, 1])
    requests = make_requests(5)
    first = compute_zstar(loaded, requests, TEMPLATES, hp)
    assert torch.equal(first, compute_zstar(loaded, requests, TEMPLATES, hp))  # reruns are bit-identical
    loaded.model.double()  # Adam turns float32 rounding in near-zero gradients into lr-sized steps
    fast = compute_zstar(loaded, requests, TEMPLATES, hp)
    reference = whole_sequence_forward(zstar_steps._zstar_batch(loaded, requests, TEMPLATES))
    monkeypatch.setattr(zstar_steps, "_suffix_forward", reference)
    plain = compute_zstar(loaded, requests, TEMPLATES, hp)
    h0 = hidden_states(loaded, requests, 1)
    assert float((plain - h0).norm(dim=1).min()) > 0  # z* moved
    assert float((fast - plain).norm() / (plain - h0).norm()) < 1e-6


BAD_REQUESTS = [
    (EditRequest(subject="Eve Lee", prompt="Eve Lee lives in", target_new="Paris"), "exactly one {}"),
    (EditRequest(subject="   ", prompt="{} lives in", target_new="Paris"), "not found"),
    (EditRequest(subject="Eve Lee", prompt="{} lives in", target_new="  "), "empty target_new"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_REQUESTS)
def test_bad_request_is_named_and_nothing_changes(tiny_models, bad, message):
    tiny = tiny_models["gpt2"]
    loaded = tiny.load()
    state = EditState(loaded, small_hparams("nse", tiny.c0), TEMPLATES, tiny.c0)
    before = state_hash(loaded.model)
    with pytest.raises(RequestError, match=rf"request 2 \(subject {bad.subject!r}\).*{message}"):
        run_round(state, [*make_requests(2), bad], "nse")
    assert state_hash(loaded.model) == before and not state.cp and not state.zstar_cache


def test_layer_out_of_range_is_named(tiny_models):
    tiny = tiny_models["gpt2"]
    loaded = tiny.load()
    state = EditState(loaded, small_hparams("memit", tiny.c0, layers=[1, 7]), TEMPLATES, tiny.c0)
    before = state_hash(loaded.model)
    with pytest.raises(HparamsError, match="layer 7 out of range"):
        run_round(state, make_requests(2), "memit")
    assert state_hash(loaded.model) == before


@pytest.mark.parametrize("method", ["nse", "alphaedit"])
def test_non_finite_solve_restores_the_weights(tiny_models, method):
    tiny = tiny_models["gpt2"]
    loaded = tiny.load()
    c0 = dict(tiny.c0)
    c0[1] = torch.full_like(c0[1], float("nan"))  # layer 0 is written first, then layer 1 fails
    state = EditState(loaded, small_hparams(method, tiny.c0), TEMPLATES, c0)
    before = state_hash(loaded.model)
    with pytest.raises(SolveError, match="layer 1"):
        run_round(state, make_requests(3), method)
    assert state_hash(loaded.model) == before and not state.cp


def test_unknown_method_and_rome_batch_are_refused(tiny_models):
    tiny = tiny_models["gpt2"]
    state = EditState(tiny.load(), small_hparams("rome", tiny.c0), TEMPLATES, tiny.c0)
    with pytest.raises(ValueError, match="nse, memit, memit-cp, alphaedit, rome"):
        run_round(state, make_requests(1), "mend")
    with pytest.raises(RequestError, match="one request per round"):
        run_round(state, make_requests(2), "rome")


def test_rank_one_solve_writes_the_residual_at_every_key_and_is_rome_for_one_key(tiny_models):
    tiny = tiny_models["gpt2"]
    # the formula itself, unregularised (the tiny C0 is ill-conditioned: a 1e-6 ridge moves u by up to 4%)
    state = EditState(tiny.load(), small_hparams("rome", tiny.c0, solve_ridge=0.0), TEMPLATES, tiny.c0)
    generator = torch.Generator().manual_seed(0)
    d_ff = tiny.c0[2].shape[0]
    keys = torch.randn(d_ff, 4, generator=generator, dtype=torch.float64)
    residual = torch.randn(32, 1, generator=generator, dtype=torch.float64)
    delta = solve_rank_one(state, 2, keys, residual)
    assert torch.linalg.matrix_rank(delta) == 1
    torch.testing.assert_close(delta @ keys, residual.expand(-1, 4), rtol=1e-8, atol=1e-8)
    k = keys[:, :1]
    u = torch.linalg.solve(tiny.c0[2].double(), k)
    torch.testing.assert_close(solve_rank_one(state, 2, k, residual), residual @ u.T / (u.T @ k))


def test_neuron_rules_reach_the_share_or_stay_under_it():
    from editor.engine import select_neurons
    from editor.hparams import check_overrides

    # Masses 4, 3, 2, 1 (neurons 2, 0, 3, 1): total 10.
    keys = torch.tensor([[3.0], [1.0], [-4.0], [2.0]])
    assert select_neurons(keys, 0.75, "reach").tolist() == [0, 2, 3]  # 4 + 3 + 2 = 9 >= 7.5
    assert select_neurons(keys, 0.75, "under").tolist() == [0, 2]  # 4 + 3 = 7 <= 7.5 < 9
    assert select_neurons(keys, 0.7, "reach").tolist() == select_neurons(keys, 0.7, "under").tolist() == [0, 2]
    assert select_neurons(keys, 0.1, "under").tolist() == [2]  # never empty
    assert select_neurons(keys, 1.0, "under").tolist() == [0, 1, 2, 3]
    assert EditHparams(layers=[0]).neuron_rule == "reach"  # the default, recorded with every version
    with pytest.raises(HparamsError, match="neuron_rule"):
        check_overrides({"neuron_rule": "largest"})


@pytest.mark.parametrize("method", ["nse", "memit", "rome"])
def test_a_c0_from_fewer_tokens_than_neurons_still_gives_edits_that_hold(tiny_models, method):
    """C0 of rank 4 < d_ff (a corpus too short for the model's width): M is singular where no key reaches, and the
    solves' ridge keeps the rounding noise there from swamping the edit (without it, SmolLM2's two-fact edit on a
    256-token C0 pushed the residual up 50x on an Intel CPU and not on an AMD one)."""
    tiny = tiny_models["gpt2"]
    loaded = tiny.load()
    generator = torch.Generator().manual_seed(0)
    low_rank = {}
    for layer, c0 in tiny.c0.items():
        samples = torch.randn(4, c0.shape[0], generator=generator, dtype=c0.dtype)
        low_rank[layer] = samples.T @ samples / 4 * float(torch.diagonal(c0).mean())
    hp = small_hparams(method, low_rank, mom2_update_weight=100.0)  # the default ridge
    assert all(torch.linalg.matrix_rank(c.double(), rtol=1e-5) == 4 for c in low_rank.values())
    requests = make_requests(1 if method == "rome" else 4)
    result = run_round(EditState(loaded, hp, TEMPLATES, low_rank), requests, method)
    for outcome in result.outcomes:
        assert outcome.residual_after <= 0.5 * outcome.residual_before, outcome
