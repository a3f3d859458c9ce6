"""The blob store on object storage: checkout of a version from an S3 server (cold cache and warm) against the
same checkout from the local store, and an edit round's time with each.

The S3 server is moto's standalone server on loopback (`python -m moto.server`), spoken to over HTTP by s3fs, so
the numbers are the client's and the protocol's costs without a network's latency or bandwidth: on a real bucket
add the transfer of the blobs a cold checkout fetches (reported as `cold_checkout_bytes_fetched`). The model is the
88M-parameter GPT-2-style model of `benchmarks.engine_speed` (`--quick`: its 10M-parameter variant).

`python -m benchmarks.remote_store [--quick]` (about 3 minutes on 2 cores); `run(quick) -> dict`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import median_seconds, offline_and_threads, say, section_main

ROUNDS = 2
ROUND_SIZE = 4
EDIT_LAYERS = [5, 6]
REPEATS = 3


def _ledger(root: Path, store: str | None, model_dir: Path, corpus_path: Path):
    from editor.lifecycle import Workspace
    from ledger import Ledger

    ledger = Ledger.init(root, store_dir=store)
    space = Workspace(ledger, device="cpu")
    space.add_model("gpt2-88m", model_dir, corpus=corpus_path)
    return space


def _edit_rounds(space, requests, overrides) -> tuple[list, list[float]]:
    """Record the rounds one call each; the first round also computes and stores C0 (timed apart)."""
    versions, seconds = [], []
    for start in range(0, len(requests), ROUND_SIZE):
        started = time.perf_counter()
        versions += space.edit(requests[start:start + ROUND_SIZE], method="nse", batch_size=ROUND_SIZE,
                               overrides=overrides)
        seconds.append(time.perf_counter() - started)
    return versions, seconds


def run(quick: bool = False) -> dict[str, Any]:
    offline_and_threads()
    from benchmarks.engine_speed import corpus, make_model_dir, make_requests
    from editor.model import load_model
    from tests.s3 import s3_client_env, start_s3_server

    server = start_s3_server()
    os.environ.update(s3_client_env(server))
    os.environ.pop("EDITLEDGER_CACHE_DIR", None)
    server.make_bucket("bench")
    try:
        with tempfile.TemporaryDirectory(prefix="editledger-remote-") as tmp:
            root = Path(tmp)
            say("remote_store: making the model")
            model_dir = make_model_dir(root, quick=quick)
            texts = corpus(100)
            corpus_path = root / "corpus.txt"
            corpus_path.write_text("\n".join(texts) + "\n", encoding="utf-8")
            overrides = {"layers": EDIT_LAYERS, "v_num_grad_steps": 5, "mom2_n_samples": len(texts)}
            requests = make_requests(ROUNDS * ROUND_SIZE, seed=7)
            load_s = median_seconds(lambda: load_model(model_dir, device="cpu"), REPEATS)

            result: dict[str, Any] = {"model_parameters": None, "rounds": ROUNDS, "round_size": ROUND_SIZE,
                                      "layers": EDIT_LAYERS, "from_pretrained_s": load_s}
            for name, store in (("local", None), ("s3", "s3://bench/team-ledger")):
                say(f"remote_store: {name} store, {ROUNDS} rounds of {ROUND_SIZE}")
                space = _ledger(root / name, store, model_dir, corpus_path)
                versions, seconds = _edit_rounds(space, requests, overrides)
                head = versions[-1].commit_hash
                space.checkout_model(head)  # remembers the base's digests and, when worth it, a snapshot
                warm = median_seconds(lambda space=space, head=head: space.checkout_model(head), REPEATS)
                entry = {"first_round_with_c0_s": seconds[0], "round_s": sum(seconds[1:]) / len(seconds[1:]),
                         "checkout_warm_s": warm}
                entry["delta_bytes"] = sum(a.size_bytes for v in space.ledger.ancestry_artifacts(head)[1:]
                                           for a in v[1] if a.role == "delta")
                if name == "s3":
                    cache = space.ledger.store.cache
                    entry["cache_bytes_after_edits"] = cache.total_bytes()

                    def cold(space=space, cache=cache, head=head) -> None:
                        shutil.rmtree(cache.root / "blobs", ignore_errors=True)  # blobs gone, digests kept
                        space.checkout_model(head)

                    entry["checkout_cold_cache_s"] = median_seconds(cold, REPEATS)

                    def new_machine(space=space, cache=cache, head=head) -> None:
                        shutil.rmtree(cache.root, ignore_errors=True)  # nothing cached: the base is hashed in full
                        space.base_digests.index.root.mkdir(parents=True, exist_ok=True)
                        space.checkout_model(head)

                    entry["checkout_new_machine_s"] = median_seconds(new_machine, REPEATS)
                    cold()
                    entry["cold_checkout_bytes_fetched"] = cache.total_bytes()  # the cache was empty before
                if result["model_parameters"] is None:
                    loaded = space.load_base("gpt2-88m")
                    result["model_parameters"] = sum(p.numel() for p in loaded.model.parameters())
                space.ledger.close()
                result[name] = entry
                say(f"remote_store: {name}: {entry}")
            for key in ("checkout_warm_s", "round_s"):
                result[f"s3_vs_local_{key}"] = result["s3"][key] / result["local"][key]
            result["s3_cold_vs_local_checkout"] = result["s3"]["checkout_cold_cache_s"] / result["local"][
                "checkout_warm_s"]
            return result
    finally:
        server.stop()


if __name__ == "__main__":
    section_main("remote_store", run, __doc__ or "")
