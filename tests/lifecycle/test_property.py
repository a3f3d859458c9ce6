"""Property: after any sequence of edit / revert / branch / checkout, every version checks out to its state hash."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from editor.lifecycle import LifecycleError, Workspace
from ledger import Ledger

STEP = st.one_of(
    st.tuples(st.just("edit"), st.integers(0, 11)),
    st.tuples(st.just("revert"), st.integers(0, 5)),
    st.tuples(st.just("branch"), st.integers(0, 3)),
    st.tuples(st.just("checkout"), st.integers(0, 8)),
)


@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(STEP, min_size=3, max_size=4))
def test_random_histories_check_out_exactly(tiny_world, steps):
    requests = tiny_world.requests()[:12]
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger.init(Path(tmp))
        ws = Workspace(ledger)
        ws.add_model("tiny", tiny_world.model_dir, corpus=tiny_world.corpus_path)
        branch = "main"
        for op, arg in steps:
            if op == "edit":
                ws.edit([requests[arg]], branch=branch, batch_size=1, author="hypothesis")
            elif op == "revert":
                edited = [r for round_ in ws.rounds_of(branch) for r in round_.requests]
                if edited:
                    ws.revert(edited[arg % len(edited)].request_key, branch=branch, reason="property")
            elif op == "branch":
                log = ledger.log(branch, limit=100)
                name = f"b{len(ledger.branches())}"
                ledger.create_branch(name, log[arg % len(log)].commit_hash)
                branch = name
            else:
                versions = ledger.log(branch, limit=100)
                ws.checkout_model(versions[arg % len(versions)].commit_hash)
            for b in ledger.branches():
                for version in ledger.log(b.name, limit=100):
                    try:
                        ws.checkout_model(version.commit_hash)
                    except LifecycleError as error:  # a checkout that does not match its hash fails the property
                        raise AssertionError(f"{op}: {error}") from error
        assert ledger.verify().ok
        ledger.close()
