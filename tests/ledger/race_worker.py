"""A writer process for the race test: `rounds` times, read the head, wait for the other writer, append."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ledger import ConflictError, Ledger
from tests.ledger.helpers import make_draft


def race(root: str, db_url: str | None, worker: int, rounds: int, barrier: Any, results: Any) -> None:
    ledger = Ledger.open(Path(root), db_url=db_url)
    recorded: list[str] = []
    refused = 0
    try:
        for i in range(rounds):
            barrier.wait()
            head = ledger.branch("main").head_hash
            barrier.wait()  # both writers now hold the same head: exactly one append may win
            try:
                recorded.append(
                    ledger.append_version(make_draft(ledger, f"w{worker}-{i}"), "main", head).commit_hash
                )
            except ConflictError as error:
                assert "nothing was written" in str(error)
                refused += 1
        results.put((worker, recorded, refused, None))
    except Exception as error:  # reported to the test, which fails with it
        barrier.abort()
        results.put((worker, recorded, refused, repr(error)))
    finally:
        ledger.close()
