"""The portable numerics' promise, small enough to run under an emulated CPU of the other vendor.

`python -m tests.cross_vendor DIR` (in a process started with portable numerics) trains a micro fact world the
way `build_world` trains, records it in a SQLite ledger and applies one NSE round through `Workspace.edit`, then
prints the state hashes as JSON. `tests/world/test_numerics.py` runs it natively and under
`qemu-x86_64 -cpu <the other vendor's CPU>`; every hash must agree. qemu runs the other vendor's instruction
stream (its CPUID: MKL dispatches on it) and computes the approximate instructions (RSQRTPS, RCPPS), whose values
are the CPU maker's own, exactly: any result that depends on the CPU's maker differs there.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

from editor.determinism import use_numerics
from editor.hashing import state_hash
from editor.lifecycle import Workspace
from editor.world_facts import PRESETS, facts_to_counterfact, generate_facts, true_statements
from editor.world_training import build_tokenizer, deterministic_build, encode_examples, new_model, train
from ledger import Ledger
from ledger.records import EditRequest

# The tiny preset, narrower and trained briefly: what matters is that every kind of step runs, not that it learns.
MICRO = replace(PRESETS["tiny"], n_subjects=8, n_layer=2, n_embd=32, n_inner=64, n_head=2, epochs=2, batch_size=16)


def main(out: Path) -> dict[str, str]:
    use_numerics("portable")
    records = facts_to_counterfact(generate_facts(MICRO, seed=0), seed=0)
    statements = true_statements(records)
    texts = [f"{s.prompt} {s.target} ." for s in statements]
    with deterministic_build():
        tokenizer = build_tokenizer(texts + [r["requested_rewrite"]["target_new"]["str"] for r in records])
        torch.manual_seed(0)
        model = new_model(MICRO, len(tokenizer))
        train(model, encode_examples(tokenizer, statements, []), MICRO, 0, tokenizer.pad_token_id, None,
              gated_layers=1)
    trained = state_hash(model)
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    (out / "corpus.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    workspace = Workspace(Ledger.init(out / "ledger"), numerics="portable")
    workspace.add_model("micro", out / "model", corpus=out / "corpus.txt")
    requests = [EditRequest(subject=r["requested_rewrite"]["subject"], prompt=r["requested_rewrite"]["prompt"],
                            target_new=r["requested_rewrite"]["target_new"]["str"]) for r in records[:2]]
    overrides = {"layers": [0, 1], "v_num_grad_steps": 4}
    edited = workspace.edit(requests, method="nse", batch_size=2, overrides=overrides)
    return {"trained": trained, "edited": edited[-1].state_hash}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
