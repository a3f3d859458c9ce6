"""Engines, transactions (a reader's, a writer's) and schema migrations, run from code (no `alembic` command needed).

SQLite: WAL (readers never block the writer), a 30 s busy timeout, foreign keys on, and `BEGIN IMMEDIATE` for
write transactions so two writers queue at BEGIN instead of failing half way through. PostgreSQL through
psycopg 3.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ledger.errors import LedgerError, SchemaAheadError, SchemaBehindError

SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITE_OPTION = "editledger_write"  # execution option that marks a connection as a writer (BEGIN IMMEDIATE)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(db_url: str) -> Engine:
    if not is_sqlite(db_url):
        return create_engine(db_url)
    engine = create_engine(db_url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Leave transaction control to us (the driver's own BEGIN is deferred and can't be made IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        writer = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

    return engine


@contextmanager
def transaction(engine: Engine, write: bool = False) -> Iterator[Session]:
    """One DB transaction as an ORM session: committed when the block ends, rolled back if it raises."""
    with engine.connect() as connection:
        if write:
            connection = connection.execution_options(**{WRITE_OPTION: True})
        with connection.begin(), Session(bind=connection, autoflush=True, expire_on_commit=False) as session:
            yield session
            session.flush()


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Session]:
    """A writer's transaction: a constraint the database enforces becomes one LedgerError line, nothing written."""
    try:
        with transaction(engine, write=True) as session:
            yield session
    except IntegrityError as error:
        first_line = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise LedgerError(f"the database refused the write (nothing was written): {first_line}") from None


# -------------------------------------------------------------------------------------- migrations
def migrations_dir() -> Path:
    """The `migrations` package directory, from a checkout or an installed editledger alike."""
    spec = importlib.util.find_spec("migrations")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parents[1] / "migrations"


def alembic_config(db_url: str | None = None, connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if db_url:
        config.set_main_option("sqlalchemy.url", db_url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migrations directory has no revision"
    return head


def _revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def current_revision(db_url: str) -> str | None:
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            return _revision_of(connection)
    finally:
        engine.dispose()


def _run(db_url: str, action: str, revision: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            getattr(command, action)(alembic_config(db_url, connection), revision)
            connection.commit()
    finally:
        engine.dispose()


def upgrade(db_url: str, revision: str = "head") -> None:
    _run(db_url, "upgrade", revision)


def downgrade(db_url: str, revision: str = "base") -> None:
    _run(db_url, "downgrade", revision)


def check_schema(engine: Engine) -> None:
    """Refuse a database whose schema is not the one this editledger was written for."""
    with engine.connect() as connection:
        current = _revision_of(connection)
    head = head_revision()
    if current == head:
        return
    known = {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if current is not None and current not in known:
        raise SchemaAheadError(
            f"ledger schema is at {current}, newer than this editledger knows (head {head}): "
            "upgrade editledger"
        )
    raise SchemaBehindError(
        f"ledger schema is at {current or 'none'}, editledger needs {head}: run `editledger db upgrade`"
    )


class StatementCounter:
    """Counts the SQL statements an engine sends while it is open (`with StatementCounter(engine) as c: ...;
    c.count`): how the tests and benchmarks check that an operation's statements do not grow with history."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.count = 0

    def _on_execute(self, *_args: object) -> None:
        self.count += 1

    def __enter__(self) -> StatementCounter:
        event.listen(self.engine, "before_cursor_execute", self._on_execute)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._on_execute)
