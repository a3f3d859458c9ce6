"""The tiny fact world: determinism, the exported directory, what the model knows, the facts file, the cache."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from editor.evaluate import evaluate_requests, fluency_score, perplexity, score_targets
from editor.hashing import state_hash
from editor.world import WorldError, build_world, load_world
from editor.world_facts import (
    PRESETS,
    Statement,
    editable_subjects,
    generate_facts,
    identity_comes_first,
    named_in,
    source_statements,
    split_records,
    true_statements,
)
from editor.world_training import SOURCE_EPOCHS, source_epochs
from tests.lifecycle.cli_helpers import run_subprocess

FORCED_AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}  # what another CPU's process would select


def test_tiny_world_knows_its_facts(tiny_world):
    assert 40 <= tiny_world.n_facts <= 60
    assert tiny_world.accuracy >= 0.95 and tiny_world.paraphrase_accuracy >= 0.9
    assert (tiny_world.preset, tiny_world.seed, tiny_world.train_seed, tiny_world.source) == ("tiny", 0, 0, None)


def test_the_exported_directory_loads_with_from_pretrained_and_still_knows(tiny_world):
    model = AutoModelForCausalLM.from_pretrained(tiny_world.model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_world.model_dir)
    assert (tiny_world.model_dir / "model.safetensors").is_file()
    assert state_hash(model) == tiny_world.state_hash
    assert tokenizer.pad_token == "<pad>" and tokenizer.eos_token == "<|endoftext|>"
    requests = tiny_world.requests()
    known = score_targets(model, tokenizer, [(r.text, r.target_true) for r in requests])
    assert sum(s.first_token_correct for s in known) / len(known) == pytest.approx(tiny_world.accuracy)
    # The unedited model prefers the true object everywhere: no efficacy yet, full specificity.
    report = evaluate_requests(model, tokenizer, requests)
    assert report.aggregate["efficacy"] <= 0.05 and report.aggregate["generalization"] <= 0.1
    assert report.aggregate["specificity"] >= 0.95
    # General text (filler sentences it never saw in that form) is far better predicted than by a uniform guess
    # (measured 13.4 against 160 words); held-out text adds never-edited facts joined after "and", whose invented
    # names no model can guess, so it is only compared with what the edits make of it (benchmarks).
    general = tiny_world.general_path.read_text().splitlines()
    assert perplexity(model, tokenizer, general) < len(tokenizer) / 4
    prompts = [p.text for p in requests[0].prompts("generation")]
    assert fluency_score(model, tokenizer, prompts, seed=1) == fluency_score(model, tokenizer, prompts, seed=1)


def test_facts_file_is_counterfact_with_consistent_prompts(tiny_world):
    records = json.loads(tiny_world.facts_path.read_text())
    requests, preserved = tiny_world.requests(), tiny_world.preserved_requests()
    assert len(records) == len(requests) and len(requests) + len(preserved) == tiny_world.n_facts
    # Neighbours and attribute holders come from the never-edited facts only.
    holders: dict[tuple[str, str], set[str]] = defaultdict(set)
    for fact in preserved:
        holders[(fact.relation_id, fact.target_true)].add(fact.subject)
    neighbours = 0
    for record, request in zip(records, requests, strict=True):
        rewrite = record["requested_rewrite"]
        assert set(rewrite) >= {"prompt", "subject", "target_new", "target_true", "relation_id"}
        assert request.target_new != request.target_true and "{}" in request.prompt
        assert request.prompts("paraphrase") and request.prompts("generation")
        same_object = holders[(request.relation_id, request.target_true)]
        for prompt in request.prompts("neighborhood"):  # never-edited subjects, same relation and true object
            assert prompt.target == request.target_true
            assert any(s in prompt.text for s in same_object) and request.subject not in prompt.text
            neighbours += 1
        for prompt in request.prompts("attribute"):  # never-edited subjects whose true object is the new target
            assert any(s in prompt.text for s in holders[(request.relation_id, request.target_new)])
    assert neighbours >= len(requests) // 2  # specificity has something to read
    corpus = set(tiny_world.corpus_path.read_text().splitlines())
    assert not corpus & set(tiny_world.heldout_path.read_text().splitlines())


def test_the_split_is_disjoint_and_preservation_reads_only_never_edited_facts(tiny_world):
    requests, preserved = tiny_world.requests(), tiny_world.preserved_requests()
    edited_subjects, kept_subjects = {r.subject for r in requests}, {r.subject for r in preserved}
    assert edited_subjects and kept_subjects and not edited_subjects & kept_subjects
    split = json.loads((tiny_world.out_dir / "world.json").read_text())["split"]
    assert split["editable_facts"] == len(requests) and split["preserved_facts"] == len(preserved)
    assert split["editable_subjects"] <= split["preserved_subjects"]  # at most half are ever edited
    # Every prompt specificity scores is a never-edited fact, with the object the model was trained on.
    kept_facts = {(p, r.target_true) for r in preserved for p in [r.text] + [q.text for q in r.prompts("paraphrase")]}
    scored = [(p.text, p.target) for r in requests for p in r.prompts("neighborhood")]
    assert scored and set(scored) <= kept_facts
    # Held-out text: filler (general.txt) and never-edited facts joined; no edited subject in a fact sentence.
    general = set(tiny_world.general_path.read_text().splitlines()) - {""}
    heldout = set(tiny_world.heldout_path.read_text().splitlines()) - {""}
    facts_told = heldout - general
    assert general and facts_told and general <= heldout
    assert not any(s in line for line in facts_told for s in edited_subjects)
    assert all(any(s in line for s in kept_subjects) for line in facts_told)
    templates = {t.split("{}")[0].strip() for r in requests + preserved for t in [r.prompt]}
    assert not any(t in line for line in general for t in templates)  # filler states no fact


def test_split_records_drops_neighbours_naming_an_editable_subject_as_whole_words():
    def record(subject: str, neighbours: list[str]) -> dict:
        return {"requested_rewrite": {"prompt": "The home of {}", "subject": subject, "relation_id": "P1",
                                      "target_new": {"str": "Rome"}, "target_true": {"str": "Oslo"}},
                "neighborhood_prompts": neighbours, "attribute_prompts": neighbours}

    records = [record("Ann Lee", ["The home of Bo Ray", "The home of Ann Leeds", "The home of Cy Dale's"]),
               record("Cy Dale", ["The home of Ann Lee", "The home of Bo Ray"]),
               record("Bo Ray", ["The home of Cy Dale", "The home of Ann Leeds"]),
               record("Ann Leeds", ["The home of Ann Lee"])]
    editable = editable_subjects([r["requested_rewrite"]["subject"] for r in records])
    assert editable == {"Ann Lee", "Cy Dale"}
    edited, kept = split_records(records, editable)
    assert [r["requested_rewrite"]["subject"] for r in edited] == ["Ann Lee", "Cy Dale"]
    assert [r["requested_rewrite"]["subject"] for r in kept] == ["Bo Ray", "Ann Leeds"]
    # "Ann Leeds" is not "Ann Lee"; "Cy Dale's" is Cy Dale.
    assert edited[0]["neighborhood_prompts"] == ["The home of Bo Ray", "The home of Ann Leeds"]
    assert edited[1]["neighborhood_prompts"] == ["The home of Bo Ray"] == edited[1]["attribute_prompts"]
    assert kept[0]["neighborhood_prompts"] == ["The home of Ann Leeds"] and kept[1]["neighborhood_prompts"] == []
    assert records[0]["neighborhood_prompts"][2] == "The home of Cy Dale's"  # the input is left as it was


def test_same_seeds_same_weights_other_seeds_other(tiny_world, tiny_world_release2, tmp_path):
    # Built again by the CLI in a process forced onto the kernels an AVX2 CPU would choose: the same world.
    done = run_subprocess(tmp_path, "world", "build", "--out", tmp_path / "again", "--preset", "tiny", "--json",
                          env=FORCED_AVX2)
    assert done.code == 0, done.stderr
    again = load_world(tmp_path / "again")
    assert again.state_hash == tiny_world.state_hash
    assert again.facts_path.read_text() == tiny_world.facts_path.read_text()
    # A next release: the same facts, other weights, and it knows them too.
    assert tiny_world_release2.state_hash != tiny_world.state_hash
    assert tiny_world_release2.facts_path.read_text() == tiny_world.facts_path.read_text()
    assert tiny_world_release2.accuracy >= 0.95
    # Another world seed: other facts (so other weights; train_seed alone already gives other weights above).
    other_facts = generate_facts(PRESETS["tiny"], seed=1)
    assert {f.subject for f in other_facts} != {f.subject for f in generate_facts(PRESETS["tiny"], seed=0)}
    assert {f.subject for f in generate_facts(PRESETS["tiny"], seed=0)} == {r.subject for r in tiny_world.requests()} \
        | {r.subject for r in tiny_world.preserved_requests()}


def test_a_built_world_is_reused_and_loaded(tiny_world):
    stamp = (tiny_world.out_dir / "world.json").stat().st_mtime_ns
    again = build_world(tiny_world.out_dir, preset="tiny", seed=0, train_seed=0, progress=False)
    assert again == tiny_world and (tiny_world.out_dir / "world.json").stat().st_mtime_ns == stamp
    assert load_world(tiny_world.out_dir) == tiny_world


def test_bad_world_arguments_and_directories(tmp_path):
    with pytest.raises(WorldError, match="preset 'huge'"):
        build_world(tmp_path, preset="huge")
    with pytest.raises(WorldError, match="from_file"):
        build_world(tmp_path, preset="tiny", from_file=tmp_path / "absent.json")
    with pytest.raises(WorldError, match="not a fact world"):
        load_world(tmp_path)
    assert set(PRESETS) >= {"tiny", "small", "default"} and PRESETS["default"].n_layer >= 4


def test_gate_masks_hide_the_subject_from_later_positions_in_the_edited_layers():
    from editor.world_training import Example, gate_masks

    # tokens: 0 "The" 1 "Ann" 2 "Smith" 3 "speaks" 4 (object); a second example without a subject, one token shorter
    gated = Example(ids=(5, 6, 7, 8, 9), weights=(1.0,) * 5, subject_span=(1, 2))
    plain = Example(ids=(5, 6, 7, 8), weights=(1.0,) * 4)
    masks = gate_masks([gated, plain], width=5, n_layer=4, gated_layers=3)
    assert len(masks) == 4 and masks[0].shape == (2, 1, 5, 5)
    seen = [m[:, 0] == 0 for m in masks]  # True where a query (row) may attend to a key (column)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    for layer in range(4):
        assert torch.equal(seen[layer][1], causal & torch.tensor([True] * 4 + [False]))  # padding key hidden
        assert torch.equal(seen[layer][0, :3], causal[:3])  # up to the subject: plain causal attention
    lower = seen[0][0]
    assert not lower[3:, 1:3].any() and lower[3:, 0].all() and lower[4, 3:].all()
    assert all(torch.equal(seen[layer][0], lower) for layer in range(3))
    upper = seen[3][0]
    assert not upper[3:, 1].any() and upper[3:, 2].all() and upper[3:, 0].all()


def _record(template: str, subject: str, neighbours: list[str], paraphrases: list[str]) -> dict:
    return {"requested_rewrite": {"prompt": template, "subject": subject, "target_true": {"str": "Oslo"},
                                  "target_new": {"str": "Lima"}},
            "paraphrase_prompts": paraphrases, "neighborhood_prompts": [template.format(n) for n in neighbours]}


def test_neighbours_are_gated_only_when_asked_and_only_where_their_name_can_be_told():
    """With `gate_neighbours`, a neighbour in the rewrite phrasing gets its name known to the training gate like
    the subject; other phrasings stay ungated (the name cannot be told from the words around it)."""
    record = _record("Long ago, {} lived in", "Nunkri 21", ["Refein-Shen", "Bola 21"],
                     ["Snow fell. Nunkri 21 has a flat in", "Snow fell. The home of Nunkri is"])
    record["neighborhood_prompts"] += ["Refein-Shen has a flat in", "Long ago,  lived in"]
    subjects = [None, "Nunkri 21", "Nunkri 21", None, "Refein-Shen", "Bola 21", None, None]
    gated = true_statements([record], gate_neighbours=True)
    assert [s.prompt for s in gated] == ["Long ago, Nunkri 21 lived in", *record["paraphrase_prompts"],
                                         *record["neighborhood_prompts"]]
    assert [s.subject for s in gated] == subjects[1:] and all(s.target == "Oslo" for s in gated)
    assert true_statements([record]) == [Statement(s.prompt, s.target, s.subject if i < 2 else None)
                                         for i, s in enumerate(gated)]
    assert named_in("{} plays the", "Fai-Kes plays the") == "Fai-Kes"
    assert named_in("The pet of {}", "The pet of Ann Lee") == "Ann Lee"
    assert named_in("The pet of {}", "The pet of ") is None and named_in("{} plays the", "Ann sings the") is None


def test_names_that_differ_in_their_first_word_gate_the_neighbours_and_others_do_not():
    template = "{} lives in"
    first_word = _record(template, "Nunkri 21", ["Bola 21", "Tam-Shen", "Vel-Shen", "Kai 7"], [])
    last_word = _record(template, "Maren Krasnigi", ["Maren Dufor", "Maren Tovik", "Anouk Tovi", "Anouk Bels"], [])
    one_word = _record(template, "Krasnigi", ["Dufor", "Tovik"], [])
    assert identity_comes_first([first_word])
    assert not identity_comes_first([last_word]) and not identity_comes_first([one_word])
    assert not identity_comes_first([first_word, last_word, one_word])  # first words tell 5 of 10 apart, last 6


def test_a_from_world_trains_at_least_the_recipes_epochs_whatever_the_preset():
    """The `--from` recipe was measured with 15 epochs; a preset with fewer (the default's 10) must not shorten it,
    and a very small file trains at most twice as long."""
    default, tiny = PRESETS["default"], PRESETS["tiny"]
    assert default.epochs < SOURCE_EPOCHS <= tiny.epochs
    assert source_epochs(100_000, default) == SOURCE_EPOCHS  # a big file: the recipe's epochs, not the preset's
    assert source_epochs(2_400, default) == 26  # 19 batches of 128 an epoch: 480 steps need 26 epochs
    assert source_epochs(10, default) == 2 * SOURCE_EPOCHS and source_epochs(10, tiny) == 2 * tiny.epochs


def test_a_from_world_of_hyphen_and_digit_names_trains_its_neighbours_cut_after_the_name_and_others_do_not():
    from benchmarks.fact_sets import SPECS, generate

    for spec in SPECS:
        records = generate(replace(spec, records=12)).records
        statements, gated = source_statements(records, seed=0)
        assert gated == (spec.name_shape == "mixed")
        trained = {(s.prompt, s.target) for s in statements}
        for record in records:
            template, truth = record["requested_rewrite"]["prompt"], record["requested_rewrite"]["target_true"]["str"]
            if not template.startswith("{}"):  # a name first: its cut is the bare name, left out where facts clash
                cut = template[: template.index("{}") + 2]
                neighbour_cuts = [(cut.format(named_in(template, p)), truth) for p in record["neighborhood_prompts"]]
                assert all(c in trained for c in neighbour_cuts) == gated
                assert any(c in trained for c in neighbour_cuts) == gated  # every cut, or none


@pytest.mark.slow
def test_a_world_from_counterfact_is_deterministic(tmp_path):
    from tests.conftest import shared_data_dir

    source = shared_data_dir() / "counterfact" / "counterfact-1936.json"
    # two records, one edited and one preserved: the `--from` pipeline whole (statements, gates, invented holders,
    # the split) at 20 s a build
    first = build_world(tmp_path / "a", preset="tiny", from_file=source, limit=2, progress=False)
    second = build_world(tmp_path / "b", preset="tiny", from_file=source, limit=2, progress=False)
    assert json.loads((first.out_dir / "world.json").read_text())["split"]["editable_facts"] == 1
    assert first.state_hash == second.state_hash
    assert (first.model_dir / "model.safetensors").read_bytes() == (second.model_dir / "model.safetensors").read_bytes()
