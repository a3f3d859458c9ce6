"""The fact sets `--from` worlds are measured on: valid CounterFact files, the name shapes promised, consistent
neighbourhoods."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from benchmarks.fact_sets import DISTRACTORS, SPECS, generate, write_sets
from editor.readers import read_requests

NAME_PATTERNS = {
    "one": r"[A-Z][a-z]+",
    "two": r"[A-Z][a-z]+ [A-Z][a-z]+",
    "three": r"[A-Z][a-z]+ [A-Z][a-z]+ [A-Z][a-z]+",
    "mixed": r"[A-Z][a-z]+-[A-Z][a-z]+|[A-Z][a-z]+ [0-9]+",
}


def test_every_set_is_a_counterfact_file_the_reader_accepts(tmp_path):
    paths = write_sets(tmp_path)
    assert [p.name for p in paths] == [f"{spec.name}.json" for spec in SPECS]
    for spec, path in zip(SPECS, paths, strict=True):
        requests = read_requests(path, fmt="counterfact")
        assert len(requests) == spec.records
        assert all(r.target_new != r.target_true and "{}" in r.prompt for r in requests)
        assert all(r.prompts("paraphrase") and r.prompts("neighborhood") and r.prompts("generation")
                   for r in requests)
        assert len({(r.subject, r.relation_id) for r in requests}) == len(requests)  # each fact once


def test_sets_are_deterministic_and_differ_in_what_they_promise():
    for spec in SPECS:
        assert generate(spec).records == generate(spec).records
    assert replace(SPECS[0], seed=1) and generate(replace(SPECS[0], seed=1)).records != generate(SPECS[0]).records
    assert {s.name_shape for s in SPECS} == set(NAME_PATTERNS)
    assert len({s.n_relations for s in SPECS}) >= 3 and {s.prompt_length for s in SPECS} == {"short", "long"}
    assert {s.distractors for s in SPECS} == {True, False}
    for spec in SPECS:
        records = generate(spec).records
        assert len({r["requested_rewrite"]["relation_id"] for r in records}) == spec.n_relations
        prompts = [r["requested_rewrite"]["prompt"] for r in records]
        if spec.prompt_length == "long":  # a clause before the subject
            assert all(p.index("{}") > 20 for p in prompts)
        else:
            assert max(len(p) for p in prompts) < 40
        paraphrases = [p for r in records for p in r["paraphrase_prompts"]]
        with_distractor = [any(p.startswith(d) for d in DISTRACTORS) for p in paraphrases]
        assert all(with_distractor) if spec.distractors else not any(with_distractor)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_names_have_the_promised_shape_and_neighbours_share_relation_and_true_object(spec):
    fact_set = generate(spec)
    pattern = re.compile(NAME_PATTERNS[spec.name_shape])
    subjects = {subject for subject, _ in fact_set.truth}
    assert all(pattern.fullmatch(s) for s in subjects)
    if spec.name_shape == "mixed":  # both kinds, not one
        assert any("-" in s for s in subjects) and any(s[-1].isdigit() for s in subjects)
    for record in fact_set.records:
        rewrite = record["requested_rewrite"]
        relation, truth, new = rewrite["relation_id"], rewrite["target_true"]["str"], rewrite["target_new"]["str"]
        assert fact_set.truth[(rewrite["subject"], relation)] == truth
        assert all(rewrite["subject"] in p for p in record["paraphrase_prompts"])
        for key, expected in (("neighborhood_prompts", truth), ("attribute_prompts", new)):
            assert record[key]
            for prompt in record[key]:
                holder = _subject_of(prompt, rewrite["prompt"])
                assert holder != rewrite["subject"] and fact_set.truth[(holder, relation)] == expected


def _subject_of(prompt: str, template: str) -> str:
    before, after = template.split("{}")
    assert prompt.startswith(before) and prompt.endswith(after)
    return prompt[len(before) : len(prompt) - len(after)]


def test_sets_leave_no_file_behind_unless_written(tmp_path):
    write_sets(tmp_path, SPECS[:1], records=10)
    assert len(json.loads((tmp_path / f"{SPECS[0].name}.json").read_text())) == 10


def test_only_the_hyphen_and_digit_names_gate_their_neighbours_counterfact_does_not():
    """The `--from` recipe gates neighbours where names tell each other apart by their first word: of our sets only
    the mixed one ("Nunkri 21", "Vel-Tam"); CounterFact's real names, at every size, do not."""
    from editor.world_facts import identity_comes_first
    from tests.conftest import shared_data_dir

    assert {s.name_shape: identity_comes_first(generate(s).records) for s in SPECS} == {
        "one": False, "two": False, "three": False, "mixed": True}
    source = shared_data_dir() / "counterfact" / "counterfact-1936.json"
    records = json.loads(source.read_text(encoding="utf-8"))
    assert not any(identity_comes_first(records[:n]) for n in (24, 200, 500, len(records)))
