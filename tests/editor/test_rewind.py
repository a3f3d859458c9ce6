"""NSE's weights rewinding as a hyperparameter: z* on the original weights (default) or, for the paper's ablation,
on the round's starting weights (a history without it replays: tests/lifecycle/test_recorded_settings_replay.py)."""

from __future__ import annotations

import pytest
import torch

from editor.engine import EditState
from editor.errors import HparamsError
from editor.hparams import EditHparams, check_overrides
from editor.rounds import run_round
from editor.zstar import compute_zstar
from tests.editor.conftest import TEMPLATES, make_requests
from tests.editor.test_methods import small_hparams

REQUESTS = make_requests(6)


@pytest.mark.parametrize("rewind", [True, False])
def test_the_second_round_optimises_zstar_on_the_weights_rewind_names(tiny_models, rewind):
    tiny = tiny_models["gpt2"]
    hp = small_hparams("nse", tiny.c0, rewind=rewind)
    state = EditState(tiny.load(), hp, TEMPLATES, tiny.c0)
    run_round(state, REQUESTS[:3], "nse")
    # the oracle: z* of round 2's requests computed directly on each set of weights
    on_original = compute_zstar(tiny.load(), REQUESTS[3:], TEMPLATES, hp)
    on_edited = compute_zstar(state.loaded, REQUESTS[3:], TEMPLATES, hp)
    assert float((on_original - on_edited).abs().max()) > 1e-3  # round 1 moved them apart
    result = run_round(state, REQUESTS[3:], "nse")
    zstar = torch.stack([result.zstar[r.request_key] for r in REQUESTS[3:]])
    expected = on_original if rewind else on_edited
    assert torch.allclose(zstar, expected, atol=1e-5, rtol=0)
    assert result.hparams["rewind"] is rewind
    # only z* on the original weights is valid for a later round
    assert bool(state.zstar_cache) is rewind


def test_rewind_defaults_on_and_is_checked_as_a_flag():
    assert EditHparams(layers=[0]).rewind is True
    assert EditHparams.from_dict({"layers": [0]}).rewind is True  # versions recorded before the field rewound
    assert check_overrides({"rewind": False}) == {"rewind": False}
    with pytest.raises(HparamsError, match=r"--set rewind=\"no\": expected true or false"):
        check_overrides({"rewind": "no"})

