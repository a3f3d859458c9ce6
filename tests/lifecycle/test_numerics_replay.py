"""Replays on other CPUs' kernels: a portable ledger replays bit-exactly under forced kernel paths; a native one
replayed there says which numerics differ, how far the weights are, and whether the requests ended the same."""

from __future__ import annotations

import json

import pytest

from editor.lifecycle import Workspace
from ledger import Ledger
from tests.lifecycle.cli_helpers import run_subprocess

# The kernel paths other CPUs select, forced on this one: an AVX2 machine, and one with neither AVX2 nor AVX-512
# in ATen (every x86-64 CI machine records AVX2 or AVX-512 natively, so this one surely differs from the recording).
OTHER_CPUS = ({"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"},
              {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "AVX2"})


def _ledger(root, world, numerics: str):
    requests = world.requests()[:9]
    lines = [json.dumps({"subject": r.subject, "prompt": r.prompt, "target_new": r.target_new}) for r in requests]
    (root / "requests.jsonl").write_text("\n".join(lines) + "\n")
    ledger = Ledger.init(root)
    Workspace(ledger).add_model("tiny", world.model_dir, corpus=world.corpus_path)
    ledger.close()
    # the edit from the command line: a portable one starts itself again on the pinned kernels
    done = run_subprocess(root, "edit", root / "requests.jsonl", "--batch-size", "3", "--numerics", numerics, "--json")
    assert done.code == 0, done.stderr
    return root


@pytest.fixture(scope="module")
def portable_ledger(tiny_world, tmp_path_factory):
    return _ledger(tmp_path_factory.mktemp("portable"), tiny_world, "portable")


@pytest.fixture(scope="module")
def native_ledger(tiny_world, tmp_path_factory):
    return _ledger(tmp_path_factory.mktemp("native"), tiny_world, "native")


def _replay(root, env: dict[str, str] | None = None) -> tuple[int, dict]:
    done = run_subprocess(root, "verify", "--replay", "--json", env=env)
    return done.code, json.loads(done.stdout)


def test_a_portable_ledger_replays_bit_exactly_on_other_cpus_kernels(portable_ledger):
    versions = run_subprocess(portable_ledger, "log", "--json").json()
    assert [v["environment"]["numerics"] for v in versions[:-1]] == ["portable"] * 3
    assert all(v["environment"]["cpu_capability"] == "DEFAULT" for v in versions[:-1])
    for env in OTHER_CPUS:
        code, report = _replay(portable_ledger, env)
        assert code == 0 and report["ok"], report["problems"]
        assert [s["replayed_state_hash"] == s["recorded_state_hash"] for s in report["replay"]] == [True] * 4


def test_a_native_ledger_replayed_on_other_kernels_says_what_differs_and_how_far(native_ledger):
    code, same = _replay(native_ledger)
    assert code == 0 and all(s["replayed_state_hash"] == s["recorded_state_hash"] for s in same["replay"])
    code, other = _replay(native_ledger, OTHER_CPUS[1])
    assert code == 0 and other["ok"]  # another CPU's numerics: no bit-exact promise was broken
    differ = [s for s in other["replay"] if s["replayed_state_hash"] != s["recorded_state_hash"]]
    assert differ and all(s["kind"] == "edit" for s in differ)
    for step in differ:
        assert step["bit_exact_promised"] is False
        assert step["numerics_differ"]["cpu_capability"][1] == "DEFAULT"
        assert 0 < step["distance"] < 1e-2  # rounding-level differences, not another model
        assert step["outcomes_same"] in (True, False)
    human = run_subprocess(native_ledger, "verify", "--replay", env=OTHER_CPUS[1])
    assert human.code == 0 and "different numerics" in human.stdout and "cpu_capability" in human.stdout
