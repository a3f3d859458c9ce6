"""Bad input through the `editledger` command: one line naming the culprit, a non-zero exit, nothing written."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from ledger import Ledger
from tests.lifecycle.cli_helpers import REPO, run_cli


@pytest.fixture(scope="module")
def small_ledger(tiny_world, tmp_path_factory):
    from editor.lifecycle import Workspace

    root = tmp_path_factory.mktemp("bad")
    model_copy = root / "model"
    shutil.copytree(tiny_world.model_dir, model_copy)
    ledger = Ledger.init(root)
    ws = Workspace(ledger)
    ws.add_model("tiny", model_copy, corpus=tiny_world.corpus_path)
    ws.edit(tiny_world.requests()[:2], batch_size=2, author="setup")
    ledger.close()
    return root, model_copy


def _state(capsys, root: Path) -> tuple[list[str], dict[str, str]]:
    log = [v["commit_hash"] for v in run_cli(capsys, root, "log", "--json", "--limit", "1000").json()]
    return log, {b["name"]: b["head_hash"] for b in run_cli(capsys, root, "branch", "--json").json()}


def _refused(capsys, root: Path, args: list, needles: list[str], code: int = 2) -> None:
    before = _state(capsys, root)
    result = run_cli(capsys, root, *args)
    assert result.code == code, (args, result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert _state(capsys, root) == before


# A fact in the tiny world's words (its word-level tokenizer codes other words as <unk>, which edit refuses).
KNOWN = ["--subject", "Boris Zalkroukrous", "--prompt", "The mother tongue of {}", "--target", "Spanish"]

MALFORMED = {
    "counterfact.json": ([{"case_id": 0, "requested_rewrite": {"prompt": "{} plays", "subject": "X",
                                                       "target_true": {"str": "a"}}}], ["record 0", "target_new"]),
    "zsre.json": ([{"subject": "X", "src": "What does X play?", "answers": ["a"], "rephrase": "r", "loc": "l",
                    "loc_ans": "m"}], ["record 0", "alt"]),
    "knowedit.json": ([{"subject": "X", "prompt": "X plays", "ground_truth": "a", "target_new": ""}],
                ["record 0", "target_new"]),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_json_request_files(small_ledger, capsys, name):
    root, _ = small_ledger
    records, needles = MALFORMED[name]
    path = root / name
    path.write_text(json.dumps(records))
    _refused(capsys, root, ["edit", path, "--format", name.split(".")[0]], [name, *needles])


def test_malformed_jsonl_and_csv(small_ledger, capsys):
    root, _ = small_ledger
    jsonl = root / "bad.jsonl"
    jsonl.write_text('{"subject": "A", "prompt": "{} plays", "target_new": "b"}\n{"subject": "B", "prompt": "no slot"'
                     ', "target_new": "c"}\n')
    _refused(capsys, root, ["edit", jsonl], ["bad.jsonl", "record 1", "prompt"])
    csv = root / "bad.csv"
    csv.write_text("subject,prompt\nA,{} plays\n")
    _refused(capsys, root, ["edit", csv], ["bad.csv", "target_new"])


def test_unknown_method_unknown_model_and_not_a_ledger(small_ledger, capsys, tmp_path):
    root, _ = small_ledger
    _refused(capsys, root, ["edit", "--subject", "A", "--prompt", "{} x", "--target", "y", "--method", "magic"],
             ["--method", "magic"])
    _refused(capsys, root, ["stats", "nosuchmodel", "--corpus", root / "ledger.db"], ["corpus"])
    result = run_cli(capsys, tmp_path, "log")
    assert result.code == 2 and "editledger init" in result.stderr


def test_a_batch_larger_than_memory_is_refused_up_front(small_ledger, capsys, monkeypatch):
    root, _ = small_ledger
    monkeypatch.setenv("EDITLEDGER_MAX_MEMORY", "1000")
    _refused(capsys, root, ["edit", *KNOWN], ["--batch-size", "GiB"])


def test_a_base_model_with_other_weights_is_refused(small_ledger, tiny_world_release2, capsys):
    root, model_copy = small_ledger
    original = (model_copy / "model.safetensors").read_bytes()
    try:
        shutil.copy(tiny_world_release2.model_dir / "model.safetensors", model_copy / "model.safetensors")
        _refused(capsys, root, ["edit", *KNOWN], ["base model 'tiny'", "state hash"])
        _refused(capsys, root, ["checkout", "main", "--out", root / "never"], ["state hash"])
        assert not (root / "never").exists()
    finally:
        (model_copy / "model.safetensors").write_bytes(original)


def test_a_missing_blob_is_named(small_ledger, capsys):
    root, _ = small_ledger
    ledger = Ledger.open(root)
    delta = next(a for a in ledger.show("main").artifacts if a.role == "delta")
    path = ledger.store.path(delta.sha256)
    saved = path.read_bytes()
    path.unlink()
    try:
        _refused(capsys, root, ["checkout", "main", "--out", root / "never"], [delta.sha256[:12]])
        _refused(capsys, root, ["verify"], [delta.sha256[:12]], code=1)
    finally:
        path.write_bytes(saved)
        ledger.close()
    assert run_cli(capsys, root, "verify").code == 0


def test_schema_behind_and_ahead(small_ledger, capsys):
    from sqlalchemy import create_engine, text

    root, _ = small_ledger
    url = f"sqlite:///{root / '.editledger' / 'ledger.db'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        head = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        connection.execute(text("UPDATE alembic_version SET version_num = 'ffffffffffff'"))
    try:
        result = run_cli(capsys, root, "log")
        assert result.code == 2 and "newer" in result.stderr.lower()
    finally:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})
        engine.dispose()
    assert run_cli(capsys, root, "log").code == 0


@pytest.mark.parametrize("subject", ["Robert'); DROP TABLE versions;--", "$(rm -rf ~) `id` | ; &&", "Zoë Ångström 北京",
                                     "x" * 5000])
def test_hostile_strings_are_stored_verbatim_or_refused(small_ledger, capsys, subject):
    root, _ = small_ledger
    before = _state(capsys, root)
    result = run_cli(capsys, root, "edit", "--subject", subject, "--prompt", "{} lives in", "--target", "Paris",
                     "--author", "fuzz")
    if result.code == 0:
        events = run_cli(capsys, root, "history", "--subject", subject, "--json").json()
        assert events and all(e["subject"] == subject for e in events)
    else:
        assert result.code == 2 and len(result.stderr.strip().splitlines()) == 1
        assert _state(capsys, root) == before
    assert run_cli(capsys, root, "verify").code == 0


def test_no_pickle_is_ever_loaded():
    pattern = re.compile(r"torch\.load\(|pickle\.loads?\(|import pickle|weights_only\s*=\s*False")
    offenders = [str(p.relative_to(REPO)) for folder in ("ledger", "editor", "migrations", "benchmarks", "commands")
                 for p in (REPO / folder).rglob("*.py") if pattern.search(p.read_text())]
    offenders += ["cli.py"] if pattern.search((REPO / "cli.py").read_text()) else []
    assert offenders == []


def test_hyperparameter_overrides_are_checked_then_recorded(small_ledger, capsys):
    root, _ = small_ledger
    single = ["edit", *KNOWN, "--method", "memit"]
    _refused(capsys, root, [*single, "--set", "v_num_grad_steps"], ["--set", "KEY=VALUE"])
    _refused(capsys, root, [*single, "--set", "no_such_knob=3"], ["--set no_such_knob", "unknown hyperparameter"])
    edited = run_cli(capsys, root, *single, "--set", "v_num_grad_steps=7", "--set", "clamp_norm_factor=5.5", "--json")
    assert edited.code == 0, edited.stderr
    commit = edited.json()[0]["commit_hash"]
    recorded = run_cli(capsys, root, "show", commit, "--json").json()["version"]["hparams"]
    assert recorded["v_num_grad_steps"] == 7 and recorded["clamp_norm_factor"] == 5.5
    assert "v_num_grad_steps=7" in run_cli(capsys, root, "show", commit).stdout


def test_edit_input_is_checked_before_the_model_loads(small_ledger, tiny_world, tiny_world_release2, capsys):
    """With other weights in the base's directory, a check made after loading would end in "state hash":
    each of these names its own cause instead, so it was made before."""
    root, model_copy = small_ledger
    two = root / "two.jsonl"
    two.write_text("".join(json.dumps({"subject": r.subject, "prompt": r.prompt, "target_new": r.target_new}) + "\n"
                           for r in tiny_world.requests()[2:4]))
    original = (model_copy / "model.safetensors").read_bytes()
    try:
        shutil.copy(tiny_world_release2.model_dir / "model.safetensors", model_copy / "model.safetensors")
        _refused(capsys, root, ["edit", *KNOWN, "--set", "layers=[99]"], ["--set layers=[99]", "blocks 0..3"])
        _refused(capsys, root, ["edit", *KNOWN, "--set", "layers=3"], ["--set layers=3", "list of block indices"])
        _refused(capsys, root, ["edit", *KNOWN, "--set", "v_lr=abc"], ['--set v_lr="abc"', "expected a number"])
        _refused(capsys, root, ["edit", two, "--method", "rome"], ["--batch-size 20", "rome", "--batch-size 1"])
        _refused(capsys, root, ["edit", "--subject", "Boris Zalkroukrous", "--prompt", "The mother tongue of",
                                "--target", "Spanish"], ["request 0", "prompt", "{}"])
        _refused(capsys, root, ["edit", "--subject", "Anna Tester", "--prompt", "The mother tongue of {}",
                                "--target", "Spanish"], ["subject 'Anna Tester'", "unknown token"])
        _refused(capsys, root, ["edit", *KNOWN[:4], "--target", "Klingon"], ["target_new 'Klingon'", "unknown token"])
    finally:
        (model_copy / "model.safetensors").write_bytes(original)


def test_bad_model_directories_and_request_files(small_ledger, tiny_world, capsys):
    root, _ = small_ledger
    _refused(capsys, root, ["model", "add", "ghost", "--path", root / "no-such-model"],
             ["model directory", "no-such-model", "not found"])
    pickled = root / "pickle-only"
    pickled.mkdir(exist_ok=True)
    shutil.copy(tiny_world.model_dir / "config.json", pickled / "config.json")
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04not loaded, ever")
    _refused(capsys, root, ["model", "add", "pickled", "--path", pickled], ["pytorch_model.bin", "safetensors"])
    garbage = root / "garbage.json"
    garbage.write_bytes(bytes(range(128, 256)) * (5 * 2**20 // 128))
    _refused(capsys, root, ["edit", garbage], ["garbage.json", "UTF-8"])
    no_target = root / "no-target.jsonl"
    no_target.write_text(json.dumps({"subject": "Boris Zalkroukrous", "prompt": "The mother tongue of {}"}) + "\n")
    _refused(capsys, root, ["edit", no_target], ["no-target.jsonl", "record 0", "'target_new'", "missing"])


def test_skip_invalid_reports_what_it_skipped(small_ledger, tiny_world, capsys):
    root, _ = small_ledger
    request = tiny_world.requests()[5]
    mixed = root / "mixed.jsonl"
    mixed.write_text("\n".join([
        json.dumps({"subject": request.subject, "prompt": request.prompt, "target_new": request.target_new}),
        json.dumps({"subject": "X", "prompt": "no slot", "target_new": "y"}),
        json.dumps({"subject": "X", "prompt": "{} z"}),
    ]) + "\n")
    before = len(_state(capsys, root)[0])
    result = run_cli(capsys, root, "edit", mixed, "--skip-invalid")
    assert result.code == 0, result.stderr
    skipped = next(line for line in result.stderr.splitlines() if line.startswith("skipped"))
    assert skipped.startswith("skipped 2 invalid records: record 1: field 'prompt'")
    assert "record 2: field 'target_new': missing" in skipped
    assert len(_state(capsys, root)[0]) == before + 1
