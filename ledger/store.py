"""Content-addressed blob store: every blob lives at `root/ab/cdef...`, named by the sha256 of its bytes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

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

    # Indexes: small JSON files beside the blobs that find cached blobs by another key (statistics by model and
    # corpus, a version's snapshot by commit). They are caches: a missing or broken entry is no entry.
    def index_path(self, kind: str, key: str) -> Path:
        if not (INDEX_NAME.fullmatch(kind) and INDEX_NAME.fullmatch(key)) or len(kind) < 3:
            raise InvalidBlobAddressError(f"invalid index entry {kind!r}/{key!r}")
        return self.root / kind / f"{key}.json"

    def write_index(self, kind: str, key: str, entry: dict[str, Any]) -> None:
        path = self.index_path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(canonical_json(entry))
        os.replace(temp, path)

    def read_index(self, kind: str, key: str) -> dict[str, Any] | None:
        try:
            entry = json.loads(self.index_path(kind, key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return entry if isinstance(entry, dict) else None

    def indexed_blobs(self) -> set[str]:
        """Every blob that an index entry names: caches that `gc` keeps."""
        named: set[str] = set()
        for folder in self.root.iterdir():
            if folder.is_dir() and len(folder.name) > 2:
                for path in folder.glob("*.json"):
                    entry = self.read_index(folder.name, path.stem) if INDEX_NAME.fullmatch(path.stem) else None
                    if entry and isinstance(entry.get("blob"), str):
                        named.add(entry["blob"])
        return named

    def delete(self, sha: str) -> None:
        try:
            self.path(sha).unlink()
        except FileNotFoundError:
            raise BlobMissingError(f"blob {sha} is missing from the store {self.root}") from None

    def iter_hashes(self) -> Iterator[str]:
        """Every blob address in the store (temporary files of unfinished writes are not blobs)."""
        for fan in sorted(self.root.iterdir()):
            if not (fan.is_dir() and len(fan.name) == 2):
                continue
            for entry in sorted(fan.iterdir()):
                sha = fan.name + entry.name
                if entry.is_file() and SHA256_HEX.fullmatch(sha):
                    yield sha
