"""Editing a trained model: the fact world's facts take, and NSE keeps earlier rounds over five rounds."""

from __future__ import annotations

import pytest
import torch

from editor.engine import EditState
from editor.hparams import derive_hparams
from editor.keys import target_token_ids
from editor.model import LoadedModel, load_model
from editor.rounds import run_round
from editor.stats import second_moments
from editor.templates import generate_context_templates
from ledger.records import EditRequest

ROUND = 8
# Thresholds from the measured spread (`python -m benchmarks.spread`, benchmarks/results/spread.json): the least
# value over 4 world seeds x 3 kernel configurations (native, AVX2, baseline). The world these tests edit (seed 0) is
# the same weights on every machine and scores the same under every configuration (nse 1.0, memit 0.875, alphaedit
# 1.0, rome 1.0; first of five NSE rounds 0.875); other worlds score up to half lower, so these bounds hold for any.
ONE_ROUND_EFFICACY = {"nse": 0.75, "memit": 0.375, "alphaedit": 0.375, "rome": 0.625}
FIRST_OF_FIVE_ROUNDS_EFFICACY = 0.625


@torch.no_grad()
def efficacy(loaded: LoadedModel, requests: list[EditRequest]) -> float:
    """Share of requests whose new target's first token is the argmax next token after the rewrite prompt."""
    hits = 0
    for request in requests:
        ids = torch.tensor([loaded.tokenizer(request.text)["input_ids"]])
        logits = loaded.model(input_ids=ids).logits[0, -1]
        hits += (
            int(logits.argmax()) == target_token_ids(loaded.tokenizer, request.text, request.target_new)[0]
        )
    return hits / len(requests)


def world_state(world, method: str, lambda_factor: float | None = None, **overrides) -> EditState:
    """The engine on a world's model with derived hyperparameters (what `benchmarks.spread` measures too):
    `lambda_factor` sets λ in units of d_ff, `overrides` any other field."""
    loaded = load_model(world.model_dir, device="cpu")
    if lambda_factor is not None:
        overrides["mom2_update_weight"] = float(round(lambda_factor * loaded.arch.d_ff))
    hp = derive_hparams(loaded, method, **overrides)
    texts = world.corpus_path.read_text(encoding="utf-8").splitlines()
    c0 = second_moments(loaded, hp.layers, texts, hp.mom2_n_samples, progress=False)
    return EditState(loaded, hp, generate_context_templates(loaded, hp.template_seed), c0)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["nse", "memit", "alphaedit", "rome"])
def test_one_round_of_eight_takes(tiny_world, method):
    requests = tiny_world.requests()[:ROUND]
    state = world_state(tiny_world, method)
    assert efficacy(state.loaded, requests) == 0.0  # counterfactual: the model believes the true facts
    rounds = [[r] for r in requests] if method == "rome" else [requests]
    for batch in rounds:
        run_round(state, batch, method)
    assert efficacy(state.loaded, requests) >= ONE_ROUND_EFFICACY[method]


@pytest.mark.slow
def test_five_nse_rounds_keep_the_first_and_cp_sums_the_keys(tiny_world):
    requests = tiny_world.requests()[: 5 * ROUND]
    state = world_state(tiny_world, "nse")
    results = [run_round(state, requests[i : i + ROUND], "nse") for i in range(0, len(requests), ROUND)]
    assert efficacy(state.loaded, requests[:ROUND]) >= FIRST_OF_FIVE_ROUNDS_EFFICACY
    for layer in state.hparams.layers:
        expected = sum(r.keys[layer].double() @ r.keys[layer].double().T for r in results)
        torch.testing.assert_close(state.cp[layer], expected, rtol=1e-10, atol=1e-10)
