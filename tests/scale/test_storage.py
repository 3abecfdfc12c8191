"""Tests of ablate.scale.storage: redaction, journal paths, heartbeat settings, and workers
racing to create a new database."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from ablate.scale import storage
from ablate.scale.storage import journal_path, open_store, redact


def test_redact_hides_passwords_and_nothing_else():
    assert redact("postgresql+psycopg://ablate:s3cret@db.lan:5432/studies") == \
        "postgresql+psycopg://ablate:***@db.lan:5432/studies"
    assert redact("postgresql://ablate@db.lan/studies") == "postgresql://ablate@db.lan/studies"
    assert redact("sqlite:///results/x/study.db") == "sqlite:///results/x/study.db"
    assert redact("journal:results/x/journal.log") == "journal:results/x/journal.log"
    assert "s3cret" not in redact("not a url s3cret")
    assert journal_path("journal:///abs/j.log") == Path("/abs/j.log")
    assert journal_path("journal:rel/j.log") == Path("rel/j.log")
    with pytest.raises(ValueError, match="allowed: journal:PATH"):
        journal_path("journal:")
    for heartbeat in (0, -1.5, True, "1"):
        with pytest.raises(ValueError, match=f"heartbeat={heartbeat!r} is not allowed; allowed: "
                                             "a number of seconds > 0"):
            open_store("sqlite:///x.db", heartbeat=heartbeat)
    with pytest.raises(ValueError, match="grace=5 is not allowed with heartbeat=5"):
        open_store("sqlite:///x.db", heartbeat=5, grace=5)


class _FlakyRDB:
    """Stands in for RDBStorage: raises ``errors`` one per call, then opens."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors, self.calls = errors, 0

    def __call__(self, url, **kwargs):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return f"storage for {url}"


def _db_error(kind: type, message: str) -> Exception:
    return kind("CREATE TABLE alembic_version (...)", {}, Exception(message))


@pytest.mark.parametrize("kind, message", [
    (sa.exc.OperationalError, "table alembic_version already exists"),     # SQLite
    (sa.exc.ProgrammingError, 'relation "studies" already exists'),         # PostgreSQL
    (sa.exc.IntegrityError, "UNIQUE constraint failed: version_info.version_info_id"),
])
def test_workers_racing_to_create_a_new_database_retry(monkeypatch, tmp_path, kind, message):
    fake = _FlakyRDB([_db_error(kind, message)])
    monkeypatch.setattr(storage, "RDBStorage", fake)
    monkeypatch.setattr(storage.time, "sleep", lambda s: None)
    store = open_store(f"sqlite:///{tmp_path / 'new.db'}")
    assert fake.calls == 2 and store.optuna == f"storage for sqlite:///{tmp_path / 'new.db'}"


def test_other_database_errors_are_refused_at_once_with_the_reason(monkeypatch, tmp_path):
    fake = _FlakyRDB([_db_error(sa.exc.OperationalError, "unable to open database file")] * 9)
    monkeypatch.setattr(storage, "RDBStorage", fake)
    with pytest.raises(ValueError, match="cannot open storage .*: unable to open database file"):
        open_store(f"sqlite:///{tmp_path / 'x.db'}")
    assert fake.calls == 1
