"""Property (stateful): random sequences of edit, revert of a request, revert of a revert, branch at any version,
checkout and replay on the tiny world. After every step the head's state hash equals a fresh replay, from the base,
of exactly the live requests in their original rounds (the oracle, kept here as a plain map: request -> the
version that first applied it), every version checks out to its recorded hash, and `verify` passes.

CI runs a few examples; `EDITLEDGER_PROPERTY_EXAMPLES` / `EDITLEDGER_PROPERTY_STEPS` set a longer run."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from editor.hashing import state_hash
from editor.lifecycle import LifecycleError, Round, Workspace
from ledger import Ledger

EXAMPLES = int(os.environ.get("EDITLEDGER_PROPERTY_EXAMPLES", "3"))
STEPS = int(os.environ.get("EDITLEDGER_PROPERTY_STEPS", "6"))
POOL = 8  # requests the machine edits from

WORLD: dict[str, Any] = {}  # the session's tiny world, set by the test (a state machine takes no fixtures)
RUN = {"examples": 0, "steps": 0}


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        world = WORLD["tiny"]
        self.tmp = tempfile.TemporaryDirectory(prefix="editledger-property-")
        self.ledger = Ledger.init(Path(self.tmp.name))
        self.ws = Workspace(self.ledger)
        self.base = self.ws.add_model("tiny", world.model_dir, corpus=world.corpus_path, author="hypothesis")
        self.pool = world.requests()[:POOL]
        self.by_key = {r.request_key: r for r in self.pool}
        self.branch = "main"
        # The oracle: per version, its live requests -> the version that first applied each.
        self.live: dict[str, dict[str, str]] = {self.base.commit_hash: {}}
        self.applied: dict[str, tuple[int, tuple[str, ...], dict]] = {}  # source -> (depth, keys, hparams)
        self.removed: dict[str, dict[str, str]] = {}  # revert -> what it removed (request -> source)
        self.expected: dict[tuple, str] = {}  # oracle rounds -> state hash of their fresh replay
        self.checked: set[str] = set()
        RUN["examples"] += 1

    def teardown(self) -> None:
        self.ledger.close()
        self.tmp.cleanup()

    # ------------------------------------------------------------------ helpers
    def head(self) -> str:
        return self.ledger.resolve(self.branch).commit_hash

    def oracle_rounds(self, commit: str) -> list[Round]:
        """The live requests of `commit` in their original rounds, rounds in the order they were first applied."""
        live = self.live[commit]
        rounds = []
        for source in sorted(set(live.values()), key=lambda s: self.applied[s][0]):
            _, keys, hparams = self.applied[source]
            requests = tuple(self.by_key[k] for k in keys if live.get(k) == source)
            rounds.append(Round(source, requests, "nse", hparams))
        return rounds

    def ancestry(self) -> list[str]:
        return [v.commit_hash for v in self.ledger.ancestry(self.branch)]

    # ------------------------------------------------------------------ rules
    @rule(first=st.integers(0, POOL - 1), two=st.booleans())
    def edit(self, first: int, two: bool) -> None:
        head = self.head()
        free = [r for r in self.pool if r.request_key not in self.live[head]]
        if not free:
            return
        picks = [free[(first + i) % len(free)] for i in range(min(len(free), 2 if two else 1))]
        (version,) = self.ws.edit(picks, branch=self.branch, batch_size=len(picks), author="hypothesis")
        keys = tuple(r.request_key for r in picks)
        self.applied[version.commit_hash] = (version.depth, keys, version.hparams)
        self.live[version.commit_hash] = {**self.live[head], **dict.fromkeys(keys, version.commit_hash)}
        RUN["steps"] += 1

    @rule(pick=st.integers(0, 99))
    def revert_request(self, pick: int) -> None:
        head = self.head()
        live = self.live[head]
        if not live:
            return
        key = sorted(live)[pick % len(live)]
        version = self.ws.revert(key, branch=self.branch, reason="property")
        self.removed[version.commit_hash] = {key: live[key]}
        self.live[version.commit_hash] = {k: s for k, s in live.items() if k != key}
        RUN["steps"] += 1

    @rule(pick=st.integers(0, 99))
    def revert_a_revert(self, pick: int) -> None:
        reverts = [c for c in self.ancestry() if c in self.removed]
        if not reverts:
            return
        target = reverts[pick % len(reverts)]
        live = self.live[self.head()]
        restorable = {k: s for k, s in self.removed[target].items() if k not in live}
        if not restorable:  # it removed nothing, or what it removed is live again
            with pytest.raises(LifecycleError, match="nothing to restore"):
                self.ws.revert(target, branch=self.branch)
            return
        version = self.ws.revert(target, branch=self.branch, reason="property: undo")
        self.removed[version.commit_hash] = {}
        self.live[version.commit_hash] = {**live, **restorable}
        RUN["steps"] += 1

    @rule(pick=st.integers(0, 99))
    def branch_at_any_version(self, pick: int) -> None:
        versions = sorted(self.live, key=lambda c: self.ledger.resolve(c).id)
        at = versions[pick % len(versions)]
        self.branch = f"b{len(self.ledger.branches())}"
        self.ledger.create_branch(self.branch, at, actor="hypothesis")
        RUN["steps"] += 1

    @rule(pick=st.integers(0, 99))
    def checkout(self, pick: int) -> None:
        chain = self.ancestry()
        _, version = self.ws.checkout_model(chain[pick % len(chain)])
        assert version.commit_hash == chain[pick % len(chain)]
        RUN["steps"] += 1

    @rule()
    def replay(self) -> None:
        steps = self.ws.replay_same_base(self.branch)
        assert all(step.ok for step in steps), [s for s in steps if not s.ok]
        RUN["steps"] += 1

    # ------------------------------------------------------------------ after every step
    @invariant()
    def head_equals_a_fresh_replay_of_the_live_requests(self) -> None:
        head = self.head()
        rounds = self.oracle_rounds(head)
        assert [r.identity for r in self.ledger.rounds(head)] == [r.identity for r in rounds]
        identity = tuple(r.identity for r in rounds)
        if identity not in self.expected:
            fresh = self.ws.replay_rounds(self.base.commit_hash, rounds, recorded_in=head)
            self.expected[identity] = state_hash(fresh.model)
        assert self.ledger.resolve(head).state_hash == self.expected[identity]

    @invariant()
    def every_version_checks_out_and_verify_passes(self) -> None:
        for commit in [c for c in self.live if c not in self.checked]:  # versions never change once recorded
            _, version = self.ws.checkout_model(commit)  # raises if the rebuilt state hash differs
            self.checked.add(version.commit_hash)
        assert self.ledger.verify().ok


def test_random_histories_match_a_fresh_replay_of_the_live_requests(tiny_world):
    WORLD["tiny"] = tiny_world
    RUN.update(examples=0, steps=0)
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, derandomize=True,
                          suppress_health_check=list(HealthCheck)),
    )
    print(f"property: {RUN['examples']} examples, {RUN['steps']} steps")
    assert RUN["steps"] > 0
