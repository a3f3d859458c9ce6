"""PostgreSQL for tests: a fresh throw-away database per use, on the server at 127.0.0.1:5432 (user postgres).

    with postgres_url_or_skip(backend) as db_url:   # None for "sqlite"; a SQLAlchemy URL for "postgres"
        ...

Skips the test (with the reason) only when no server answers; the database is dropped afterwards."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

PG_HOST = os.environ.get("EDITLEDGER_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("EDITLEDGER_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("EDITLEDGER_TEST_PG_USER", "postgres")
PG_ADMIN_DB = os.environ.get("EDITLEDGER_TEST_PG_DB", "postgres")


@contextmanager
def postgres_url_or_skip(backend: str = "postgres") -> Iterator[str | None]:
    if backend != "postgres":
        yield None
        return
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed: pip install 'editledger[postgres]'")
    try:
        admin = psycopg.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=PG_ADMIN_DB, autocommit=True, connect_timeout=5
        )
    except psycopg.OperationalError as error:
        pytest.skip(
            f"no PostgreSQL server answers at {PG_HOST}:{PG_PORT}: {str(error).strip().splitlines()[0]}"
        )
    name = f"editledger_t_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
