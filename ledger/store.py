"""Blob stores: content-addressed, every blob named by the sha256 of its bytes and re-hashed on every read.

`ContentStore` is the interface the ledger and the engine use. `BlobStore` keeps blobs in a local directory
(`root/ab/cdef...`, the embedded default); `ledger.object_store.ObjectBlobStore` keeps them in object storage
(S3 and its compatibles) behind the same interface. Callers never assume a blob has a local path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from ledger.errors import BlobCorruptError, BlobMissingError, InvalidBlobAddressError
from ledger.faults import fault_point
from ledger.records import canonical_json

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
INDEX_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
TEMP_PREFIX = ".tmp-"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def validate_sha(sha: str) -> str:
    """Return `sha` if it is a blob address; refuse anything else (so no address can escape the store)."""
    if not isinstance(sha, str) or not SHA256_HEX.fullmatch(sha):
        raise InvalidBlobAddressError(f"invalid blob address {sha!r}: expected 64 lowercase hex characters")
    return sha


def checked_blob(sha: str, data: bytes, where: str) -> bytes:
    """`data` if it hashes to `sha`; a blob whose bytes do not match is refused, naming it."""
    actual = sha256_hex(data)
    if actual != sha:
        raise BlobCorruptError(f"blob {sha} is corrupt in {where}: its bytes hash to {actual}")
    return data


def validate_index_entry(kind: str, key: str) -> None:
    if not (INDEX_NAME.fullmatch(kind) and INDEX_NAME.fullmatch(key)) or len(kind) < 3:
        raise InvalidBlobAddressError(f"invalid index entry {kind!r}/{key!r}")


def parsed_index(text: str | bytes) -> dict[str, Any] | None:
    try:
        entry = json.loads(text)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; some filesystems refuse to open a directory, which is fine to skip.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, durable: bool = False) -> None:
    """Write `data` to a temporary file beside `path`, then rename it there: readers see all of it or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as temp:
            temp.write(data)
            if durable:
                temp.flush()
                os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


class Index(Protocol):
    """Somewhere to keep index entries: a store's shared indexes, or this machine's own."""

    def read_index(self, kind: str, key: str) -> dict[str, Any] | None: ...

    def write_index(self, kind: str, key: str, entry: dict[str, Any]) -> None: ...


class DirectoryIndex:
    """Small JSON files under `root/<kind>/<key>.json` that find blobs by another key. They are caches: a
    missing or broken entry is no entry."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def index_path(self, kind: str, key: str) -> Path:
        validate_index_entry(kind, key)
        return self.root / kind / f"{key}.json"

    def write_index(self, kind: str, key: str, entry: dict[str, Any]) -> None:
        write_atomically(self.index_path(kind, key), canonical_json(entry).encode("utf-8"))

    def read_index(self, kind: str, key: str) -> dict[str, Any] | None:
        try:
            return parsed_index(self.index_path(kind, key).read_text(encoding="utf-8"))
        except OSError:
            return None

    def indexed_blobs(self) -> set[str]:
        """Every blob that an index entry names."""
        named: set[str] = set()
        if not self.root.is_dir():
            return named
        for folder in self.root.iterdir():
            if folder.is_dir() and len(folder.name) > 2 and INDEX_NAME.fullmatch(folder.name):
                for path in folder.glob("*.json"):
                    entry = self.read_index(folder.name, path.stem) if INDEX_NAME.fullmatch(path.stem) else None
                    if entry and isinstance(entry.get("blob"), str):
                        named.add(entry["blob"])
        return named


class ContentStore(ABC):
    """What the ledger and the engine need of a blob store, wherever its blobs live.

    Guarantees every implementation keeps: a blob is named by the sha256 of its bytes; `get` re-hashes what it
    read and refuses a mismatch naming the blob; `put` never makes part of a blob visible and does not rewrite a
    blob that is there (only refreshes its time, see `gc_grace_seconds`).

    Indexes (`read_index` / `write_index`) are shared caches kept beside the blobs (statistics by model and
    corpus, a version's snapshot by commit); `machine_index` holds the ones that describe this machine's own
    files (remembered digests of a base model directory) and so must not be shared between machines."""

    #: Where the blobs are, for messages (a directory or a URL).
    location: str
    #: `gc` deletes an unreferenced blob only when it was last written longer ago than this (seconds). A writer
    #: puts its blobs before it appends the version naming them, and `put` refreshes the time of a blob that is
    #: already there, so a blob a writer is about to reference is never older than its round.
    gc_grace_seconds: float = 0.0

    @abstractmethod
    def has(self, sha: str) -> bool: ...

    @abstractmethod
    def put(self, data: bytes) -> str:
        """Store `data` under its sha256 and return that address."""

    @abstractmethod
    def get(self, sha: str) -> bytes:
        """The blob's bytes, checked against its address."""

    def check(self, sha: str) -> None:
        """Read the blob where it is kept (past any local cache) and check its hash."""
        self.get(sha)

    @abstractmethod
    def size(self, sha: str) -> int:
        """The blob's size in bytes."""

    @abstractmethod
    def delete(self, sha: str) -> None: ...

    @abstractmethod
    def iter_blobs(self) -> Iterator[tuple[str, float]]:
        """(address, time last written as seconds since the epoch) of every blob in the store."""

    @abstractmethod
    def modified(self, sha: str) -> float | None:
        """When the blob was last written (seconds since the epoch); None when it is not there."""

    def iter_hashes(self) -> Iterator[str]:
        """Every blob address in the store (temporary files of unfinished writes are not blobs)."""
        for sha, _ in self.iter_blobs():
            yield sha

    @abstractmethod
    def read_index(self, kind: str, key: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def write_index(self, kind: str, key: str, entry: dict[str, Any]) -> None: ...

    @abstractmethod
    def indexed_blobs(self) -> set[str]:
        """Every blob that an index entry names: caches that `gc` keeps."""

    @abstractmethod
    def check_reachable(self) -> None:
        """Fail now, with a one-line error, if the store cannot be used."""

    @property
    @abstractmethod
    def machine_index(self) -> DirectoryIndex:
        """Indexes that describe this machine's own files."""


class BlobStore(ContentStore):
    """Blobs in a local directory at `root/ab/cdef...`, with the indexes beside them."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.location = str(self.root)
        self._index = DirectoryIndex(self.root)

    def path(self, sha: str) -> Path:
        validate_sha(sha)
        return self.root / sha[:2] / sha[2:]

    def has(self, sha: str) -> bool:
        return self.path(sha).is_file()

    def put(self, data: bytes) -> str:
        """Store `data`; a crash at any point leaves either no blob or the whole blob, never a part of it."""
        sha = sha256_hex(data)
        final = self.path(sha)
        if final.is_file():
            with contextlib.suppress(OSError):  # a read-only store: nothing there to protect from a gc
                os.utime(final)  # a writer is about to reference it: `gc --grace` must see it as fresh
            return sha
        fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self.root)
        try:
            with os.fdopen(fd, "wb") as temp:
                temp.write(data)
                temp.flush()
                os.fsync(temp.fileno())
            fault_point("store.put.before_replace")
            final.parent.mkdir(exist_ok=True)
            os.replace(temp_name, final)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        _fsync_dir(final.parent)
        return sha

    def get(self, sha: str) -> bytes:
        """The blob's bytes, re-hashed on every read."""
        try:
            data = self.path(sha).read_bytes()
        except FileNotFoundError:
            raise BlobMissingError(f"blob {sha} is missing from the store {self.root}") from None
        actual = sha256_hex(data)
        if actual != sha:
            raise BlobCorruptError(f"blob {sha} is corrupt: its bytes hash to {actual}")
        return data

    def size(self, sha: str) -> int:
        try:
            return self.path(sha).stat().st_size
        except FileNotFoundError:
            raise BlobMissingError(f"blob {sha} is missing from the store {self.root}") from None

    def modified(self, sha: str) -> float | None:
        try:
            return self.path(sha).stat().st_mtime
        except FileNotFoundError:
            return None

    def index_path(self, kind: str, key: str) -> Path:
        return self._index.index_path(kind, key)

    def write_index(self, kind: str, key: str, entry: dict[str, Any]) -> None:
        self._index.write_index(kind, key, entry)

    def read_index(self, kind: str, key: str) -> dict[str, Any] | None:
        return self._index.read_index(kind, key)

    def indexed_blobs(self) -> set[str]:
        return self._index.indexed_blobs()

    def check_reachable(self) -> None:
        return None  # the directory was created when the store was opened

    @property
    def machine_index(self) -> DirectoryIndex:
        return self._index  # a local store is this machine's own

    def delete(self, sha: str) -> None:
        try:
            self.path(sha).unlink()
        except FileNotFoundError:
            raise BlobMissingError(f"blob {sha} is missing from the store {self.root}") from None

    def iter_blobs(self) -> Iterator[tuple[str, float]]:
        for fan in sorted(self.root.iterdir()):
            if not (fan.is_dir() and len(fan.name) == 2):
                continue
            for entry in sorted(fan.iterdir()):
                sha = fan.name + entry.name
                if SHA256_HEX.fullmatch(sha):
                    try:
                        stat = entry.stat()
                    except FileNotFoundError:
                        continue  # deleted while listing
                    if entry.is_file():
                        yield sha, stat.st_mtime
