"""Shared storage for a pool of workers: one URL, an Optuna storage and the claims beside it.

One storage URL names everything the workers share:

    sqlite:///results/<name>/study.db     one machine (the default)
    journal:results/<name>/study.journal  a journal file (journal:///abs/path when absolute):
                                          processes on one machine, or on several machines
                                          sharing a file system (NFS); claims go to
                                          <file>.claims.json beside it
    postgresql+psycopg://user@host/db     several machines (any SQLAlchemy URL Optuna accepts;
                                          give the password through PGPASSWORD or ~/.pgpass)

``open_store(url)`` opens it as an Optuna storage and the store's ``claims(namespace)``, the
atomic claims of ``ablate.scale.claims`` in the same database or beside the same journal file.
Liveness lives in the claims, not in Optuna: a worker beats its claims every ``heartbeat``
seconds, and a claim silent for ``grace`` seconds (a worker killed, SIGKILL included) is taken
over by another worker, which then settles what the dead one left (``ablate.scale.ledger`` for
search trials). Optuna's own trial heartbeat is not used: it skips trials that never beat (a
worker killed before its first beat left them RUNNING forever on SQLite and PostgreSQL).

Storage URLs are shown through ``redact`` only: a password never reaches a log, table or report.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.storages import RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage

from ..common.checks import not_allowed
from .claims import Claims, FileClaims, RDBClaims, create_table

JOURNAL_PREFIX = "journal:"
DEFAULT_HEARTBEAT_S = 60
MAX_RETRY = 3
_SQLITE_TIMEOUT_S = 60
_OPEN_ATTEMPTS = 5


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``; safe to print, log or store."""
    if url.startswith(JOURNAL_PREFIX):
        return url
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return "<unparseable storage URL>"


def journal_path(url: str) -> Path | None:
    """The file of a ``journal:PATH`` URL (``journal:///abs/path`` for absolute), else None."""
    if not url.startswith(JOURNAL_PREFIX):
        return None
    rest = url[len(JOURNAL_PREFIX):]
    rest = rest[2:] if rest.startswith("//") else rest
    if not rest:
        raise not_allowed("storage", url, "journal:PATH, e.g. journal:results/search/journal.log")
    return Path(rest)


@dataclass
class Store:
    """An Optuna storage and the claims kept beside it, opened from one URL by ``open_store``."""

    url: str
    optuna: optuna.storages.BaseStorage
    heartbeat: float
    grace: float
    max_retry: int = MAX_RETRY
    _engine: sa.engine.Engine | None = field(default=None, repr=False)

    def claims(self, namespace: str) -> Claims:
        path = journal_path(self.url)
        if path is not None:
            return FileClaims(path.with_name(path.name + ".claims.json"), namespace, self.grace)
        if self._engine is None:
            self._engine = sa.create_engine(self.url, **_engine_kwargs(self.url))
            create_table(self._engine)
        return RDBClaims(self._engine, namespace, self.grace)

    def __str__(self) -> str:
        return redact(self.url)


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": _SQLITE_TIMEOUT_S}}
    return {"pool_pre_ping": True}


def open_store(url: str, heartbeat: float = DEFAULT_HEARTBEAT_S, grace: float | None = None,
               max_retry: int = MAX_RETRY) -> Store:
    """Open ``url`` (see the module docstring); claims beat every ``heartbeat`` seconds.

    A claim silent for ``grace`` seconds (default ``2 * heartbeat``) is stale: its worker is taken
    for dead, and a search trial it was running is failed and retried as a new trial, at most
    ``max_retry`` times.
    """
    for name, value in (("heartbeat", heartbeat), ("grace", grace)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not value > 0):
            raise not_allowed(name, value, "a number of seconds > 0")
    grace = grace if grace is not None else 2 * heartbeat
    if grace <= heartbeat:
        raise ValueError(f"grace={grace} is not allowed with heartbeat={heartbeat}; allowed: "
                         "more seconds than the heartbeat (default 2 x heartbeat)")
    path = journal_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        storage = JournalStorage(JournalFileBackend(str(path)))
        return Store(url, storage, heartbeat, grace, max_retry)
    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        raise not_allowed("storage", redact(url), "an SQLAlchemy URL (sqlite:///PATH, "
                          "postgresql+psycopg://USER@HOST/DB...) or journal:PATH") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            storage = RDBStorage(url, engine_kwargs=_engine_kwargs(url))
            break
        except ImportError as exc:
            raise ValueError(f"storage {redact(url)}: no database driver ({exc}); for "
                             "PostgreSQL install the 'postgres' extra (psycopg)") from None
        except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError) as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            # Workers creating a new database at once race on Optuna's schema: one sees a
            # table the other just made ("already exists") or its version row (integrity).
            race = isinstance(exc, sa.exc.IntegrityError) or "already exists" in reason
            if not race or attempt == _OPEN_ATTEMPTS - 1:
                raise ValueError(f"cannot open storage {redact(url)}: {reason}") from None
            time.sleep(0.2 + random.random())
    return Store(url, storage, heartbeat, grace, max_retry)
