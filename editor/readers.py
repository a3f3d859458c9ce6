"""Request files: CounterFact (ROME), MQuAKE, zsRE (MEND), KnowEdit/EasyEdit JSON, plain JSONL and CSV.

Each record becomes an `EditRequest` whose prompt holds `{}` where the subject goes, with its evaluation prompts
(paraphrase, neighborhood with its expected answer, generation, attribute, portability). A file is validated
whole before anything is returned: a malformed record is refused with a one-line `RequestFileError` naming the
file, the record index and the field at fault.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ledger.records import EditRequest, EvalPrompt

FORMATS = ("counterfact", "mquake", "zsre", "knowedit", "jsonl", "csv")
PLAIN_COLUMNS = ("subject", "prompt", "target_new")
EXTRA_CELLS = "(row)"  # where a CSV row with more cells than columns keeps the surplus, to be refused


class RequestFileError(ValueError):
    """A request file, or one of its records, that cannot be read."""


class Record:
    """One raw record and where it came from, with typed accessors that fail with a precise message."""

    def __init__(self, path: Path, index: int, data: Any) -> None:
        self.path, self.index, self.data = path, index, data
        if not isinstance(data, dict):
            raise self.error("(record)", f"expected an object, got {type(data).__name__}")

    def error(self, field: str, problem: str) -> RequestFileError:
        return RequestFileError(f"{self.path}: record {self.index}: field {field!r}: {problem}")

    def value(self, field: str, required: bool = True) -> Any:
        """The value at a dotted path (`requested_rewrite.target_new.str`); None if absent and not required."""
        node: Any = self.data
        for part in field.split("."):
            if not isinstance(node, dict) or part not in node or node[part] is None:
                if required:
                    raise self.error(field, "missing")
                return None
            node = node[part]
        return node

    def text(self, field: str, required: bool = True, node: Any = None) -> str | None:
        """A non-empty string field (surrounding whitespace removed)."""
        value = self.value(field, required) if node is None else node
        if value is None:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and field.endswith("case_id"):
            return str(value)
        if not isinstance(value, str):
            raise self.error(field, f"expected a string, got {type(value).__name__}")
        if not value.strip():
            if required:
                raise self.error(field, "empty")
            return None
        return value.strip()

    def texts(self, field: str) -> list[str]:
        """An optional list of non-empty strings."""
        value = self.value(field, required=False)
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(field, "expected a list of strings")
        return [v.strip() for v in value if v.strip()]

    def answer(self, field: str, node: Any, required: bool = False) -> str | None:
        """An answer given as a string or a (nested) list of strings: its first string."""
        while isinstance(node, list) and node:
            node = node[0]
        if node is None or node == []:
            if required:
                raise self.error(field, "missing")
            return None
        return self.text(field, required, node=node)

    def template(self, field: str, prompt: str, subject: str) -> str:
        """Check a prompt template: it holds `{}` and formats with the subject."""
        if "{}" not in prompt:
            raise self.error(field, "has no '{}' where the subject goes")
        try:
            prompt.format(subject)
        except (IndexError, KeyError, ValueError):
            raise self.error(field, "is not a template with a single '{}'") from None
        return prompt

    def subject_template(self, field: str, question: str, subject: str) -> str:
        """A question that names the subject literally, turned into a template (other braces escaped)."""
        if subject not in question:
            raise self.error(field, f"does not contain the subject {subject!r}")
        escaped = question.replace("{", "{{").replace("}", "}}")
        return escaped.replace(subject.replace("{", "{{").replace("}", "}}"), "{}", 1)


# ------------------------------------------------------------------------------------------------ the formats
def counterfact_request(record: Record) -> list[EditRequest]:
    subject = record.text("requested_rewrite.subject")
    prompt = record.template("requested_rewrite.prompt", record.text("requested_rewrite.prompt"), subject)
    target_new = record.text("requested_rewrite.target_new.str")
    target_true = record.text("requested_rewrite.target_true.str", required=False)
    prompts = [EvalPrompt("paraphrase", t) for t in record.texts("paraphrase_prompts")]
    prompts += [EvalPrompt("neighborhood", t, target_true) for t in record.texts("neighborhood_prompts")]
    prompts += [EvalPrompt("generation", t) for t in record.texts("generation_prompts")]
    prompts += [EvalPrompt("attribute", t, target_new) for t in record.texts("attribute_prompts")]
    case_id = record.text("case_id", required=False) or str(record.index)
    return [EditRequest(subject=subject, prompt=prompt, target_new=target_new, target_true=target_true,
                        relation_id=record.text("requested_rewrite.relation_id", required=False), case_id=case_id,
                        eval_prompts=tuple(prompts))]


def mquake_requests(record: Record) -> list[EditRequest]:
    """Each rewrite of a case is a request; the multi-hop questions test the case's last one (portability)."""
    rewrites = record.value("requested_rewrite")
    if not isinstance(rewrites, list) or not rewrites:
        raise record.error("requested_rewrite", "expected a non-empty list")
    case_id = record.text("case_id", required=False) or str(record.index)
    new_answer = record.text("new_answer", required=False)
    requests = []
    for number, rewrite in enumerate(rewrites):
        part = Record(record.path, record.index, {"case_id": f"{case_id}.{number}", "requested_rewrite": rewrite})
        field = f"requested_rewrite.{number}"
        try:
            (request,) = counterfact_request(part)
        except RequestFileError as error:  # name the rewrite within the record
            raise RequestFileError(str(error).replace("'requested_rewrite.", f"'{field}.")) from None
        question = part.text("requested_rewrite.question", required=False)
        extra = [EvalPrompt("paraphrase", question)] if question else []
        if number == len(rewrites) - 1 and new_answer:
            extra += [EvalPrompt("portability", q, new_answer) for q in record.texts("questions")]
        requests.append(replace(request, eval_prompts=request.eval_prompts + tuple(extra)))
    return requests


def zsre_request(record: Record) -> list[EditRequest]:
    subject = record.text("subject")
    prompt = record.subject_template("src", record.text("src"), subject)
    target_new = record.text("alt")
    answers = record.value("answers", required=False)
    if answers is not None and not isinstance(answers, (list, str)):
        raise record.error("answers", f"expected a list of strings, got {type(answers).__name__}")
    target_true = record.answer("answers", answers)
    prompts = [EvalPrompt("paraphrase", t) for t in record.texts("rephrase")]
    loc, loc_ans = record.text("loc", required=False), record.text("loc_ans", required=False)
    if loc and loc_ans:
        prompts.append(EvalPrompt("neighborhood", loc, loc_ans))
    return [EditRequest(subject=subject, prompt=prompt, target_new=target_new, target_true=target_true,
                        case_id=record.text("case_id", required=False) or str(record.index),
                        eval_prompts=tuple(prompts))]


def _prompt_answer_groups(record: Record, field: str, kind: str) -> list[EvalPrompt]:
    """KnowEdit `locality`/`portability`: {group: [{prompt, ground_truth}, ...]} (or one list) as eval prompts."""
    groups = record.value(field, required=False)
    if groups is None:
        return []
    if isinstance(groups, dict):
        groups = [item for items in groups.values() for item in (items if isinstance(items, list) else [items])]
    if not isinstance(groups, list):
        raise record.error(field, f"expected an object or a list, got {type(groups).__name__}")
    prompts = []
    for number, item in enumerate(groups):
        if not isinstance(item, dict):
            raise record.error(f"{field}.{number}", f"expected an object, got {type(item).__name__}")
        prompt = record.text(f"{field}.{number}.prompt", node=item.get("prompt"))
        if prompt is None:
            raise record.error(f"{field}.{number}.prompt", "missing")
        prompts.append(EvalPrompt(kind, prompt, record.answer(f"{field}.{number}.ground_truth",
                                                              item.get("ground_truth"))))
    return prompts


def knowedit_request(record: Record) -> list[EditRequest]:
    subject = record.text("subject")
    prompt_text = record.text("prompt")
    prompt = (record.template("prompt", prompt_text, subject) if "{}" in prompt_text
              else record.subject_template("prompt", prompt_text, subject))
    target_new = record.answer("target_new", record.value("target_new"), required=True)
    target_true = record.answer("ground_truth", record.value("ground_truth", required=False))
    prompts = [EvalPrompt("paraphrase", t) for t in record.texts("rephrase_prompt")]
    locality_prompt = record.text("locality_prompt", required=False)
    if locality_prompt:
        prompts.append(EvalPrompt("neighborhood", locality_prompt,
                                  record.answer("locality_ground_truth", record.value("locality_ground_truth",
                                                                                      required=False))))
    prompts += _prompt_answer_groups(record, "locality", "neighborhood")
    prompts += _prompt_answer_groups(record, "portability", "portability")
    return [EditRequest(subject=subject, prompt=prompt, target_new=target_new, target_true=target_true,
                        case_id=record.text("case_id", required=False) or str(record.index),
                        eval_prompts=tuple(prompts))]


def plain_request(record: Record) -> list[EditRequest]:
    """JSONL/CSV: subject, prompt (with `{}`), target_new, and optionally target_true, relation_id, case_id."""
    if EXTRA_CELLS in record.data:
        raise record.error(EXTRA_CELLS, "more cells than columns")
    subject = record.text("subject")
    prompt = record.template("prompt", record.text("prompt"), subject)
    prompts = [EvalPrompt("paraphrase", t) for t in record.texts("paraphrase_prompts")]
    target_true = record.text("target_true", required=False)
    prompts += [EvalPrompt("neighborhood", t, target_true) for t in record.texts("neighborhood_prompts")]
    return [EditRequest(subject=subject, prompt=prompt, target_new=record.text("target_new"),
                        target_true=target_true, relation_id=record.text("relation_id", required=False),
                        case_id=record.text("case_id", required=False) or str(record.index),
                        eval_prompts=tuple(prompts))]


CONVERTERS: dict[str, Callable[[Record], list[EditRequest]]] = {
    "counterfact": counterfact_request, "mquake": mquake_requests, "zsre": zsre_request,
    "knowedit": knowedit_request, "jsonl": plain_request, "csv": plain_request,
}


# ------------------------------------------------------------------------------------------------ files
def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise RequestFileError(f"{path}: not a UTF-8 text file (invalid byte at offset {error.start}); "
                               f"expected JSON, JSONL or CSV records") from None


def _load_json(path: Path) -> list[Any]:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as error:
        raise RequestFileError(f"{path}: not valid JSON (line {error.lineno}): {error.msg}") from None
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        data = next(iter(data.values()))  # {"data": [...]} wrappers
    if not isinstance(data, list):
        raise RequestFileError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


def _load_jsonl(path: Path) -> list[Any]:
    records = []
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise RequestFileError(f"{path}: record {len(records)} (line {number}): not valid JSON: "
                                       f"{error.msg}") from None
    return records


def _load_csv(path: Path) -> list[Any]:
    with io.StringIO(_read_text(path), newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in PLAIN_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise RequestFileError(f"{path}: record 0: field {missing[0]!r}: missing (no such column)")
        rows = []
        for row in reader:
            cells = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
            rows.append(cells | ({EXTRA_CELLS: row[None]} if None in row else {}))
        return rows


def detect_format(path: Path, first: Any) -> str:
    """The format of a file from its extension and its first record's keys."""
    if path.suffix.lower() == ".csv":
        return "csv"
    keys = set(first) if isinstance(first, dict) else set()
    if "requested_rewrite" in keys:
        return "mquake" if isinstance(first["requested_rewrite"], list) else "counterfact"
    if {"src", "alt"} <= keys:
        return "zsre"
    if "target_new" in keys and keys & {"ground_truth", "rephrase_prompt", "locality", "locality_prompt",
                                        "portability"}:
        return "knowedit"
    if set(PLAIN_COLUMNS) <= keys:
        return "jsonl"
    if {"subject", "prompt"} <= keys:  # a plain record without its target: name the field, not "unknown format"
        missing = next(c for c in PLAIN_COLUMNS if c not in keys)
        raise RequestFileError(f"{path}: record 0: field {missing!r}: missing")
    raise RequestFileError(f"{path}: record 0: unknown format (keys {sorted(keys)}); pass a format: "
                           f"{', '.join(FORMATS)}")


@dataclass
class RequestFile:
    """The requests of a file, and (with skip_invalid) one reason per record that was skipped."""

    requests: list[EditRequest]
    skipped: list[str] = field(default_factory=list)


def read_requests(path: Path, fmt: str = "auto", limit: int | None = None, *,
                  skip_invalid: bool = False) -> list[EditRequest]:
    """Every request of a file, all validated before any is returned (or, with skip_invalid, the valid ones)."""
    return read_request_file(path, fmt, limit, skip_invalid=skip_invalid).requests


def read_request_file(path: Path, fmt: str = "auto", limit: int | None = None, *,
                      skip_invalid: bool = False) -> RequestFile:
    """`read_requests`, with the reason for each record skipped."""
    path = Path(path)
    if fmt != "auto" and fmt not in FORMATS:
        raise RequestFileError(f"format {fmt!r}: unknown (choose from auto, {', '.join(FORMATS)})")
    if limit is not None and limit < 1:
        raise RequestFileError(f"limit {limit}: must be a positive number")
    if not path.is_file():
        raise RequestFileError(f"{path}: no such file")
    if fmt == "csv" or (fmt == "auto" and path.suffix.lower() == ".csv"):
        raw = _load_csv(path)
    elif path.suffix.lower() == ".jsonl":
        raw = _load_jsonl(path)
    else:
        raw = _load_json(path)
    if not raw:
        raise RequestFileError(f"{path}: no records")
    raw = raw[:limit] if limit is not None else raw
    fmt = detect_format(path, raw[0]) if fmt == "auto" else fmt
    read = RequestFile([])
    for index, data in enumerate(raw):
        try:
            read.requests.extend(CONVERTERS[fmt](Record(path, index, data)))
        except RequestFileError as error:
            if not skip_invalid:
                raise
            read.skipped.append(str(error).removeprefix(f"{path}: "))
    if not read.requests:
        raise RequestFileError(f"{path}: no valid records" + (f" ({read.skipped[0]})" if read.skipped else ""))
    return read
