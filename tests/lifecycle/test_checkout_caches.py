"""The checkout's caches. Remembered base digests: a checkout hashes only the tensors that edits wrote, and a
changed base file is still caught, even when its size and modification time were put back. Snapshots: a long
history is read once, later checkouts start from the kept tensors, and a damaged snapshot is passed over."""

from __future__ import annotations

import os
import shutil

import pytest

from editor import hashing, versions
from editor.lifecycle import SNAPSHOT_INDEX, LifecycleError, Workspace
from ledger import Ledger


@pytest.fixture()
def copied(tiny_world, tmp_path):
    """A ledger with three NSE rounds whose base model is a private copy that the test may damage."""
    model = tmp_path / "model"
    shutil.copytree(tiny_world.model_dir, model)
    ledger = Ledger.init(tmp_path)
    ws = Workspace(ledger)
    ws.add_model("tiny", model, corpus=tiny_world.corpus_path)
    *_, version = ws.edit(tiny_world.requests()[:6], batch_size=2, author="tests")
    yield ws, model, version
    ledger.close()


def _recorded_arguments(monkeypatch, module, function: str, which: int = 0) -> list:
    """Wrap `module.function` so that each call records its argument number `which`."""
    seen: list = []
    original = getattr(module, function)
    monkeypatch.setattr(module, function, lambda *args: seen.append(args[which]) or original(*args))
    return seen


def test_a_checkout_rehashes_only_the_written_tensors(copied, monkeypatch):
    ws, _, version = copied
    ws.checkout_model(version.commit_hash)  # remembers the base's digests if the edit had not already
    hashed = _recorded_arguments(monkeypatch, hashing, "tensor_digest")
    loaded, info = ws.checkout_model(version.commit_hash)
    written = {name for name in loaded.model.state_dict() if ".mlp." in name and name.endswith("proj.weight")}
    assert hashed and set(hashed) <= written
    assert hashing.state_hash(loaded.model) == info.state_hash
    hashed.clear()
    ws.full_verify = True
    ws.checkout_model(version.commit_hash)
    assert set(hashed) >= set(loaded.model.state_dict())  # every tensor, once for the base and again if written


def test_a_base_changed_in_place_with_its_times_put_back_is_refused(copied):
    ws, model, version = copied
    ws.checkout_model(version.commit_hash)
    weights = model / "model.safetensors"
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one bit of the last tensor's last byte
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert weights.stat().st_size == stat.st_size and weights.stat().st_mtime_ns == stat.st_mtime_ns
    with pytest.raises(LifecycleError, match=r"base model 'tiny'.*state hash"):
        ws.checkout_model(version.commit_hash)


def test_broken_remembered_digests_are_ignored(copied):
    ws, _, version = copied
    ws.checkout_model(version.commit_hash)
    entries = list((ws.ledger.store.root / hashing.DIGEST_INDEX_DIR).iterdir())
    assert entries
    for entry in entries:
        entry.write_text("{not json")
    loaded, info = ws.checkout_model(version.commit_hash)
    assert hashing.state_hash(loaded.model) == info.state_hash


def test_a_second_checkout_starts_from_the_snapshot(copied, monkeypatch):
    ws, _, version = copied
    history = ws.ledger.ancestry_artifacts(version.commit_hash)
    deltas = {a.sha256 for _, artifacts in history for a in artifacts if a.role == "delta"}
    read = _recorded_arguments(monkeypatch, versions, "get_tensors", which=1)  # the blobs a checkout reads
    ws.checkout_model(version.commit_hash)
    assert deltas <= set(read)
    (entry,) = (ws.ledger.store.root / SNAPSHOT_INDEX).iterdir()
    read.clear()
    loaded, info = ws.checkout_model(version.commit_hash)
    assert not deltas & set(read) and len(read) == 1  # the snapshot alone
    assert hashing.state_hash(loaded.model) == info.state_hash
    # gc keeps it: an index names it.
    assert not set(ws.ledger.gc()) & set(read)
    # A damaged snapshot is refused by its blob hash and passed over: the history is read again.
    path = ws.ledger.store.path(read[0])
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    read.clear()
    loaded, info = ws.checkout_model(version.commit_hash)
    assert deltas <= set(read) and hashing.state_hash(loaded.model) == info.state_hash
    assert entry.is_file()
