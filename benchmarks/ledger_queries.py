"""Ledger speed at scale: append rate through `append_version`, and the audit queries (first page of `log`,
`blame` of one neuron, `history` of one fact, `show` of the head) at 100,000 versions, SQLite and PostgreSQL.

    python -m benchmarks.ledger_queries [--versions N] [--appends N] [--backend sqlite|postgres|both]

The filling is a bulk insert of real rows (real commit hashes, so `verify` would pass) through SQLAlchemy
Core; the append rate is measured through the public API. Goal: each query < 50 ms at 100,000 versions."""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text, update

from ledger import Ledger
from ledger.chain import ChainRecord, commit_hash
from ledger.db import transaction
from ledger.models import (
    ArtifactRow,
    BranchRow,
    EditRequestRow,
    FootprintLayerRow,
    FootprintNeuronRow,
    RequestOutcomeRow,
    RequestPromptRow,
    ScoreRow,
    VersionArtifactRow,
    VersionRequestRow,
    VersionRow,
)
from ledger.records import (
    ArtifactRef,
    EditRequest,
    EvalPrompt,
    FootprintLayer,
    RequestEntry,
    RequestOutcome,
    Score,
    VersionDraft,
    canonical_json,
)

SEED = 0
LAYERS = 4
WIDTH = 1024
NEURONS_PER_LAYER = 4
REQUESTS_PER_VERSION = 2
SUBJECTS = 5000  # each subject recurs in ~versions * 2 / 5000 requests: a fact with a real history
BATCH = 2000
REPEATS = 21
PG = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def synthetic(
    i: int, rng: random.Random
) -> tuple[list[EditRequest], list[FootprintLayer], list[RequestOutcome]]:
    requests = [
        EditRequest(
            subject=f"subject {(i * REQUESTS_PER_VERSION + j) % SUBJECTS}",
            prompt="{} is located in",
            target_new=f"city {i}-{j}",
            case_id=f"{i}-{j}",
            eval_prompts=(EvalPrompt("paraphrase", "Where is {}? In"),),
        )
        for j in range(REQUESTS_PER_VERSION)
    ]
    layers = rng.sample(range(LAYERS), 2)
    footprint = [
        FootprintLayer(layer, p, tuple(sorted(rng.sample(range(WIDTH), NEURONS_PER_LAYER))), rng.random())
        for p, layer in enumerate(layers)
    ]
    outcomes = [
        RequestOutcome(r.request_key, 1.0 + rng.random(), rng.random() / 10, "edited") for r in requests
    ]
    return requests, footprint, outcomes


def fill(ledger: Ledger, versions: int, blob: ArtifactRef) -> None:
    """Bulk insert `versions - 1` edit versions after the base version, with real hashes, in batches."""
    rng = random.Random(SEED)
    hparams, environment = {"layers": [1, 2], "lr": 0.5}, {"device": "cpu", "torch": "2.13.0"}
    with transaction(ledger.engine, write=True) as session:
        head = session.scalar(select(VersionRow).order_by(VersionRow.id.desc()).limit(1))
        assert head is not None
        parent_id, parent_hash, depth, base_id = head.id, head.commit_hash, head.depth, head.base_model_id
        base_state = session.scalar(text("SELECT state_hash FROM base_models WHERE id = :b"), {"b": base_id})
        session.add(ArtifactRow(sha256=blob.sha256, kind=blob.kind, size_bytes=blob.size_bytes))
        session.flush()
        artifact_id = session.scalar(select(ArtifactRow.id).where(ArtifactRow.sha256 == blob.sha256))
        next_request = (session.scalar(select(func.max(EditRequestRow.id))) or 0) + 1
        next_layer = (session.scalar(select(func.max(FootprintLayerRow.id))) or 0) + 1
    version_id = parent_id + 1
    for start in range(1, versions, BATCH):
        rows: dict[Any, list[dict[str, Any]]] = {
            t: []
            for t in (
                VersionRow,
                EditRequestRow,
                RequestPromptRow,
                VersionRequestRow,
                FootprintLayerRow,
                FootprintNeuronRow,
                RequestOutcomeRow,
                VersionArtifactRow,
                ScoreRow,
            )
        }
        for i in range(start, min(start + BATCH, versions)):
            requests, footprint, outcomes = synthetic(i, rng)
            created_at = f"2024-01-01T00:00:00.{i % 1_000_000:06d}Z"
            record = ChainRecord(
                "edit",
                base_state,
                "bench",
                f"round {i}",
                created_at,
                "nse",
                hparams,
                environment,
                f"{i:064x}",
                {},
                tuple((r.request_key, "edited") for r in requests),
                tuple(footprint),
                tuple(outcomes),
                ((blob.role, blob.sha256),),
            )
            parent_hash = commit_hash(parent_hash, record)
            depth += 1
            rows[VersionRow].append(
                dict(
                    id=version_id,
                    commit_hash=parent_hash,
                    parent_id=version_id - 1,
                    base_model_id=base_id,
                    kind="edit",
                    author="bench",
                    reason=f"round {i}",
                    created_at=created_at,
                    method="nse",
                    hparams_json=canonical_json(hparams),
                    environment_json=canonical_json(environment),
                    extra_json="{}",
                    state_hash=f"{i:064x}",
                    depth=depth,
                    n_requests=len(requests),
                )
            )
            for position, request in enumerate(requests):
                rows[EditRequestRow].append(
                    dict(
                        id=next_request,
                        request_key=request.request_key,
                        subject=request.subject,
                        prompt=request.prompt,
                        target_new=request.target_new,
                        target_true=None,
                        relation_id=None,
                        case_id=request.case_id,
                    )
                )
                rows[RequestPromptRow].append(
                    dict(
                        request_id=next_request,
                        position=0,
                        kind="paraphrase",
                        text="Where is {}? In",
                        target=None,
                    )
                )
                rows[VersionRequestRow].append(
                    dict(version_id=version_id, position=position, request_id=next_request, role="edited")
                )
                outcome = outcomes[position]
                rows[RequestOutcomeRow].append(
                    dict(
                        version_id=version_id,
                        position=position,
                        request_id=next_request,
                        residual_before=outcome.residual_before,
                        residual_after=outcome.residual_after,
                        status="edited",
                    )
                )
                rows[ScoreRow].append(
                    dict(
                        version_id=version_id,
                        request_id=next_request,
                        suite=None,
                        metric="efficacy",
                        value=1.0,
                        created_at=created_at,
                    )
                )
                next_request += 1
            for position, layer in enumerate(footprint):
                rows[FootprintLayerRow].append(
                    dict(
                        id=next_layer,
                        version_id=version_id,
                        position=position,
                        layer=layer.layer,
                        pass_index=layer.pass_index,
                        n_neurons=len(layer.neurons),
                        delta_norm=layer.delta_norm,
                    )
                )
                rows[FootprintNeuronRow] += [
                    dict(
                        footprint_layer_id=next_layer,
                        position=j,
                        version_id=version_id,
                        layer=layer.layer,
                        neuron=n,
                    )
                    for j, n in enumerate(layer.neurons)
                ]
                next_layer += 1
            rows[VersionArtifactRow].append(
                dict(version_id=version_id, position=0, artifact_id=artifact_id, role=blob.role)
            )
            version_id += 1
        with transaction(ledger.engine, write=True) as session:
            for table, batch in rows.items():  # dict order is parent tables before children
                session.execute(table.__table__.insert(), batch)
    with transaction(ledger.engine, write=True) as session:
        session.execute(
            update(BranchRow).where(BranchRow.name == "main").values(head_version_id=version_id - 1)
        )
        if session.get_bind().dialect.name == "postgresql":  # explicit ids leave the serial sequences behind
            for table in ("versions", "edit_requests", "footprint_layers", "artifacts", "scores"):
                session.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
    with ledger.engine.connect() as connection:  # fresh planner statistics, as autovacuum would gather them
        connection.execute(text("ANALYZE"))
        connection.commit()


def median_ms(action: Callable[[], object]) -> float:
    action()  # warm the caches once
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


@contextmanager
def database(backend: str, directory: Path) -> Iterator[str | None]:
    if backend == "sqlite":
        yield None
        return
    import psycopg

    name = f"editledger_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def measure(backend: str, versions: int, appends: int) -> dict[str, float]:
    with (
        tempfile.TemporaryDirectory(prefix="editledger-bench-") as tmp,
        database(backend, Path(tmp)) as db_url,
    ):
        ledger = Ledger.init(Path(tmp), db_url=db_url)
        base = ledger.add_base_model("bench", "b" * 64, "gpt2", {}, None, author="bench")
        data = b"delta"
        blob = ArtifactRef("delta", ledger.store.put(data), "safetensors", len(data))
        started = time.perf_counter()
        fill(ledger, versions, blob)
        fill_s = time.perf_counter() - started
        assert ledger.branch("main").depth == versions - 1 and base.depth == 0

        rng = random.Random(SEED + 1)
        head = ledger.branch("main").head_hash
        started = time.perf_counter()
        for i in range(appends):
            requests, footprint, outcomes = synthetic(versions + i, rng)
            draft = VersionDraft(
                kind="edit",
                base_model="bench",
                state_hash=f"{i:064x}",
                author="bench",
                reason=f"append {i}",
                method="nse",
                hparams={"lr": 0.5},
                requests=[RequestEntry(r) for r in requests],
                footprint=footprint,
                outcomes=outcomes,
                artifacts=[blob],
                scores=[Score("efficacy", 1.0, r.request_key) for r in requests],
            )
            head = ledger.append_version(draft, "main", head).commit_hash
        append_rate = appends / (time.perf_counter() - started)

        subject = "subject 1234"
        neuron = ledger.show("main").footprint[0]
        result = {
            "versions": float(versions + appends),
            "fill_s": fill_s,
            "append_per_s": append_rate,
            "log_ms": median_ms(lambda: ledger.log("main", limit=20)),
            "blame_ms": median_ms(lambda: ledger.blame(neuron.layer, neuron.neurons[0])),
            "history_ms": median_ms(lambda: ledger.history(subject=subject)),
            "show_ms": median_ms(lambda: ledger.show("main")),
            "blame_rows": float(len(ledger.blame(neuron.layer, neuron.neurons[0]))),
            "history_rows": float(len(ledger.history(subject=subject))),
        }
        ledger.close()
        return result


def table(results: dict[str, dict[str, float]]) -> str:
    lines = [
        "| backend | versions | fill (s) | append (versions/s) | log first page (ms) | blame (ms) | "
        "history (ms) | show (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for backend, r in results.items():
        lines.append(
            f"| {backend} | {int(r['versions']):,} | {r['fill_s']:.0f} | {r['append_per_s']:.0f} | "
            f"{r['log_ms']:.2f} | {r['blame_ms']:.2f} ({int(r['blame_rows'])} rows) | "
            f"{r['history_ms']:.2f} ({int(r['history_rows'])} events) | {r['show_ms']:.2f} |"
        )
    return "\n".join(lines)


def run(versions: int = 100_000, backend: str = "both", appends: int = 2000) -> dict[str, dict[str, float]]:
    backends = ["sqlite", "postgres"] if backend == "both" else [backend]
    return {name: measure(name, versions, appends) for name in backends}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=100_000)
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    print(table(run(args.versions, args.backend, args.appends)))


if __name__ == "__main__":
    main()
