"""A ledger edited with a setting given once (`--set`): later sessions keep it, and the history replays bit-exactly
under it. Norm anchoring also measures its anchor once; NSE without rewinding recomputes z* on each round's weights."""

from __future__ import annotations

from typing import Any

import pytest

from editor.lifecycle import Workspace
from ledger import Ledger


@pytest.mark.parametrize("setting", [{"norm_anchor": True}, {"rewind": False}], ids=["norm-anchor", "no-rewind"])
def test_a_setting_given_once_is_kept_by_later_sessions_and_replays_bit_exactly(tiny_world, tmp_path,
                                                                                 setting: dict[str, Any]):
    ws = Workspace(Ledger.init(tmp_path))
    ws.add_model("tiny-world", tiny_world.model_dir, corpus=tiny_world.corpus_path, author="tests")
    requests = tiny_world.requests()[:4]
    # 10 z* steps (the world records 100) and C0 from 500 lines: what is tested is the record, not the fit
    first = ws.edit(requests[:2], method="nse", batch_size=2, author="tests",
                    overrides={**setting, "v_num_grad_steps": 10, "mom2_n_samples": 500})
    later = ws.edit(requests[2:], method="nse", batch_size=2, author="tests")  # a later session, no --set
    recorded = [v.hparams for v in [*first, *later]]
    assert all(h[key] == value for h in recorded for key, value in setting.items())
    if setting.get("norm_anchor"):
        anchors = {h["norm_anchor_norm"] for h in recorded}
        assert len(anchors) == 1 and None not in anchors  # measured by the first round, used by every later one
    steps = ws.replay_same_base("main")
    assert len(steps) == 3 and all(step.ok for step in steps)
