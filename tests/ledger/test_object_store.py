"""The object-storage blob store against a real S3-compatible server (moto's, over HTTP through s3fs): the same
guarantees as the local store, a read-through cache, gc's grace period, and one-line errors."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.errors import BlobCorruptError, BlobMissingError, InvalidBlobAddressError, StoreUnavailableError
from ledger.object_store import BlobCache, ObjectBlobStore, open_store
from tests.ledger.helpers import build_chain
from tests.s3 import S3Server


def _store(server: S3Server, tmp_path: Path, bucket: str, cache_max: int = 1 << 30) -> ObjectBlobStore:
    server.make_bucket(bucket)
    return ObjectBlobStore(f"s3://{bucket}/team/blobs", BlobCache(tmp_path / "cache", cache_max))


def test_put_get_layout_listing_and_delete(s3_env: S3Server, tmp_path: Path) -> None:
    store = _store(s3_env, tmp_path, "layout")
    store.check_reachable()  # an empty bucket is a store with no blobs yet
    assert list(store.iter_blobs()) == [] and store.indexed_blobs() == set()
    sha = store.put(b"weights")
    assert sha == hashlib.sha256(b"weights").hexdigest()
    key = f"team/blobs/{sha[:2]}/{sha[2:]}"
    assert s3_env.client().get_object(Bucket="layout", Key=key)["Body"].read() == b"weights"
    assert store.has(sha) and store.get(sha) == b"weights" and store.size(sha) == 7
    assert store.put(b"weights") == sha
    other = store.put(b"")
    assert sorted(store.iter_hashes()) == sorted([sha, other])
    store.write_index("snapshot-index", "k1", {"blob": sha})
    assert store.read_index("snapshot-index", "k1") == {"blob": sha}
    assert store.read_index("snapshot-index", "absent") is None
    assert store.indexed_blobs() == {sha}
    assert sorted(store.iter_hashes()) == sorted([sha, other])  # index entries are not blobs
    store.delete(other)
    assert not store.has(other) and store.has(sha)
    with pytest.raises(BlobMissingError, match=other):
        store.get(other)
    with pytest.raises(InvalidBlobAddressError):
        store.get("../../etc/passwd")
    # this machine's indexes (remembered base digests) stay on this machine
    store.machine_index.write_index("digest-index", "k2", {"files": {}})
    assert (tmp_path / "cache" / "indexes" / "digest-index" / "k2.json").is_file()
    assert not any("digest-index" in o["Key"]
                   for o in s3_env.client().list_objects_v2(Bucket="layout").get("Contents", []))


def test_every_read_is_rehashed_in_the_bucket_and_in_the_cache(s3_env: S3Server, tmp_path: Path) -> None:
    store = _store(s3_env, tmp_path, "rehash")
    sha = store.put(b"0123456789")
    s3_env.client().put_object(Bucket="rehash", Key=f"team/blobs/{sha[:2]}/{sha[2:]}", Body=b"0123456788")
    # the writer's cache still holds the right bytes (content-addressed, so a good copy stays good)...
    assert store.get(sha) == b"0123456789"
    # ...but the bucket's copy is checked where it is, and a cold cache refuses it, naming the blob
    with pytest.raises(BlobCorruptError, match=sha):
        store.check(sha)
    cold = ObjectBlobStore("s3://rehash/team/blobs", BlobCache(tmp_path / "cold", 1 << 30))
    with pytest.raises(BlobCorruptError, match=sha):
        cold.get(sha)
    assert not cold.cache.path(sha).exists()  # nothing bad is cached
    # a damaged cached copy is dropped and fetched again
    good = store.put(b"good bytes")
    cold.get(good)
    cold.cache.path(good).write_bytes(b"bad bytes!")
    assert cold.get(good) == b"good bytes" and cold.cache.path(good).read_bytes() == b"good bytes"


def test_the_cache_keeps_under_its_size_limit_least_recently_used_out(s3_env: S3Server, tmp_path: Path) -> None:
    store = _store(s3_env, tmp_path, "cachelimit", cache_max=2500)
    shas = [store.put(bytes([i]) * 1000) for i in range(3)]
    assert store.cache.total_bytes() <= 2500
    assert not store.cache.path(shas[0]).exists() and store.cache.path(shas[2]).exists()
    time.sleep(0.01)
    assert store.get(shas[1])  # used: now the most recent
    store.get(shas[0])  # fetched from the bucket; evicts the least recently used, shas[2]
    assert store.cache.path(shas[0]).exists() and store.cache.path(shas[1]).exists()
    assert not store.cache.path(shas[2]).exists() and store.cache.total_bytes() <= 2500
    store.put(b"x" * 5000)  # larger than the whole cache: kept only in the bucket
    assert store.cache.total_bytes() <= 2500


def test_put_does_not_rewrite_a_fresh_blob_and_refreshes_an_old_one(s3_env: S3Server, tmp_path: Path) -> None:
    store = _store(s3_env, tmp_path, "refresh")
    sha = store.put(b"blob")
    first = store.modified(sha)
    time.sleep(1.1)  # LastModified has one-second resolution
    store.put(b"blob")
    assert store.modified(sha) == first  # younger than half the grace period: not uploaded again
    store.gc_grace_seconds = 1.0
    store.put(b"blob")
    assert store.modified(sha) > first  # older: put again, so a gc running now sees it as fresh


def test_gc_deletes_only_unreferenced_blobs_older_than_the_grace_period(s3_env: S3Server, tmp_path: Path) -> None:
    s3_env.make_bucket("gc-bucket")
    ledger = Ledger.init(tmp_path / "gc", store_dir="s3://gc-bucket/team")
    assert isinstance(ledger.store, ObjectBlobStore)
    (_, edit) = build_chain(ledger, 1)
    (referenced,) = [a.sha256 for a in ledger.show(edit.commit_hash).artifacts]
    indexed = ledger.store.put(b"snapshot")
    ledger.store.write_index("snapshot-index", "s", {"blob": indexed})
    orphan = ledger.store.put(b"left by a lost race")
    assert ledger.gc() == []  # default grace for object storage: one hour
    assert ledger.gc(grace_seconds=0) == [orphan]
    assert ledger.gc(dry_run=False, grace_seconds=0) == [orphan]
    assert not ledger.store.has(orphan) and ledger.store.has(referenced) and ledger.store.has(indexed)
    assert ledger.verify().ok
    ledger.close()


def test_store_failures_are_one_line_errors(s3_env: S3Server, tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(StoreUnavailableError, match=r"bucket 'no-such-bucket' does not exist"):
        open_store("s3://no-such-bucket/team", tmp_path / "c").put(b"x")
    monkeypatch.setenv("EDITLEDGER_S3_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(StoreUnavailableError, match=r"cannot reach the endpoint") as caught:
        open_store("s3://any/team", tmp_path / "c").get("a" * 64)
    assert "\n" not in str(caught.value) and "http://127.0.0.1:9" in str(caught.value)
