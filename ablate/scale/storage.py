"""Shared storage for a pool of workers: one URL, Optuna storage with heartbeats, claims beside it.

One storage URL names everything the workers share:

    sqlite:///results/<name>/study.db     one machine (the default)
    journal:results/<name>/study.journal  a journal file (journal:///abs/path when absolute):
                                          processes on one machine, or on several machines
                                          sharing a file system (NFS); claims go to
                                          <file>.claims.json beside it
    postgresql+psycopg://user@host/db     several machines (any SQLAlchemy URL Optuna accepts;
                                          give the password through PGPASSWORD or ~/.pgpass)

``open_store(url)`` opens it as an Optuna storage whose trials send heartbeats: a worker killed
mid-trial (SIGKILL included) stops beating, the next worker that looks fails the trial and
``RetryHeartbeatStaleTrialCallback`` queues a copy that a live worker runs. Optuna's journal
storage has no heartbeat, so a journal store keeps it as a trial system attribute. The store's
``claims(namespace)`` are the atomic claims of ``ablate.scale.claims``, in the same database or
beside the same journal file.

Storage URLs are shown through ``redact`` only: a password never reaches a log, table or report.
"""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat  # no public base for a heartbeat storage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from ..checks import is_int, not_allowed
from .claims import Claims, FileClaims, RDBClaims, create_table

JOURNAL_PREFIX = "journal:"
DEFAULT_HEARTBEAT_S = 60
MAX_RETRY = 3
_BEAT_ATTR = "ablate:heartbeat"
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


class _HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's journal storage with heartbeats kept as a trial system attribute."""

    def __init__(self, backend: JournalFileBackend, heartbeat_interval: int, grace_period: int,
                 stale_callback: Callable[[optuna.Study, optuna.trial.FrozenTrial], None]) -> None:
        super().__init__(backend)
        self._heartbeat_interval = heartbeat_interval
        self._grace_period = grace_period
        self._stale_callback = stale_callback

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, _BEAT_ATTR, time.time())
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # the trial ended between two beats

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
            if max(trial.system_attrs.get(_BEAT_ATTR, 0.0), started) < now - self._grace_period:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int:
        return self._heartbeat_interval

    def get_heartbeat_stale_trial_callback(
            self) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
        return self._stale_callback


@dataclass
class Store:
    """An Optuna storage and the claims kept beside it, opened from one URL by ``open_store``."""

    url: str
    optuna: optuna.storages.BaseStorage
    heartbeat: int
    grace: int
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


def open_store(url: str, heartbeat: int = DEFAULT_HEARTBEAT_S, grace: int | None = None,
               max_retry: int = MAX_RETRY) -> Store:
    """Open ``url`` (see the module docstring) with trial heartbeats every ``heartbeat`` seconds.

    A running trial silent for ``grace`` seconds (default ``2 * heartbeat``) is failed and
    retried as a new trial, at most ``max_retry`` times.
    """
    for name, value in (("heartbeat", heartbeat), ("grace", grace)):
        if value is not None and (not is_int(value) or value < 1):
            raise not_allowed(name, value, "a whole number of seconds >= 1")
    grace = grace if grace is not None else 2 * heartbeat
    if grace <= heartbeat:
        raise ValueError(f"grace={grace} is not allowed with heartbeat={heartbeat}; allowed: "
                         "more seconds than the heartbeat (default 2 x heartbeat)")
    path = journal_path(url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            storage = _HeartbeatJournalStorage(JournalFileBackend(str(path)), heartbeat, grace,
                                               retry)
            return Store(url, storage, heartbeat, grace)
        try:
            parsed = sa.engine.make_url(url)
        except (sa.exc.ArgumentError, ValueError):
            raise not_allowed("storage", redact(url), "an SQLAlchemy URL (sqlite:///PATH, "
                              "postgresql+psycopg://USER@HOST/DB...) or journal:PATH") from None
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(_OPEN_ATTEMPTS):
            try:
                storage = RDBStorage(url, engine_kwargs=_engine_kwargs(url),
                                     heartbeat_interval=heartbeat, grace_period=grace,
                                     heartbeat_stale_trial_callback=retry)
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
    return Store(url, storage, heartbeat, grace)


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail the study's trials whose worker stopped beating (each is then retried)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
