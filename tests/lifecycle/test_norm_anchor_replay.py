"""A ledger edited with norm anchoring: the anchor is measured once, carried on, and replays bit-exactly."""

from __future__ import annotations

from editor.lifecycle import Workspace
from ledger import Ledger


def test_a_norm_anchored_history_keeps_its_anchor_and_replays_bit_exactly(tiny_world, tmp_path):
    ws = Workspace(Ledger.init(tmp_path))
    ws.add_model("tiny-world", tiny_world.model_dir, corpus=tiny_world.corpus_path, author="tests")
    requests = tiny_world.requests()[:4]
    # 10 z* steps (the world records 100) and C0 from 500 lines: what is tested is the anchor, not the fit
    anchored = {"norm_anchor": True, "v_num_grad_steps": 10, "mom2_n_samples": 500}
    first = ws.edit(requests[:2], method="nse", batch_size=2, author="tests", overrides=anchored)
    later = ws.edit(requests[2:], method="nse", batch_size=2, author="tests")  # a later session, no --set
    recorded = [v.hparams for v in [*first, *later]]
    assert all(h["norm_anchor"] for h in recorded)
    anchors = {h["norm_anchor_norm"] for h in recorded}
    assert len(anchors) == 1 and None not in anchors  # measured by the first round, used by every later one
    steps = ws.replay_same_base("main")
    assert len(steps) == 3 and all(step.ok for step in steps)
