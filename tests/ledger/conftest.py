"""A ledger on SQLite (a tmp dir) and on PostgreSQL (a fresh database), for every test that asks for one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import Ledger
from tests.pg import postgres_url_or_skip


@pytest.fixture(autouse=True)
def _no_ledger_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's EDITLEDGER_DB must not send the tests to their real ledger.
    monkeypatch.delenv("EDITLEDGER_DB", raising=False)
    monkeypatch.delenv("EDITLEDGER_STORE", raising=False)
    monkeypatch.delenv("EDITLEDGER_KILL_AT", raising=False)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def db_url(backend: str) -> Iterator[str | None]:
    with postgres_url_or_skip(backend) as url:
        yield url


@pytest.fixture
def ledger(tmp_path: Path, db_url: str | None) -> Iterator[Ledger]:
    opened = Ledger.init(tmp_path, db_url=db_url)
    yield opened
    opened.close()
