"""The editledger ledger: records every knowledge edit of a model in SQL, hash-chained, with a blob store.

Imports neither torch nor transformers: auditing needs no GPU stack."""

from ledger.api import Ledger, find_ledger_url
from ledger.errors import (
    BlobCorruptError,
    BlobMissingError,
    ConflictError,
    InvalidBlobAddressError,
    LedgerError,
    NotALedgerError,
    SchemaAheadError,
    SchemaBehindError,
    StoreUnavailableError,
    TamperError,
    UnknownRefError,
)
from ledger.infos import (
    AuditEvent,
    BaseModelInfo,
    BlameEntry,
    BranchInfo,
    DiffLayer,
    HistoryEvent,
    RefLogEntry,
    RequestInfo,
    VerifyReport,
    VersionDetail,
    VersionDiff,
    VersionInfo,
    VersionRequest,
)
from ledger.object_store import ObjectBlobStore, open_store
from ledger.store import BlobStore, ContentStore

__all__ = [
    "AuditEvent",
    "BaseModelInfo",
    "BlameEntry",
    "BlobCorruptError",
    "BlobMissingError",
    "BlobStore",
    "BranchInfo",
    "ConflictError",
    "ContentStore",
    "DiffLayer",
    "HistoryEvent",
    "InvalidBlobAddressError",
    "Ledger",
    "LedgerError",
    "NotALedgerError",
    "ObjectBlobStore",
    "RefLogEntry",
    "RequestInfo",
    "SchemaAheadError",
    "SchemaBehindError",
    "StoreUnavailableError",
    "TamperError",
    "UnknownRefError",
    "VerifyReport",
    "VersionDetail",
    "VersionDiff",
    "VersionInfo",
    "VersionRequest",
    "find_ledger_url",
    "open_store",
]
