"""The state hash of a model: what a version's weights are, independent of file formats and hardware.

sha256 over (name, dtype, shape, raw bytes) of every state_dict tensor in name order, each tensor hashed on
its own and the digests combined into one root. Tensors move to CPU one at a time: no full copy of the model.
The bytes are hashed in place (a buffer view, no copy), several tensors at once: hashlib releases the GIL on
large buffers, and hashing, not loading, is what a verified checkout spends its time on.

Like git's index, `BaseDigests` keeps the per-tensor digests of a base model directory that hashed to its
recorded state hash, with the (size, mtime, ctime, inode) of every file in it: while no file changed, a checkout
hashes only the tensors that edits wrote and takes the others' digests from there. Any write to a file changes
its ctime, which no user can set, so a changed base is hashed in full again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import nn

from ledger.records import canonical_json
from ledger.store import Index

HASH_THREADS = min(4, os.cpu_count() or 1)
THREADED_BYTES = 32 << 20  # below this, starting threads costs more than it saves
DIGEST_INDEX_DIR = "digest-index"


def tensor_digest(name: str, tensor: torch.Tensor) -> bytes:
    cpu = tensor.detach().to("cpu").contiguous()
    header = canonical_json([name, str(cpu.dtype).removeprefix("torch."), list(cpu.shape)]).encode()
    digest = hashlib.sha256(header)
    digest.update(b"\0")
    if cpu.numel():
        # A uint8 view reads the raw bytes of any dtype (bf16 and fp8 included, which numpy cannot hold).
        digest.update(memoryview(cpu.reshape(-1).view(torch.uint8).numpy()))
    return digest.digest()


def tensor_digests(
    model_or_tensors: nn.Module | Mapping[str, torch.Tensor], known: Mapping[str, bytes] | None = None
) -> dict[str, bytes]:
    """Every tensor's digest; those in `known` are taken from it instead of hashed."""
    tensors = model_or_tensors.state_dict() if isinstance(model_or_tensors, nn.Module) else model_or_tensors
    known = known or {}
    todo = [name for name in tensors if name not in known]
    digest_of = lambda name: tensor_digest(name, tensors[name])  # noqa: E731
    if sum(tensors[name].numel() * tensors[name].element_size() for name in todo) < THREADED_BYTES:
        hashed = {name: digest_of(name) for name in todo}
    else:
        with ThreadPoolExecutor(HASH_THREADS) as pool:
            hashed = dict(zip(todo, pool.map(digest_of, todo), strict=True))
    return {name: known[name] if name in known else hashed[name] for name in tensors}


def root_hash(digests: Mapping[str, bytes]) -> str:
    root = hashlib.sha256()
    for name in sorted(digests):  # tied weights appear under each of their names
        root.update(digests[name])
    return root.hexdigest()


def state_hash(model_or_tensors: nn.Module | Mapping[str, torch.Tensor]) -> str:
    return root_hash(tensor_digests(model_or_tensors))


def directory_fingerprint(directory: Path) -> dict[str, list[int]]:
    """(size, mtime, ctime, inode) of every file in a model directory."""
    entries = {}
    for path in sorted(Path(directory).iterdir()):
        if path.is_file():
            stat = path.stat()
            entries[path.name] = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]
    return entries


class BaseDigests:
    """Per-tensor digests of verified base model directories, one index entry per (state hash, dtype)."""

    def __init__(self, index: Index) -> None:
        self.index = index  # this machine's own: the file stats it keeps describe local files

    @staticmethod
    def _key(base_state_hash: str, dtype: str) -> str:
        return hashlib.sha256(f"{base_state_hash}:{dtype}".encode()).hexdigest()

    def lookup(self, base_state_hash: str, dtype: str, fingerprint: dict[str, list[int]]) -> dict[str, bytes] | None:
        """The digests recorded for this base, if its directory's files are still as `fingerprint` found them."""
        entry = self.index.read_index(DIGEST_INDEX_DIR, self._key(base_state_hash, dtype))
        try:
            if entry is None or entry["state_hash"] != base_state_hash or entry["files"] != fingerprint:
                return None
            digests = {name: bytes.fromhex(value) for name, value in entry["digests"].items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            return None  # a broken entry: hash in full
        return digests if root_hash(digests) == base_state_hash else None

    def remember(self, base_state_hash: str, dtype: str, directory: Path, fingerprint: dict[str, list[int]],
                 digests: Mapping[str, bytes]) -> None:
        """Keep digests just hashed in full from the files `fingerprint` saw before loading, if they match the
        recorded state hash and no file changed since."""
        if root_hash(digests) != base_state_hash or directory_fingerprint(directory) != fingerprint:
            return
        self.index.write_index(DIGEST_INDEX_DIR, self._key(base_state_hash, dtype), {
            "state_hash": base_state_hash, "dtype": dtype, "files": fingerprint,
            "digests": {name: digest.hex() for name, digest in sorted(digests.items())},
        })


def file_sha256(path: Path) -> str:
    """A file's SHA-256, read in blocks (a GGUF model, a corpus)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
