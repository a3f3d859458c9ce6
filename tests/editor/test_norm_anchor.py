"""Norm anchoring (NAS): every δ = z* − h0 rescaled to one anchor norm, the over-norm requests skipped."""

from __future__ import annotations

import pytest
import torch

from editor.engine import EditState
from editor.errors import HparamsError
from editor.hparams import EditHparams, check_overrides
from editor.keys import hidden_states
from editor.rounds import run_round
from editor.zstar import compute_zstar
from tests.editor.conftest import TEMPLATES, make_requests
from tests.editor.test_methods import small_hparams

REQUESTS = make_requests(6)


@pytest.fixture(scope="module")
def optimised_deltas(tiny_models) -> torch.Tensor:
    """‖z* − h0‖ of REQUESTS on the tiny GPT-2 as optimised, without anchoring (NSE and MEMIT alike on the base)."""
    tiny = tiny_models["gpt2"]
    loaded = tiny.load()
    hp = small_hparams("nse", tiny.c0)
    zstar = compute_zstar(loaded, REQUESTS, TEMPLATES, hp)
    return (zstar - hidden_states(loaded, REQUESTS, hp.z_layer)).norm(dim=1)


@pytest.mark.parametrize("method", ["nse", "memit"])
def test_the_first_anchored_round_measures_the_anchor_and_aims_every_delta_at_it(tiny_models, optimised_deltas, method):
    tiny = tiny_models["gpt2"]
    state = EditState(tiny.load(), small_hparams(method, tiny.c0, norm_anchor=True), TEMPLATES, tiny.c0)
    result = run_round(state, REQUESTS, method)

    assert float(optimised_deltas.max() / optimised_deltas.min()) > 1.05  # the deltas differ before anchoring
    anchor = result.hparams["norm_anchor_norm"]
    assert anchor == state.hparams.norm_anchor_norm  # recorded, and kept for the next rounds
    assert anchor == pytest.approx(float(optimised_deltas.mean()), rel=1e-6)  # the pilot mean
    kept = [o for o in result.outcomes if o.status != "skipped"]
    skipped = [o for o, norm in zip(result.outcomes, optimised_deltas.tolist(), strict=True) if norm > 2 * anchor]
    assert len(kept) == len(REQUESTS) - len(skipped)
    # the round starts on the weights z* was optimised on, so the residual before it is the rescaled ‖δ‖
    assert [o.residual_before for o in kept] == pytest.approx([anchor] * len(kept), rel=1e-5)
    assert result.changes


def test_an_over_norm_request_is_skipped_and_recorded_as_such(tiny_models, optimised_deltas):
    tiny = tiny_models["gpt2"]
    largest = int(optimised_deltas.argmax())
    others = torch.cat([optimised_deltas[:largest], optimised_deltas[largest + 1 :]])
    anchor = float(optimised_deltas.max()) / 2 * 0.999  # only the largest δ is over twice it
    assert float(others.max()) <= 2 * anchor
    hp = small_hparams("nse", tiny.c0, norm_anchor=True, norm_anchor_norm=anchor)
    loaded = tiny.load()
    result = run_round(EditState(loaded, hp, TEMPLATES, tiny.c0), REQUESTS, "nse")
    statuses = [o.status for o in result.outcomes]
    assert statuses[largest] == "skipped" and statuses.count("skipped") == 1
    assert result.hparams["norm_anchor_norm"] == anchor  # a given anchor is used as given
    assert result.changes
    # alone, the over-norm request changes nothing
    alone = run_round(EditState(tiny.load(), hp, TEMPLATES, tiny.c0), [REQUESTS[largest]], "nse")
    assert not alone.changes and [o.status for o in alone.outcomes] == ["skipped"]


def test_anchoring_is_off_by_default_and_its_values_are_checked():
    assert EditHparams(layers=[0]).norm_anchor is False
    assert check_overrides({"norm_anchor": True, "norm_anchor_norm": 3}) == {"norm_anchor": True,
                                                                            "norm_anchor_norm": 3.0}
    with pytest.raises(HparamsError, match=r"--set norm_anchor=\"yes\": expected true or false"):
        check_overrides({"norm_anchor": "yes"})
    with pytest.raises(HparamsError, match=r"--set norm_anchor_norm=-1: expected a positive number or null"):
        check_overrides({"norm_anchor_norm": -1})
