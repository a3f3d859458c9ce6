"""The blob store: content addressed, written atomically, re-hashed on read, closed to path tricks."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.store import BlobCorruptError, BlobMissingError, BlobStore, InvalidBlobAddressError

REPO = Path(__file__).resolve().parents[2]


def test_put_get_layout_and_listing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    sha = store.put(b"weights")
    assert sha == hashlib.sha256(b"weights").hexdigest()
    assert store.path(sha) == tmp_path / "blobs" / sha[:2] / sha[2:]
    assert store.get(sha) == b"weights"
    assert store.put(b"weights") == sha  # idempotent
    other = store.put(b"")
    assert sorted(store.iter_hashes()) == sorted([sha, other])
    store.delete(other)
    assert not store.has(other) and store.has(sha)
    assert list(tmp_path.joinpath("blobs").glob(".tmp-*")) == []


def test_reads_are_rehashed_and_missing_blobs_named(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    sha = store.put(b"0123456789")
    path = store.path(sha)
    path.write_bytes(b"0123456788")
    with pytest.raises(BlobCorruptError, match=sha):
        store.get(sha)
    absent = hashlib.sha256(b"never stored").hexdigest()
    with pytest.raises(BlobMissingError, match=absent):
        store.get(absent)
    with pytest.raises(BlobMissingError, match=absent):
        store.delete(absent)


@pytest.mark.parametrize(
    "address",
    ["../../etc/passwd", "A" * 64, "a" * 63, "a" * 65, "/" + "a" * 63, "ab/" + "c" * 61, "", "g" * 64],
)
def test_addresses_that_are_not_sha256_are_refused(tmp_path: Path, address: str) -> None:
    store = BlobStore(tmp_path / "blobs")
    for operation in (store.path, store.get, store.has, store.delete):
        with pytest.raises(InvalidBlobAddressError, match="invalid blob address"):
            operation(address)


def test_a_put_killed_before_its_rename_leaves_no_blob(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from ledger.store import BlobStore\n"
        "BlobStore(Path(sys.argv[1])).put(b'x' * 100000)"
    )
    env = {**os.environ, "EDITLEDGER_KILL_AT": "store.put.before_replace", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, timeout=60
    )
    assert result.returncode == -9  # SIGKILL, as a power cut would
    store = BlobStore(tmp_path)
    sha = hashlib.sha256(b"x" * 100000).hexdigest()
    assert not store.has(sha)
    assert list(store.iter_hashes()) == []  # the half-written temp file is not a blob
    assert len(list(tmp_path.glob(".tmp-*"))) == 1
    assert store.put(b"x" * 100000) == sha and store.get(sha) == b"x" * 100000


def test_gc_grace_on_the_local_store_uses_the_files_time_and_put_refreshes_it(tmp_path: Path) -> None:
    from ledger import Ledger

    ledger = Ledger.init(tmp_path)
    old, fresh = ledger.store.put(b"left by a lost race yesterday"), ledger.store.put(b"put a moment ago")
    yesterday = os.stat(ledger.store.path(old)).st_mtime - 86_400
    os.utime(ledger.store.path(old), (yesterday, yesterday))
    assert sorted(ledger.gc()) == sorted([old, fresh])  # a local store's default grace is 0, as before
    assert ledger.gc(grace_seconds=3600) == [old]
    ledger.store.put(b"left by a lost race yesterday")  # a writer about to reference it puts it again
    assert ledger.gc(dry_run=False, grace_seconds=3600) == [] and ledger.store.has(old)
    ledger.close()
