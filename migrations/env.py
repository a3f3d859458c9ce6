"""Alembic environment: uses the connection passed in `config.attributes["connection"]` (how `ledger.db` runs
migrations from code), or makes one from `sqlalchemy.url` (how the plain `alembic` command runs them)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from ledger.db import make_engine
from ledger.models import metadata

config = context.config


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite can't ALTER most things: copy-and-move
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "sqlite:///.editledger/ledger.db")
    try:
        with engine.connect() as new_connection:
            run_migrations(new_connection)
            new_connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
