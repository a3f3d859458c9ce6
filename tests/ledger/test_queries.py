"""Audit reads over a small history with a revert and a second branch, on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import func, select, update

from ledger import ConflictError, Ledger, LedgerError, UnknownRefError, VersionInfo, writing
from ledger.db import transaction
from ledger.models import Base, VersionRoundRow
from ledger.records import EditRequest, RevertRecord, RoundRecord, Score
from tests.ledger.helpers import add_base, make_draft, make_request


@dataclass
class History:
    base: VersionInfo
    e1: VersionInfo
    e2: VersionInfo
    e3: VersionInfo
    revert: VersionInfo
    a: EditRequest
    b: EditRequest
    c: EditRequest
    d: EditRequest


@pytest.fixture
def history(ledger: Ledger) -> History:
    a, b, c = make_request("a", "Paris"), make_request("b"), make_request("c", "Rome")
    d = make_request("d", "Paris")
    base = add_base(ledger)
    e1 = ledger.append_version(make_draft(ledger, "e1", [a, b]), "main", base.commit_hash)
    e2 = ledger.append_version(make_draft(ledger, "e2", [c], neurons=(7, 8)), "main", e1.commit_hash)
    e3 = ledger.append_version(make_draft(ledger, "e3", [d], layer=2, neurons=(7,)), "main", e2.commit_hash)
    reverting = make_draft(ledger, "r", [c, d], roles=["reverted", "replayed"], kind="revert")
    reverting.revert = RevertRecord(anchor=e1.commit_hash, rounds=(RoundRecord(e3.commit_hash, (d.request_key,)),))
    revert = ledger.append_version(reverting, "main", e3.commit_hash)
    return History(base, e1, e2, e3, revert, a, b, c, d)


def row_counts(ledger: Ledger) -> dict[str, int]:
    with transaction(ledger.engine) as session:
        return {
            t.name: session.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables
        }


def test_log_pages_newest_first_and_ancestry(ledger: Ledger, history: History) -> None:
    h = history
    assert [v.commit_hash for v in ledger.log("main", limit=2)] == [h.revert.commit_hash, h.e3.commit_hash]
    assert [v.commit_hash for v in ledger.log("main", limit=2, offset=2)] == [
        h.e2.commit_hash,
        h.e1.commit_hash,
    ]
    assert [v.kind for v in ledger.log("main", limit=2, offset=4)] == ["base"]
    assert ledger.log("main", limit=5, offset=5) == []
    assert [v.commit_hash for v in ledger.ancestry("main")] == [
        v.commit_hash for v in (h.base, h.e1, h.e2, h.e3, h.revert)
    ]
    top = ledger.log("main", limit=1)[0]
    assert (top.parent_hash, top.depth, top.n_requests, top.base_model) == (h.e3.commit_hash, 4, 2, "tiny")
    assert top.hparams == {"layers": [1, 2], "lr": 0.1, "tag": "r"}
    with pytest.raises(UnknownRefError, match="'nope'"):
        ledger.log("nope")


def test_show_returns_what_was_recorded(ledger: Ledger, history: History) -> None:
    draft = make_draft(ledger, "e1", [history.a, history.b])
    detail = ledger.show(history.e1.commit_hash)
    assert [(e.request, e.role, e.position) for e in detail.requests] == [
        (history.a, "edited", 0),
        (history.b, "edited", 1),
    ]
    request, role, position = detail.requests[1]  # entries unpack too
    assert (request.request_key, role, position) == (history.b.request_key, "edited", 1)
    assert detail.footprint == draft.footprint
    assert detail.outcomes == draft.outcomes
    assert detail.artifacts == draft.artifacts
    assert detail.scores == draft.scores
    ledger.record_scores(history.e1.commit_hash, [Score("locality", 0.75, suite="counterfact")])
    assert ledger.scores(history.e1.commit_hash)[-1] == Score("locality", 0.75, None, "counterfact")


def test_resolve_by_prefix_tag_branch_and_ancestor(ledger: Ledger, history: History) -> None:
    h = history
    assert ledger.resolve(h.e2.commit_hash[:7]).commit_hash == h.e2.commit_hash
    assert ledger.resolve("main").commit_hash == h.revert.commit_hash
    assert ledger.resolve("main~2").commit_hash == h.e2.commit_hash
    assert ledger.resolve("main~~").commit_hash == h.e2.commit_hash
    ledger.tag("v1", "main~1")
    assert ledger.tags() == {"v1": h.e3.commit_hash}
    assert ledger.resolve("v1~3").commit_hash == h.base.commit_hash
    for bad in ("main~9", "unknown", "ab", "main~x", h.e1.commit_hash[:3]):
        with pytest.raises(UnknownRefError):
            ledger.resolve(bad)
    with pytest.raises(LedgerError, match="already exists"):
        ledger.tag("v1", "main")
    with pytest.raises(LedgerError, match="not allowed"):
        ledger.tag("bad~name", "main")


def test_history_by_subject_and_request(ledger: Ledger, history: History) -> None:
    h = history
    events = ledger.history(subject="Rome")
    assert [(e.commit_hash, e.event) for e in events] == [
        (h.e2.commit_hash, "edited"),
        (h.e2.commit_hash, "evaluated"),
        (h.revert.commit_hash, "reverted"),
        (h.revert.commit_hash, "evaluated"),
    ]
    assert events[0].detail == {"status": "edited", "residual_before": 2.5, "residual_after": 0.125}
    by_key = ledger.history(request=h.c.request_key[:10])
    assert by_key == events
    paris = ledger.history(subject="Paris")  # two facts share the subject
    assert {e.request_key for e in paris} == {h.a.request_key, h.d.request_key}
    assert [e.event for e in paris if e.request_key == h.d.request_key] == ["edited", "evaluated", "replayed"]
    assert ledger.request(h.d.request_key[:8]).request == h.d
    with pytest.raises(UnknownRefError):
        ledger.request("ffff" * 4)


def test_blame_and_diff(ledger: Ledger, history: History) -> None:
    h = history
    blamed = ledger.blame(1, 7)
    assert [e.commit_hash for e in blamed] == [h.e2.commit_hash]
    assert [e.commit_hash for e in ledger.blame(2, 7)] == [h.e3.commit_hash]
    assert [e.commit_hash for e in ledger.blame(2, 5)] == [
        h.e1.commit_hash,
        h.e2.commit_hash,
        h.revert.commit_hash,
    ]
    assert ledger.blame(0, 999) == []

    forward = ledger.diff(h.e1.commit_hash, "main")  # c was added by e2 and reverted: only d remains added
    assert [r.request_key for r in forward.added] == [h.d.request_key]
    assert forward.removed == [] and forward.merge_base == h.e1.commit_hash
    assert forward.versions == [h.e2.commit_hash, h.e3.commit_hash, h.revert.commit_hash]
    layer1 = next(layer for layer in forward.layers if layer.layer == 1)
    assert layer1.neurons == (3, 7, 8, 17, 40) and layer1.n_versions == 2
    backward = ledger.diff("main", "main~3")
    assert [r.request_key for r in backward.removed] == [h.d.request_key] and backward.added == []

    ledger.create_branch("exp", "main~2", actor="tests")
    side = ledger.append_version(make_draft(ledger, "side"), "exp", h.e2.commit_hash)
    fork = ledger.diff("main", "exp")
    assert fork.merge_base == h.e2.commit_hash
    assert fork.versions == [h.e3.commit_hash, h.revert.commit_hash, side.commit_hash]
    assert [b.name for b in ledger.branches()] == ["exp", "main"]
    assert [e.new_hash for e in ledger.ref_log("exp")] == [side.commit_hash, h.e2.commit_hash]


def test_a_refused_append_writes_nothing(ledger: Ledger, history: History) -> None:
    before = row_counts(ledger)
    fresh = make_draft(ledger, "late", [make_request("new fact")])
    with pytest.raises(
        ConflictError, match=r"branch 'main' moved: expected .{12}, now .{12}; nothing was written"
    ):
        ledger.append_version(fresh, "main", expected_head=history.e3.commit_hash)
    assert row_counts(ledger) == before
    broken = make_draft(ledger, "broken", [make_request("other fact")])
    broken.outcomes[0] = type(broken.outcomes[0])("f" * 64, 1.0, 0.5, "edited")
    with pytest.raises(LedgerError, match="outcome names request ffffffffffff"):
        ledger.append_version(broken, "main", expected_head=history.revert.commit_hash)
    missing_blob = make_draft(ledger, "no blob")
    ledger.store.delete(missing_blob.artifacts[0].sha256)
    with pytest.raises(LedgerError, match="artifact 'delta'"):
        ledger.append_version(missing_blob, "main", expected_head=history.revert.commit_hash)
    nan = make_draft(ledger, "nan")
    nan.hparams["lr"] = float("nan")
    with pytest.raises(LedgerError, match="draft hparams"):
        ledger.append_version(nan, "main", expected_head=history.revert.commit_hash)
    assert row_counts(ledger) == before
    assert ledger.verify().ok


def test_base_models_branches_and_gc(ledger: Ledger, history: History) -> None:
    assert [m.name for m in ledger.base_models()] == ["tiny"]
    assert ledger.base_model("tiny").config == {"n_layer": 4, "n_embd": 128}
    with pytest.raises(LedgerError, match="already recorded"):
        add_base(ledger, branch="other")
    second = add_base(ledger, name="tiny-v2", branch="v2")
    assert ledger.branch("v2").head_hash == second.commit_hash and second.parent_hash is None
    with pytest.raises(LedgerError, match="is not the base of branch 'v2'"):
        ledger.append_version(make_draft(ledger, "x"), "v2", second.commit_hash)
    refused_blob = make_draft(ledger, "x").artifacts[0].sha256  # put by the refused draft, never recorded
    orphan = ledger.store.put(b"nobody refers to me")
    stats = ledger.store.put(b"statistics")
    in_audit_only = ledger.store.put(b"named by an audit event only")
    ledger.record_audit("stats", "tests", None, {"blobs": {"1": in_audit_only}})
    recorded = ledger.record_statistics("tiny", "/corpus.txt", "c" * 64, 100, "float32", {1: stats})
    assert ledger.record_statistics("tiny", "/corpus.txt", "c" * 64, 100, "float32", {1: stats}) == recorded
    assert ledger.statistics("tiny") == [recorded] and recorded.blobs == {1: stats}
    with pytest.raises(LedgerError, match="layer 2: blob"):
        ledger.record_statistics("tiny", "/corpus.txt", "c" * 64, 100, "float32", {2: "d" * 64})
    # gc keeps what a statistics record names, not what an audit event mentions
    assert sorted(ledger.gc()) == sorted([orphan, refused_blob, in_audit_only])
    assert len(ledger.gc(dry_run=False)) == 3 and not ledger.store.has(orphan) and ledger.store.has(stats)
    assert [e.kind for e in ledger.audit_events(limit=2)] == ["gc", "stats"]
    assert ledger.gc() == [] and ledger.verify().ok
    with pytest.raises(LedgerError, match="audit event kind 'party'"):
        ledger.record_audit("party", "tests", None, {})


def test_rounds_lineage_and_the_typed_revert_record(ledger: Ledger, history: History) -> None:
    h = history
    rounds = ledger.rounds("main")
    assert [r.identity for r in rounds] == [
        (h.e1.commit_hash, (h.a.request_key, h.b.request_key)),
        (h.e3.commit_hash, (h.d.request_key,)),
    ]
    lineage = ledger.lineage("main")
    last = lineage.steps[-1]
    assert (last.start, last.reverted, last.reverted_version) == (h.e1.commit_hash, (h.c.request_key,), None)
    assert [r.request_key for r in lineage.live_requests(h.e2.commit_hash)] == [
        h.a.request_key,
        h.b.request_key,
        h.c.request_key,
    ]
    assert lineage.anchor(rounds) == (h.revert.commit_hash, 2)  # the latest version with exactly these rounds
    assert lineage.anchor(rounds[:1]) == (h.e1.commit_hash, 1)
    assert lineage.anchor(lineage.rounds(h.e3.commit_hash)) == (h.e3.commit_hash, 3)
    assert lineage.anchor(rounds[1:]) == (h.base.commit_hash, 0)  # the base always qualifies
    assert lineage.own_round(h.e2.commit_hash).request_keys == (h.c.request_key,)
    replayed = (RoundRecord(h.e3.commit_hash, (h.d.request_key,)),)
    assert ledger.show("main").revert == RevertRecord(h.e1.commit_hash, replayed)
    assert ledger.show("main~1").revert is None

    unrecorded = make_draft(ledger, "r2", [h.a], roles=["reverted"], kind="revert")
    with pytest.raises(LedgerError, match="only a revert, records its anchor"):
        ledger.append_version(unrecorded, "main", h.revert.commit_hash)
    ledger.create_branch("side", h.e1.commit_hash)
    elsewhere = make_draft(ledger, "r3", [h.a], roles=["reverted"], kind="revert")
    elsewhere.revert = RevertRecord(anchor=h.e2.commit_hash, rounds=())  # e2 is not an ancestor of side
    with pytest.raises(LedgerError, match=f"anchor {h.e2.commit_hash[:12]} is not an ancestor"):
        ledger.append_version(elsewhere, "side", h.e1.commit_hash)
    assert ledger.verify().ok


def test_tampering_a_revert_record_is_named(ledger: Ledger, history: History) -> None:
    with transaction(ledger.engine, write=True) as session:
        session.execute(update(VersionRoundRow).values(source_version_id=history.e2.id))
    report = ledger.verify()
    assert not report.ok and history.revert.commit_hash in report.problems[0]


def test_a_revert_recorded_before_schema_0002_is_read_from_extra(
    ledger: Ledger, history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = history
    old = make_draft(ledger, "old", [h.d], roles=["reverted"], kind="revert")
    old.extra = {"anchor": h.e1.commit_hash, "rounds": [], "reverted": [h.d.request_key]}
    monkeypatch.setattr(writing, "check_draft", lambda draft, store: None)  # as schema 0001's writer appended it
    version = ledger.append_version(old, "main", h.revert.commit_hash)
    assert [r.source for r in ledger.rounds("main")] == [h.e1.commit_hash]
    assert ledger.lineage("main").steps[-1].start == h.e1.commit_hash
    assert [r.request_key for r in ledger.diff(h.e1.commit_hash, version.commit_hash).added] == []
    assert ledger.verify().ok
