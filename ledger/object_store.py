"""Blobs in object storage, behind the same `ContentStore` interface as the local directory store.

The protocol is spoken by fsspec with s3fs (`s3://bucket/prefix`); `gs://` (gcsfs) and `az://` (adlfs) go through
the same fsspec calls once their package is installed. fsspec rather than obstore: s3fs is the most used Python
S3 client (it is what pandas, dask and Hugging Face datasets use), it rides on botocore so credentials, profiles
and endpoints come from the usual AWS configuration, and one interface covers every object store, so this module
holds no protocol code of its own.

The layout in the bucket is the local store's: `prefix/ab/cdef...` for blobs, `prefix/<kind>/<key>.json` for the
shared indexes. Guarantees:
- every read is re-hashed (the local cache's copy too); a blob whose bytes do not match is refused, naming it;
- a PUT is atomic (an object is visible whole or not at all, multipart uploads included); `put` asks whether the
  blob is there first and does not upload it again, except to refresh the time of a blob older than half the
  gc grace period (identical bytes), so that `gc` sees it as fresh;
- `gc` deletes an unreferenced blob only when its LastModified is older than the grace period (1 hour by
  default), checked again just before the delete.

Remote blobs read once are kept in a local read-through cache (`BlobCache`): content-addressed, so never stale,
and bounded in size (least recently used first out).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import fsspec

from ledger.errors import BlobCorruptError, BlobMissingError, LedgerError, StoreUnavailableError
from ledger.faults import fault_point
from ledger.records import canonical_json
from ledger.store import (
    INDEX_NAME,
    SHA256_HEX,
    TEMP_PREFIX,
    BlobStore,
    ContentStore,
    DirectoryIndex,
    checked_blob,
    parsed_index,
    sha256_hex,
    validate_index_entry,
    validate_sha,
    write_atomically,
)

ENDPOINT_VARIABLES = ("EDITLEDGER_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
TIMEOUT_VARIABLE = "EDITLEDGER_STORE_TIMEOUT"
CACHE_DIR_VARIABLE = "EDITLEDGER_CACHE_DIR"
CACHE_MAX_VARIABLE = "EDITLEDGER_CACHE_MAX_BYTES"
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_CACHE_MAX_BYTES = 4 << 30
DEFAULT_GC_GRACE_SECONDS = 3600.0
TIMEOUT_ERRORS = {"ReadTimeoutError", "ConnectTimeoutError", "TimeoutError", "FSTimeoutError", "ServerTimeoutError"}
CONNECTION_ERRORS = {"EndpointConnectionError", "ConnectionError", "ClientConnectorError", "ConnectionClosedError",
                     "ClientOSError", "ServerDisconnectedError"}
CREDENTIAL_ERRORS = {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}
Result = TypeVar("Result")


def is_store_url(location: str | Path) -> bool:
    """Whether a `--store` value names object storage (`s3://...`) rather than a local directory."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def default_cache_dir(ledger_dir: Path | None) -> Path:
    """EDITLEDGER_CACHE_DIR, else `.editledger/cache` of the ledger found here, else the user's cache."""
    if os.environ.get(CACHE_DIR_VARIABLE):
        return Path(os.environ[CACHE_DIR_VARIABLE])
    if ledger_dir is not None:
        return ledger_dir / "cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "editledger"


def open_store(location: str | Path, cache_dir: Path) -> ContentStore:
    """The store a `--store` value names: a URL opens object storage (with a read-through cache in
    `cache_dir`), anything else is a local directory."""
    text = str(location)
    if is_store_url(text):
        return ObjectBlobStore(text, BlobCache(cache_dir, _cache_max_bytes()))
    return BlobStore(Path(text.removeprefix("file://")))


def _positive_number(variable: str, default: float) -> float:
    text = os.environ.get(variable)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise LedgerError(f"{variable}={text!r}: expected a positive number")
    return value


def _cache_max_bytes() -> int:
    return int(_positive_number(CACHE_MAX_VARIABLE, DEFAULT_CACHE_MAX_BYTES))


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _timestamp(info: dict[str, Any]) -> float | None:
    """An object's last-modified time from a listing entry, whichever backend wrote it."""
    for key in ("LastModified", "last_modified", "updated", "mtime"):
        value = info.get(key)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


class BlobCache:
    """A local read-through cache of remote blobs, at `root/blobs/ab/cdef...`: content-addressed (a cached blob
    is re-hashed when read and dropped if it does not match), at most `max_bytes` in all, least recently used
    first out. `root/indexes/` holds this machine's own indexes."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.index = DirectoryIndex(self.root / "indexes")

    def path(self, sha: str) -> Path:
        return self.root / "blobs" / sha[:2] / sha[2:]

    def get(self, sha: str) -> bytes | None:
        path = self.path(sha)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if sha256_hex(data) != sha:
            path.unlink(missing_ok=True)  # a damaged copy: fetch it again
            return None
        os.utime(path)  # recently used
        return data

    def size(self, sha: str) -> int | None:
        try:
            return self.path(sha).stat().st_size
        except OSError:
            return None

    def put(self, sha: str, data: bytes) -> None:
        """Keep a copy if it fits; a cache that cannot be written (disk full, a race with an eviction) is only
        a slower cache, never a failed operation."""
        if len(data) > self.max_bytes or self.path(sha).is_file():
            return
        try:
            write_atomically(self.path(sha), data)
            self._evict()
        except OSError:
            pass

    def discard(self, sha: str) -> None:
        self.path(sha).unlink(missing_ok=True)

    def total_bytes(self) -> int:
        return sum(size for _, _, size in self._entries())

    def _entries(self) -> list[tuple[float, Path, int]]:
        entries = []
        for path in (self.root / "blobs").glob("*/*"):
            if path.name.startswith(TEMP_PREFIX):
                continue  # another process's copy being written
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            entries.append((stat.st_mtime, path, stat.st_size))
        return entries

    def _evict(self) -> None:
        entries = sorted(self._entries(), key=lambda entry: entry[0])
        total = sum(size for _, _, size in entries)
        for _, path, size in entries:
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size


class ObjectBlobStore(ContentStore):
    """Blobs at `<url>/ab/cdef...` in object storage, read through a local `BlobCache`."""

    gc_grace_seconds = DEFAULT_GC_GRACE_SECONDS

    def __init__(self, url: str, cache: BlobCache) -> None:
        self.protocol, _, path = url.partition("://")
        self.root = path.strip("/")
        self.bucket = self.root.split("/", 1)[0]
        if not self.bucket:
            raise LedgerError(f"--store {url!r}: no bucket in the URL (expected {self.protocol}://BUCKET/PREFIX)")
        self.location = self.url = f"{self.protocol}://{self.root}"
        self.cache = cache
        self.timeout = _positive_number(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT_SECONDS)
        self.endpoint = next((os.environ[v] for v in ENDPOINT_VARIABLES if os.environ.get(v)), None)
        options: dict[str, Any] = {"skip_instance_cache": True}
        if self.protocol in ("s3", "s3a"):
            options |= {
                "endpoint_url": self.endpoint,
                "use_listings_cache": False,  # a listing cached by this process must not hide another's writes
                "config_kwargs": {"connect_timeout": self.timeout, "read_timeout": self.timeout,
                                  "retries": {"max_attempts": 2, "mode": "standard"}},
            }
        try:
            self.fs = fsspec.filesystem(self.protocol, **options)
        except ImportError as error:
            raise LedgerError(f"--store {url}: the {self.protocol}:// backend is not installed "
                              f"({_first_line(error)}); install editledger[s3]") from None
        except ValueError as error:
            raise LedgerError(f"--store {url}: {_first_line(error)}") from None
        if hasattr(self.fs, "retries"):
            self.fs.retries = 1  # s3fs's retry loop would multiply botocore's attempts: keep a dead endpoint quick

    def __repr__(self) -> str:
        return f"ObjectBlobStore({self.url})"

    # -------------------------------------------------------------------------- errors
    def _call(self, operation: Callable[..., Result], *args: Any, **kwargs: Any) -> Result:
        """Run one filesystem call; failures of the store itself become one-line `StoreUnavailableError`s. A
        missing object stays `FileNotFoundError` for the caller to name."""
        where = f"store {self.url}" + (f" at {self.endpoint}" if self.endpoint else "")
        try:
            return operation(*args, **kwargs)
        except FileNotFoundError as error:
            if "NoSuchBucket" in repr(error.__cause__) or "bucket does not exist" in str(error):
                raise StoreUnavailableError(f"{where}: bucket {self.bucket!r} does not exist") from None
            raise
        except PermissionError as error:
            raise StoreUnavailableError(
                f"{where}: access denied ({_first_line(error)}); check the credentials in the environment "
                "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE)") from None
        except Exception as error:
            names = {cls.__name__ for cls in type(error).__mro__}
            if names & TIMEOUT_ERRORS:
                raise StoreUnavailableError(
                    f"{where}: timed out (no answer within {self.timeout:g} s, {TIMEOUT_VARIABLE})") from None
            if names & CONNECTION_ERRORS:
                raise StoreUnavailableError(f"{where}: cannot reach the endpoint ({_first_line(error)})") from None
            if names & CREDENTIAL_ERRORS:
                raise StoreUnavailableError(
                    f"{where}: no credentials ({_first_line(error)}); set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY or AWS_PROFILE") from None
            if isinstance(error, OSError) or names & {"BotoCoreError", "ClientError", "ClientResponseError"}:
                raise StoreUnavailableError(f"{where}: {type(error).__name__}: {_first_line(error)}") from None
            raise

    # -------------------------------------------------------------------------- blobs
    def _key(self, sha: str) -> str:
        validate_sha(sha)
        return f"{self.root}/{sha[:2]}/{sha[2:]}"

    def _missing(self, sha: str) -> BlobMissingError:
        return BlobMissingError(f"blob {sha} is missing from the store {self.url}")

    def _head(self, sha: str) -> dict[str, Any] | None:
        try:
            return self._call(self.fs.info, self._key(sha))
        except FileNotFoundError:
            return None

    def has(self, sha: str) -> bool:
        return self._head(sha) is not None

    def put(self, data: bytes) -> str:
        sha = sha256_hex(data)
        there = self._head(sha)
        if there is not None:
            written = _timestamp(there)
            if written is None or time.time() - written < self.gc_grace_seconds / 2:
                self.cache.put(sha, data)
                return sha
        fault_point("store.put.before_upload")
        self._call(self.fs.pipe_file, self._key(sha), data)  # one PUT: the object appears whole or not at all
        self.cache.put(sha, data)
        return sha

    def _fetch(self, sha: str) -> bytes:
        try:
            return self._call(self.fs.cat_file, self._key(sha))
        except FileNotFoundError:
            raise self._missing(sha) from None

    def get(self, sha: str) -> bytes:
        validate_sha(sha)
        cached = self.cache.get(sha)  # re-hashed by the cache
        if cached is not None:
            return cached
        data = checked_blob(sha, self._fetch(sha), self.url)
        self.cache.put(sha, data)
        return data

    def check(self, sha: str) -> None:
        """Read the blob from the bucket itself (not the cache) and check its hash."""
        validate_sha(sha)
        data = self._fetch(sha)
        if sha256_hex(data) != sha:
            raise BlobCorruptError(f"blob {sha} is corrupt in {self.url}: its bytes hash to {sha256_hex(data)}")

    def size(self, sha: str) -> int:
        validate_sha(sha)
        cached = self.cache.size(sha)
        if cached is not None:
            return cached
        info = self._head(sha)
        if info is None:
            raise self._missing(sha)
        return int(info["size"])

    def modified(self, sha: str) -> float | None:
        info = self._head(sha)
        return None if info is None else (_timestamp(info) or time.time())

    def delete(self, sha: str) -> None:
        if self._head(sha) is None:
            raise self._missing(sha)
        self._call(self.fs.rm_file, self._key(sha))
        self.cache.discard(sha)

    def _listing(self) -> dict[str, dict[str, Any]]:
        """Every object under the prefix, by its path relative to the prefix."""
        try:
            found = self._call(self.fs.find, self.root, detail=True)
        except FileNotFoundError:
            return {}
        return {name[len(self.root) + 1:]: info for name, info in found.items() if name.startswith(self.root + "/")}

    def iter_blobs(self) -> Iterator[tuple[str, float]]:
        for relative, info in sorted(self._listing().items()):
            fan, _, rest = relative.partition("/")
            if len(fan) == 2 and SHA256_HEX.fullmatch(fan + rest):
                yield fan + rest, _timestamp(info) or time.time()  # no time: treat as just written

    # -------------------------------------------------------------------------- indexes
    def _index_key(self, kind: str, key: str) -> str:
        validate_index_entry(kind, key)
        return f"{self.root}/{kind}/{key}.json"

    def read_index(self, kind: str, key: str) -> dict[str, Any] | None:
        try:
            return parsed_index(self._call(self.fs.cat_file, self._index_key(kind, key)))
        except FileNotFoundError:
            return None

    def write_index(self, kind: str, key: str, entry: dict[str, Any]) -> None:
        self._call(self.fs.pipe_file, self._index_key(kind, key), canonical_json(entry).encode("utf-8"))

    def indexed_blobs(self) -> set[str]:
        paths = []
        for relative in self._listing():
            kind, _, name = relative.partition("/")
            if len(kind) > 2 and INDEX_NAME.fullmatch(kind) and name.endswith(".json") and "/" not in name:
                paths.append(f"{self.root}/{relative}")
        named: set[str] = set()
        if paths:
            for text in self._call(self.fs.cat, paths, on_error="omit").values():
                entry = parsed_index(text)
                if entry and isinstance(entry.get("blob"), str):
                    named.add(entry["blob"])
        return named

    @property
    def machine_index(self) -> DirectoryIndex:
        return self.cache.index

    # -------------------------------------------------------------------------- joining
    def check_reachable(self) -> None:
        """Fail now, with a one-line error, if the bucket cannot be listed (endpoint, bucket, credentials)."""
        self._call(self.fs.ls, self.bucket, detail=False)  # one level: bounded by the fan-out, not the blobs
