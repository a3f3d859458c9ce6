"""Alembic environment and revisions of the ledger schema (applied from code by `ledger.db.upgrade`)."""
