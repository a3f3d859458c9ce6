"""Request readers on every file in shared/data and on malformed records of every format."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from editor.readers import FORMATS, RequestFileError, read_requests
from tests.conftest import shared_data_dir

DATA = shared_data_dir()


def test_counterfact_file():
    requests = read_requests(DATA / "counterfact" / "counterfact-1936.json")
    assert len(requests) == 1936
    first = requests[0]
    assert (first.subject, first.prompt, first.target_new, first.target_true, first.relation_id, first.case_id) == (
        "Danielle Darrieux", "The mother tongue of {} is", "English", "French", "P103", "0")
    assert first.text == "The mother tongue of Danielle Darrieux is"
    assert len(first.prompts("paraphrase")) == 2 and len(first.prompts("generation")) == 10
    assert {p.target for p in first.prompts("neighborhood")} == {"French"}
    assert {p.target for p in first.prompts("attribute")} == {"English"}
    assert len(read_requests(DATA / "counterfact" / "counterfact-1936.json", limit=5)) == 5


def test_mquake_file_gives_one_request_per_rewrite_and_multihop_portability():
    requests = read_requests(DATA / "mquake" / "MQuAKE-hard.json")
    raw = json.loads((DATA / "mquake" / "MQuAKE-hard.json").read_text())
    assert len(requests) == sum(len(r["requested_rewrite"]) for r in raw)
    case = [r for r in requests if r.case_id.startswith("7417.")]
    assert [r.subject for r in case] == ["Hey Jude", "Madonna", "Narendra Modi", "Australia"]
    assert case[-1].prompts("portability")[0].target == "Arabic" and not case[0].prompts("portability")


def test_zsre_file_refuses_its_empty_target_and_reads_the_rest():
    path = DATA / "zsre" / "zsre_mend-1k.json"
    with pytest.raises(RequestFileError, match=r"zsre_mend-1k\.json: record 534: field 'alt': empty"):
        read_requests(path)
    requests = read_requests(path, skip_invalid=True)
    assert len(requests) == 998
    first = requests[0]
    assert (first.prompt, first.target_new, first.target_true) == ("What is the product made by {}?",
                                                                   "unmanned aircraft", "uniform")
    assert first.prompts("neighborhood")[0].target == "Walter Sobchak"
    assert first.prompts("paraphrase")[0].text == "What will be the product of UniFirst?"


def test_knowedit_files():
    counterfact = read_requests(DATA / "knowedit" / "counterfact-val.json")
    assert len(counterfact) == 1919
    assert (counterfact[0].prompt, counterfact[0].target_true) == ("{}, by", "BBC")
    assert counterfact[0].prompts("neighborhood")[0].target == "BBC"
    path = DATA / "knowedit" / "zsre-test-all.json"
    with pytest.raises(RequestFileError, match=r"record 396: field 'prompt': does not contain the subject"):
        read_requests(path)
    zsre = read_requests(path, skip_invalid=True)
    assert len(zsre) == 1301
    assert zsre[0].prompt == "Which family does {} belong to?" and zsre[0].target_true == "Aspidoceratidae"
    assert [p.target for p in zsre[0].prompts("neighborhood")] == ["genus", "genus"]
    assert zsre[0].prompts("portability")[0].target == "Owlet moths"


# ------------------------------------------------------------------------------------------------ malformed input
GOOD: dict[str, dict[str, Any]] = {
    "counterfact": {"case_id": 1, "requested_rewrite": {"prompt": "{} lives in", "subject": "Ada",
                                                        "target_new": {"str": "Paris"}, "target_true": {"str": "Rome"}},
                    "paraphrase_prompts": ["Ada's home is"]},
    "mquake": {"case_id": 2, "requested_rewrite": [{"prompt": "{} lives in", "subject": "Ada",
                                                    "target_new": {"str": "Paris"}, "target_true": {"str": "Rome"}}],
               "questions": ["Where does Ada live?"], "new_answer": "Paris"},
    "zsre": {"subject": "Ada", "src": "Where does Ada live?", "alt": "Paris", "answers": ["Rome"],
             "rephrase": "Ada lives where?", "loc": "nq question: who is Bob", "loc_ans": "a man"},
    "knowedit": {"subject": "Ada", "prompt": "Where does Ada live?", "target_new": "Paris",
                 "ground_truth": ["Rome"], "rephrase_prompt": "Ada lives where?",
                 "locality": {"Relation_Specificity": [{"prompt": "Ada was born in", "ground_truth": ["Oslo"]}]}},
    "jsonl": {"subject": "Ada", "prompt": "{} lives in", "target_new": "Paris", "target_true": "Rome"},
    "csv": {"subject": "Ada", "prompt": "{} lives in", "target_new": "Paris", "target_true": "Rome"},
}
# format -> case -> (dotted field, new value or None to delete it, field named in the message)
BAD: dict[str, dict[str, tuple[str, Any, str]]] = {
    "counterfact": {"missing": ("requested_rewrite.subject", None, "requested_rewrite.subject"),
                    "type": ("requested_rewrite.target_new.str", 5, "requested_rewrite.target_new.str"),
                    "no_braces": ("requested_rewrite.prompt", "Ada lives in", "requested_rewrite.prompt"),
                    "empty_target": ("requested_rewrite.target_new.str", " ", "requested_rewrite.target_new.str")},
    "mquake": {"missing": ("requested_rewrite.0.subject", None, "requested_rewrite.0.subject"),
               "type": ("requested_rewrite", {"prompt": "{} x"}, "requested_rewrite"),
               "no_braces": ("requested_rewrite.0.prompt", "Ada lives in", "requested_rewrite.0.prompt"),
               "empty_target": ("requested_rewrite.0.target_new.str", "", "requested_rewrite.0.target_new.str")},
    "zsre": {"missing": ("alt", None, "alt"), "type": ("answers", 3, "answers"),
             "no_braces": ("src", "Where does she live?", "src"), "empty_target": ("alt", "", "alt")},
    "knowedit": {"missing": ("subject", None, "subject"), "type": ("target_new", {"x": 1}, "target_new"),
                 "no_braces": ("prompt", "Where does she live?", "prompt"),
                 "empty_target": ("target_new", "", "target_new")},
    "jsonl": {"missing": ("target_new", None, "target_new"), "type": ("subject", ["Ada"], "subject"),
              "no_braces": ("prompt", "Ada lives in", "prompt"), "empty_target": ("target_new", "  ", "target_new")},
    "csv": {"missing": ("target_new", None, "target_new"), "type": ("extra", "x", "(row)"),
            "no_braces": ("prompt", "Ada lives in", "prompt"), "empty_target": ("target_new", "", "target_new")},
}


def _set(record: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    record = json.loads(json.dumps(record))
    *parents, last = dotted.split(".")
    node: Any = record
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return record


def write_records(path: Path, fmt: str, records: list[dict[str, Any]]) -> Path:
    if fmt == "csv":
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["subject", "prompt", "target_new", "target_true"])
            for record in records:
                cells = [record.get(c, "") for c in ("subject", "prompt", "target_new", "target_true")]
                writer.writerow(cells + ([record["extra"]] if "extra" in record else []))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        path.write_text(json.dumps(records))
    return path


SUFFIX = {"csv": ".csv", "jsonl": ".jsonl"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_good_file_of_each_format_is_detected_and_read(fmt, tmp_path):
    path = write_records(tmp_path / f"good{SUFFIX.get(fmt, '.json')}", fmt, [GOOD[fmt], GOOD[fmt]])
    auto, explicit = read_requests(path), read_requests(path, fmt=fmt)
    assert auto == explicit and len(auto) == 2
    assert (auto[0].subject, auto[0].text, auto[0].target_new) == ("Ada", auto[0].prompt.format("Ada"), "Paris")
    assert "{}" in auto[0].prompt and auto[0].text in (
        "Ada lives in", "Where does Ada live?")


@pytest.mark.parametrize("case", ["missing", "type", "no_braces", "empty_target"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_malformed_record_is_refused_naming_file_index_and_field(fmt, case, tmp_path):
    dotted, value, named = BAD[fmt][case]
    bad = GOOD[fmt] | {"extra": value} if dotted == "extra" else _set(GOOD[fmt], dotted, value)
    path = write_records(tmp_path / f"bad{SUFFIX.get(fmt, '.json')}", fmt, [GOOD[fmt], bad, GOOD[fmt]])
    with pytest.raises(RequestFileError) as refused:
        read_requests(path, fmt=fmt)
    message = str(refused.value)
    assert "\n" not in message
    assert path.name in message and "record 1" in message and f"'{named}'" in message
    assert len(read_requests(path, fmt=fmt, skip_invalid=True)) == 2


def test_file_level_errors(tmp_path):
    with pytest.raises(RequestFileError, match="no such file"):
        read_requests(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    with pytest.raises(RequestFileError, match=r"broken\.json: not valid JSON"):
        read_requests(broken)
    unknown = write_records(tmp_path / "unknown.json", "json", [{"what": 1}])
    with pytest.raises(RequestFileError, match="unknown format"):
        read_requests(unknown)
    with pytest.raises(RequestFileError, match="format 'yaml'"):
        read_requests(unknown, fmt="yaml")
    no_column = tmp_path / "cols.csv"
    no_column.write_text("subject,prompt\nAda,{} lives in\n")
    with pytest.raises(RequestFileError, match=r"cols\.csv: record 0: field 'target_new'"):
        read_requests(no_column)
