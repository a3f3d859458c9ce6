"""Errors of the ledger. Every message is one line and names the record or argument at fault."""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every error the ledger raises on purpose."""


class ConflictError(LedgerError):
    """A branch head moved between reading it and appending to it; nothing was written."""


class NotALedgerError(LedgerError):
    """No `.editledger/` directory (or database) could be found."""


class SchemaBehindError(LedgerError):
    """The database schema is older than this editledger needs."""


class SchemaAheadError(LedgerError):
    """The database schema is newer than this editledger knows."""


class UnknownRefError(LedgerError):
    """A version, branch, tag or request reference that matches nothing (or more than one thing)."""


class BlobMissingError(LedgerError):
    """A blob the ledger refers to is not in the store."""


class BlobCorruptError(LedgerError):
    """A blob's bytes no longer hash to its address."""


class InvalidBlobAddressError(LedgerError):
    """A blob address that is not 64 lowercase hex characters."""


class TamperError(LedgerError):
    """A recorded row does not match its commit hash."""


class StoreUnavailableError(LedgerError):
    """The blob store could not be used: endpoint unreachable, bucket missing, access denied, timed out."""
