"""Where a ledger is: finding `.editledger/config.json` (as git finds `.git`), reading the database URL and blob
store it names (arguments and environment first), and planning and writing the config of `init` and `connect`.
Touches no database: `ledger.api.Ledger` opens one from what this module finds."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ledger.errors import LedgerError, NotALedgerError
from ledger.object_store import is_store_url

LEDGER_DIR = ".editledger"
CONFIG_FILE = "config.json"

# What a planned ledger needs: its `.editledger/` directory, the config to write there once the ledger works, the
# database URL and the store (a directory path or an object storage URL).
Plan = tuple[Path, dict[str, Any], str, str | Path]


def find_ledger_dir(start: Path | None = None) -> Path | None:
    """The `.editledger/` of `start` or of its nearest parent that has one (as git finds `.git`)."""
    here = Path(start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / LEDGER_DIR / CONFIG_FILE).is_file():
            return directory / LEDGER_DIR
    return None


def read_config(ledger_dir: Path | None) -> dict[str, Any]:
    if ledger_dir is None:
        return {}
    try:
        return json.loads((ledger_dir / CONFIG_FILE).read_text())
    except (OSError, ValueError) as error:
        raise LedgerError(f"{ledger_dir / CONFIG_FILE}: unreadable ledger config ({error})") from None


def local_model_paths(root: Path | None) -> dict[str, str]:
    """Where this machine keeps each base model (`connect --model NAME=PATH`), from the config under `root`."""
    if root is None or not (root / LEDGER_DIR / CONFIG_FILE).is_file():
        return {}
    return dict(read_config(root / LEDGER_DIR).get("model_paths") or {})


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def store_location(store: str | Path) -> str | Path:
    """A `--store` value as kept: a URL as given (object storage), anything else as a directory path."""
    return str(store).rstrip("/") if is_store_url(store) else Path(store)


def config_store(store: str | Path) -> str:
    """A `--store` value as the config writes it: a URL as given, a directory as an absolute path."""
    return str(store).rstrip("/") if is_store_url(store) else str(Path(store).resolve())


def locate(
    start: Path | None = None, db_url: str | None = None, store_dir: str | Path | None = None
) -> tuple[Path | None, str, str | Path]:
    """(root, db_url, store) by precedence: arguments > EDITLEDGER_DB / EDITLEDGER_STORE > found config.
    The store is a directory path or an object storage URL (`s3://bucket/prefix`)."""
    ledger_dir = find_ledger_dir(start)
    settings = read_config(ledger_dir)
    url = db_url or os.environ.get("EDITLEDGER_DB") or settings.get("db_url")
    store = store_dir or os.environ.get("EDITLEDGER_STORE") or settings.get("store")
    if ledger_dir is not None:
        url = url or sqlite_url(ledger_dir / "ledger.db")
        store = store or ledger_dir / "blobs"
    if not url or not store:
        where = Path(start or Path.cwd()).resolve()
        raise NotALedgerError(f"no editledger ledger found in {where} or its parents: run `editledger init`")
    return (ledger_dir.parent if ledger_dir else None), url, store_location(store)


def find_ledger_url(start: Path | None = None) -> str:
    return locate(start)[1]


def plan_init(root: Path, db_url: str | None, store_dir: str | Path | None) -> Plan:
    """A new ledger under `root`: its directory (created here), its config, its database and store (a SQLite
    file and a blob directory inside it unless given or set in the environment)."""
    ledger_dir = Path(root).resolve() / LEDGER_DIR
    if (ledger_dir / CONFIG_FILE).exists():
        raise LedgerError(f"a ledger already exists in {ledger_dir}")
    db_url = db_url or os.environ.get("EDITLEDGER_DB")
    store = store_dir or os.environ.get("EDITLEDGER_STORE")
    ledger_dir.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {"format": 1}
    if db_url:
        settings["db_url"] = db_url
    if store:
        settings["store"] = config_store(store)
    return (
        ledger_dir,
        settings,
        db_url or sqlite_url(ledger_dir / "ledger.db"),
        store_location(store) if store else ledger_dir / "blobs",
    )


def plan_connect(root: Path, db_url: str | None, store: str | Path | None) -> Plan:
    """Joining an existing (team) ledger from `root`: both URLs are needed; only they are written (credentials
    stay in the environment or the client's own configuration)."""
    ledger_dir = Path(root).resolve() / LEDGER_DIR
    if (ledger_dir / CONFIG_FILE).exists():
        raise LedgerError(f"a ledger is already configured in {ledger_dir}")
    db_url = db_url or os.environ.get("EDITLEDGER_DB")
    store = store or os.environ.get("EDITLEDGER_STORE")
    if not db_url:
        raise LedgerError("connect needs --db URL (or EDITLEDGER_DB): the shared ledger's database")
    if not store:
        raise LedgerError("connect needs --store URL (or EDITLEDGER_STORE): the shared blob store")
    if not is_store_url(store) and not Path(store).is_dir():  # a shared directory must exist already
        raise LedgerError(f"--store {store}: no such directory")
    settings: dict[str, Any] = {"format": 1, "db_url": db_url, "store": config_store(store)}
    return ledger_dir, settings, db_url, store_location(store)


def write_config(ledger_dir: Path, settings: dict[str, Any]) -> None:
    """Written last by `init` and `connect`: a ledger exists once its config does (a failed one can be rerun)."""
    ledger_dir.mkdir(parents=True, exist_ok=True)
    (ledger_dir / CONFIG_FILE).write_text(json.dumps(settings, indent=2) + "\n")
