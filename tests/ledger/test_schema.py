"""The migrations equal the ORM; `import ledger` stays free of torch; old and new schemas are refused."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from ledger import Ledger, NotALedgerError, SchemaAheadError, SchemaBehindError
from ledger.db import current_revision, downgrade, head_revision, make_engine, upgrade
from ledger.errors import LedgerError
from ledger.models import metadata

REPO = Path(__file__).resolve().parents[2]


def test_migrated_database_equals_the_orm(tmp_path: Path, db_url: str | None) -> None:
    url = db_url or f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    assert current_revision(url) == head_revision()
    engine = make_engine(url)
    with engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), metadata
        )
    engine.dispose()
    assert differences == []


def test_import_ledger_loads_no_torch_or_transformers() -> None:
    code = (
        "import sys, ledger, ledger.api, ledger.db, ledger.queries, ledger.store, ledger.chain\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'editor'))\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_behind_and_ahead_are_refused(tmp_path: Path, db_url: str | None) -> None:
    ledger = Ledger.init(tmp_path, db_url=db_url)
    url = ledger.db_url
    ledger.close()
    downgrade(url, "base")
    with pytest.raises(SchemaBehindError, match=r"editledger db upgrade"):
        Ledger.open(tmp_path)
    upgrade(url)
    Ledger.open(tmp_path).close()
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    engine.dispose()
    with pytest.raises(SchemaAheadError, match="9999_from_the_future"):
        Ledger.open(tmp_path)


def test_finding_a_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(NotALedgerError, match=r"editledger init"):
        Ledger.open(tmp_path)
    Ledger.init(tmp_path).close()
    with pytest.raises(LedgerError, match="already exists"):
        Ledger.init(tmp_path)
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    found = Ledger.open(nested)  # walks up like git
    assert found.root == tmp_path.resolve()
    assert found.db_url.startswith("sqlite:///") and found.db_url.endswith("ledger.db")
    found.close()
    monkeypatch.setenv("EDITLEDGER_STORE", str(tmp_path / "elsewhere"))
    with Ledger.open(nested) as from_env:
        assert from_env.store.root == tmp_path / "elsewhere"
    with Ledger.open(
        nested, store_dir=tmp_path / "argument"
    ) as from_argument:  # arguments beat the environment
        assert from_argument.store.root == tmp_path / "argument"


def test_upgrading_to_0002_copies_stats_audit_events_into_statistics(tmp_path: Path, db_url: str | None) -> None:
    url = db_url or f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url, "0001")
    content = b"C0 of layer 2"
    blob = hashlib.sha256(content).hexdigest()
    detail = (
        '{"blobs":{"2":"' + blob + '"},"corpus":"/data/corpus.txt","corpus_sha256":"' + "c" * 64 + '",'
        '"dtype":"float32","layers":[2],"model":"tiny","sample_count":50}'
    )
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO base_models (name, state_hash, architecture, config_json, created_at) "
                "VALUES ('tiny', :h, 'gpt2', '{}', '2026-01-01T00:00:00.000000Z')"
            ),
            {"h": "b" * 64},
        )
        for event in (detail, '{"model":"tiny"}'):  # the second is incomplete: nothing to copy
            connection.execute(
                text(
                    "INSERT INTO audit_events (kind, actor, created_at, detail_json) "
                    "VALUES ('stats', 'tests', '2026-01-02T00:00:00.000000Z', :d)"
                ),
                {"d": event},
            )
    engine.dispose()
    upgrade(url)
    with Ledger(None, url, tmp_path / "blobs") as ledger:
        (statistics,) = ledger.statistics("tiny")
        assert (statistics.corpus_path, statistics.sample_count) == ("/data/corpus.txt", 50)
        assert statistics.blobs == {2: blob}
        assert ledger.store.put(content) == blob
        unreferenced = ledger.store.put(b"unreferenced")
        assert ledger.gc() == [unreferenced]
