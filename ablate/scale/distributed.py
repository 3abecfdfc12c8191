"""Shared storage for a pool of workers: Optuna storages with heartbeats, atomic claims, grids.

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
storage has no heartbeat, so a journal store keeps it as a trial system attribute.

``Claims`` are the one primitive the pool needs on top of Optuna: take a key so that no other
worker holds it (a grid cell, a search variant, a slot among the asked trials). A claim is held
by an owner, kept alive by heartbeats, finished (``done``, with an optional JSON result) or
released, and a claim whose holder stopped beating for ``grace`` seconds can be taken over. In an
RDB it is one row of the ``ablate_claims`` table, taken by a primary-key insert or a conditional
``UPDATE`` whose row count says who won; beside a journal file it is one JSON file changed under
Optuna's journal file lock. Heartbeat times come from each worker's clock: keep machines in NTP
sync and ``grace`` well above any clock skew.

``run_grid`` spreads an experiment's (variant, seed) cells over such a pool: every cell runs
exactly once (Optuna's ``GridSampler`` can hand one cell to two workers, optuna issues 2039 and
5489), rows land in the usual ``results/<experiment>/runs/`` layout and are also kept in the
claims, so every worker writes the whole runs table at the end and ``ablate report`` works.

Storage URLs are shown through ``redact`` only: a password never reaches a log, table or report.
"""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import optuna
import sqlalchemy as sa
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat  # no public base for a heartbeat storage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage
from optuna.trial import TrialState

from ..files import write_text

if TYPE_CHECKING:
    import pandas as pd

    from ..experiment import Experiment

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


def worker_id() -> str:
    """A name for this process, unique across machines: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def journal_path(url: str) -> Path | None:
    """The file of a ``journal:PATH`` URL (``journal:///abs/path`` for absolute), else None."""
    if not url.startswith(JOURNAL_PREFIX):
        return None
    rest = url[len(JOURNAL_PREFIX):]
    rest = rest[2:] if rest.startswith("//") else rest
    if not rest:
        raise ValueError(f"storage={url!r} is not allowed; allowed: journal:PATH, e.g. "
                         "journal:results/search/journal.log")
    return Path(rest)


# ---------------------------------------------------------------------------------------------
# Claims


@dataclass(frozen=True)
class Claim:
    """The stored state of one claim; ``stale`` when a running holder stopped beating."""

    key: str
    state: str          # "running" or "done"
    owner: str
    beat: float         # unix time of the last heartbeat
    result: str | None  # JSON text given to ``finish``
    stale: bool


class Claims:
    """Atomic claims on keys within one namespace (see the module docstring)."""

    def __init__(self, namespace: str, grace: float) -> None:
        self.namespace, self.grace = namespace, float(grace)

    def claim(self, key: str, owner: str, takeover: str | None = None) -> bool:
        """Take ``key`` for ``owner``; True when ``owner`` now holds it.

        Taken when nobody holds it, ``owner`` already does, the holder is stale, or the holder is
        ``takeover`` (a retried trial taking its dead predecessor's hold). A ``done`` key is never
        taken again.
        """
        raise NotImplementedError

    def beat(self, key: str, owner: str) -> bool:
        """Refresh ``owner``'s hold; False when the hold was lost (taken over or finished)."""
        raise NotImplementedError

    def finish(self, key: str, owner: str, result: str | None = None) -> bool:
        """Mark ``key`` done with a JSON ``result``; False when ``owner`` no longer held it."""
        raise NotImplementedError

    def release(self, key: str, owner: str) -> None:
        """Give ``key`` back (it can be claimed again at once)."""
        raise NotImplementedError

    def all(self) -> dict[str, Claim]:
        """Every claim of the namespace by key."""
        raise NotImplementedError

    def _record(self, key: str, state: str, owner: str, beat: float, result: str | None,
                now: float) -> Claim:
        return Claim(key, state, owner, beat, result,
                     state == "running" and beat < now - self.grace)


_META = sa.MetaData()
_TABLE = sa.Table(
    "ablate_claims", _META,
    sa.Column("namespace", sa.String(255), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("owner", sa.String(255), nullable=False),
    sa.Column("beat", sa.Float, nullable=False),
    sa.Column("result", sa.Text, nullable=True),
)


class _RDBClaims(Claims):
    """Claims as rows of ``ablate_claims`` in the study's database (SQLite, PostgreSQL...)."""

    def __init__(self, engine: sa.engine.Engine, namespace: str, grace: float) -> None:
        super().__init__(namespace, grace)
        self._engine = engine

    def _where(self, key: str):
        return (_TABLE.c.namespace == self.namespace) & (_TABLE.c.key == key)

    def claim(self, key: str, owner: str, takeover: str | None = None) -> bool:
        now = time.time()
        holders = [owner] if takeover is None else [owner, takeover]
        # One statement each: the database decides the winner (row lock / write lock).
        with self._engine.begin() as conn:
            taken = conn.execute(
                _TABLE.update()
                .where(self._where(key), _TABLE.c.state == "running",
                       _TABLE.c.owner.in_(holders) | (_TABLE.c.beat < now - self.grace))
                .values(owner=owner, beat=now)).rowcount
        if taken == 1:
            return True
        try:
            with self._engine.begin() as conn:
                conn.execute(_TABLE.insert().values(namespace=self.namespace, key=key,
                                                    state="running", owner=owner, beat=now))
        except sa.exc.IntegrityError:
            return False
        return True

    def _update(self, key: str, owner: str, **values: Any) -> bool:
        with self._engine.begin() as conn:
            return conn.execute(
                _TABLE.update()
                .where(self._where(key), _TABLE.c.owner == owner, _TABLE.c.state == "running")
                .values(**values)).rowcount == 1

    def beat(self, key: str, owner: str) -> bool:
        return self._update(key, owner, beat=time.time())

    def finish(self, key: str, owner: str, result: str | None = None) -> bool:
        return self._update(key, owner, state="done", beat=time.time(), result=result)

    def release(self, key: str, owner: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(_TABLE.delete().where(self._where(key), _TABLE.c.owner == owner,
                                               _TABLE.c.state == "running"))

    def all(self) -> dict[str, Claim]:
        now = time.time()
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(_TABLE).where(_TABLE.c.namespace == self.namespace))
            return {r.key: self._record(r.key, r.state, r.owner, r.beat, r.result, now)
                    for r in rows}


class _FileClaims(Claims):
    """Claims in one JSON file beside a journal, changed only under Optuna's journal file lock."""

    def __init__(self, path: Path, namespace: str, grace: float) -> None:
        super().__init__(namespace, grace)
        self._path = path
        self._lock = JournalFileOpenLock(str(path))

    @contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, Any]]]:
        self._lock.acquire()
        try:
            data = json.loads(self._path.read_text()) if self._path.is_file() else {}
            before = json.dumps(data, sort_keys=True)
            claims = data.setdefault(self.namespace, {})
            yield claims
            if json.dumps(data, sort_keys=True) != before:
                write_text(self._path, json.dumps(data))
        finally:
            self._lock.release()

    def claim(self, key: str, owner: str, takeover: str | None = None) -> bool:
        now = time.time()
        with self._locked() as claims:
            held = claims.get(key)
            if held is not None and (held["state"] == "done" or (
                    held["owner"] not in (owner, takeover) and held["beat"] >= now - self.grace)):
                return False
            claims[key] = {"state": "running", "owner": owner, "beat": now, "result": None}
            return True

    def _update(self, key: str, owner: str, **values: Any) -> bool:
        with self._locked() as claims:
            held = claims.get(key)
            if held is None or held["owner"] != owner or held["state"] != "running":
                return False
            held.update(values)
            return True

    def beat(self, key: str, owner: str) -> bool:
        return self._update(key, owner, beat=time.time())

    def finish(self, key: str, owner: str, result: str | None = None) -> bool:
        return self._update(key, owner, state="done", beat=time.time(), result=result)

    def release(self, key: str, owner: str) -> None:
        with self._locked() as claims:
            held = claims.get(key)
            if held is not None and held["owner"] == owner and held["state"] == "running":
                del claims[key]

    def all(self) -> dict[str, Claim]:
        now = time.time()
        with self._locked() as claims:
            return {k: self._record(k, c["state"], c["owner"], c["beat"], c["result"], now)
                    for k, c in claims.items()}


class _Beater(threading.Thread):
    """Refreshes some claims every ``interval`` seconds until stopped."""

    def __init__(self, interval: float, holds: list[tuple[Claims, str, str]]) -> None:
        super().__init__(daemon=True)
        self._interval, self._holds, self._stop_event = interval, holds, threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self._interval):
            for claims, key, owner in self._holds:
                claims.beat(key, owner)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@contextmanager
def beating(interval: float, *holds: tuple[Claims, str, str]) -> Iterator[None]:
    """Keep ``(claims, key, owner)`` holds alive while the block runs."""
    beater = _Beater(interval, list(holds))
    beater.start()
    try:
        yield
    finally:
        beater.stop()


# ---------------------------------------------------------------------------------------------
# Storages


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
            return _FileClaims(path.with_name(path.name + ".claims.json"), namespace, self.grace)
        if self._engine is None:
            self._engine = sa.create_engine(self.url, **_engine_kwargs(self.url))
            _create_table(self._engine)
        return _RDBClaims(self._engine, namespace, self.grace)

    def __str__(self) -> str:
        return redact(self.url)


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": _SQLITE_TIMEOUT_S}}
    return {"pool_pre_ping": True}


def _create_table(engine: sa.engine.Engine) -> None:
    try:
        _META.create_all(engine, checkfirst=True)
    except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError):
        # Two workers created it at the same moment; fine if it exists now.
        if not sa.inspect(engine).has_table(_TABLE.name):
            raise


def open_store(url: str, heartbeat: int = DEFAULT_HEARTBEAT_S, grace: int | None = None,
               max_retry: int = MAX_RETRY) -> Store:
    """Open ``url`` (see the module docstring) with trial heartbeats every ``heartbeat`` seconds.

    A running trial silent for ``grace`` seconds (default ``2 * heartbeat``) is failed and
    retried as a new trial, at most ``max_retry`` times.
    """
    for name, value in (("heartbeat", heartbeat), ("grace", grace)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ValueError(f"{name}={value!r} is not allowed; allowed: a whole number of "
                             "seconds >= 1")
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
            raise ValueError(f"storage={redact(url)!r} is not allowed; allowed: an SQLAlchemy "
                             "URL (sqlite:///PATH, postgresql+psycopg://USER@HOST/DB...) or "
                             "journal:PATH") from None
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


# ---------------------------------------------------------------------------------------------
# Batch ablations over a pool


def cell_key(variant_id: str, seed: int, key: str) -> str:
    """The claim key of one (variant, seed) cell; the run key makes a changed experiment new."""
    return f"{variant_id}/seed{seed}/{key}"


def run_grid(exp: Experiment, store: Store, results_dir: str | Path = "results",
             progress: bool | None = None, cache_dir: str | Path = ".cache/ablate",
             log: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Run the cells of experiment ``exp`` that no worker of the pool has run; return the runs.

    Returns when every cell is done (by any worker), after writing every row into
    ``results/<experiment>/runs/`` and the runs table. ``log`` gets one line per cell run here.
    """
    from tqdm.auto import tqdm

    from .. import runner
    from ..data import DataSpec, load_dataset

    exp_dir = Path(results_dir) / exp.name
    exp_dir.mkdir(parents=True, exist_ok=True)
    write_text(exp_dir / "experiment.json", json.dumps(runner.describe(exp), indent=2))
    spec = DataSpec(exp.data.name, exp.data.root, exp.config.image_size, exp.data.options)
    cells = {cell_key(v.id, s, runner.run_key(v, spec, exp.config, s, exp.profile_size)): (v, s)
             for v, s in exp.runs()}
    claims = store.claims(f"grid/{exp.name}")
    me, data = worker_id(), None
    bar = tqdm(total=len(cells), desc=f"{exp.name} ({me})", unit="run",
               disable=None if progress is None else not progress)
    while True:
        held = claims.all()
        done = [k for k in cells if k in held and held[k].state == "done"]
        bar.update(len(done) - bar.n)
        if len(done) == len(cells):
            break
        free = [k for k in cells if k not in held or held[k].stale]
        key = next((k for k in free if claims.claim(k, me)), None)
        if key is None:
            time.sleep(min(1.0, store.heartbeat / 2))
            continue
        variant, seed = cells[key]
        bar.set_postfix_str(f"{variant.id} seed {seed}")
        if data is None:
            data = load_dataset(spec, cache_dir)
        with beating(store.heartbeat, (claims, key, me)):
            row = _run_cell(exp, exp_dir, variant, seed, key.rsplit("/", 1)[1], data)
        if claims.finish(key, me, runner.row_text(row)):
            (log or tqdm.write)(f"ran {variant.id} seed {seed}: {row['status']}")
        else:
            (log or tqdm.write)(f"ran {variant.id} seed {seed}, but another worker took the "
                                "cell over (this worker missed its heartbeats)")
    bar.close()
    for key, claim in claims.all().items():
        if key in cells and claim.result:  # rows of cells run on other machines
            variant, seed = cells[key]
            row_file = runner.run_dir(exp_dir, variant, seed) / "row.json"
            run_key = key.rsplit("/", 1)[1]
            if not row_file.is_file() or json.loads(row_file.read_text()).get("run_key") != run_key:
                write_text(row_file, claim.result)
    runs = runner.collect_runs(exp_dir, exp)
    runner.write_runs(exp_dir, runs)
    return runs


def _run_cell(exp: Experiment, exp_dir: Path, variant, seed: int, key: str,
              data) -> dict[str, Any]:
    """One cell as ``ablate run`` does it: reuse a current row, resume a checkpoint, or train."""
    from .. import runner

    out = runner.run_dir(exp_dir, variant, seed)
    if runner.is_finished(out, key, retry_failed=False):
        return json.loads((out / "row.json").read_text())
    return runner.run_cell(exp, variant, seed, data, out, key, progress=False)
