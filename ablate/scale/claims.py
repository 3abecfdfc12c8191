"""Atomic claims on keys, the one primitive a pool of workers needs on top of Optuna.

A worker takes a key so that no other worker holds it (a grid cell, a search variant, a slot
among the asked trials). A claim is held by an owner, kept alive by heartbeats (``beating``),
finished (``done``, with an optional JSON result) or released, and a claim whose holder stopped
beating for ``grace`` seconds can be taken over. ``take`` records a key as done at once, for
the one caller that gets there first (a search trial, run by one worker, never by two), and
optionally only while the caller still holds another key (the search slot it takes the trial
for), checked in the same transaction: a worker taken for dead cannot take work for a key that
is no longer its own. A worker learns that a hold was lost from its ``beating`` block. In an
RDB a claim is one row of the ``ablate_claims`` table, taken by a primary-key insert or a
conditional ``UPDATE`` whose row count says who won (``RDBClaims``); beside a journal file it
is one JSON file changed under Optuna's journal file lock (``FileClaims``). Heartbeat times come
from each worker's clock: keep machines in NTP sync and ``grace`` well above any clock skew.

``Store.claims`` (``ablate.scale.storage``) opens the right kind for a storage URL.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from optuna.storages.journal import JournalFileOpenLock

from ..common.files import write_text


def worker_id() -> str:
    """A name for this process, unique across machines: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


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

    def take(self, key: str, owner: str, result: str | None = None,
             holding: tuple[Claims, str] | None = None) -> bool:
        """Record ``key`` as done by ``owner`` with a JSON ``result`` if nobody has it yet; True
        for the one caller that recorded it (a running or done key is never taken).

        With ``holding=(claims, held_key)`` (claims of the same store), only while ``owner``
        still holds ``held_key`` there, in one transaction (its heartbeat is refreshed too).
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


def create_table(engine: sa.engine.Engine) -> None:
    """Create the ``ablate_claims`` table if it is missing (safe when workers race to do it)."""
    try:
        _META.create_all(engine, checkfirst=True)
    except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError):
        # Two workers created it at the same moment; fine if it exists now.
        if not sa.inspect(engine).has_table(_TABLE.name):
            raise


class RDBClaims(Claims):
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
        return taken == 1 or self._insert(key, "running", owner, now, None)

    def take(self, key: str, owner: str, result: str | None = None,
             holding: tuple[Claims, str] | None = None) -> bool:
        if holding is None:
            return self._insert(key, "done", owner, time.time(), result)
        held, held_key = holding
        if not isinstance(held, RDBClaims) or held._engine is not self._engine:
            raise ValueError("take(holding=...) needs claims of the same store")
        return self._insert(key, "done", owner, time.time(), result,
                            lambda conn: conn.execute(
                                _TABLE.update()
                                .where(held._where(held_key), _TABLE.c.owner == owner,
                                       _TABLE.c.state == "running")
                                .values(beat=time.time())).rowcount == 1)

    def _insert(self, key: str, state: str, owner: str, beat: float, result: str | None,
                first: Callable[[sa.engine.Connection], bool] | None = None) -> bool:
        """One primary-key insert: the database lets exactly one of racing workers add the row.
        ``first(conn)`` runs before it in the same transaction; False there adds nothing (the
        row it updates stays locked until the insert is committed or rolled back)."""
        try:
            with self._engine.begin() as conn:
                if first is not None and not first(conn):
                    return False
                conn.execute(_TABLE.insert().values(namespace=self.namespace, key=key, state=state,
                                                    owner=owner, beat=beat, result=result))
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


class FileClaims(Claims):
    """Claims in one JSON file beside a journal, changed only under Optuna's journal file lock."""

    def __init__(self, path: Path, namespace: str, grace: float) -> None:
        super().__init__(namespace, grace)
        self._path = path
        self._lock = JournalFileOpenLock(str(path))

    @contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, Any]]]:
        """This namespace's claims, written back if changed, under the file lock."""
        with self._file() as data:
            yield data.setdefault(self.namespace, {})

    @contextmanager
    def _file(self) -> Iterator[dict[str, dict[str, dict[str, Any]]]]:
        """Every namespace of the file, written back if changed, under the file lock."""
        self._lock.acquire()
        try:
            data = json.loads(self._path.read_text()) if self._path.is_file() else {}
            before = json.dumps(data, sort_keys=True)
            yield data
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

    def take(self, key: str, owner: str, result: str | None = None,
             holding: tuple[Claims, str] | None = None) -> bool:
        if holding is not None and (not isinstance(holding[0], FileClaims)
                                    or holding[0]._path != self._path):
            raise ValueError("take(holding=...) needs claims of the same store")
        with self._file() as data:
            claims = data.setdefault(self.namespace, {})
            if key in claims:
                return False
            now = time.time()
            if holding is not None:
                held = data.get(holding[0].namespace, {}).get(holding[1])
                if held is None or held["owner"] != owner or held["state"] != "running":
                    return False
                held["beat"] = now
            claims[key] = {"state": "done", "owner": owner, "beat": now, "result": result}
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


class HoldLost(BaseException):
    """This worker's hold was taken over (it was taken for dead: its heartbeats were late).

    Raised to stop the work at once, as if the worker had died: like an interruption, it is no
    failure of the work (nothing is recorded; the new holder resumes it), so it passes through
    the handlers that record failures (``except Exception``).
    """


class _Beater(threading.Thread):
    """Refreshes some claims every ``interval`` seconds until stopped; ``lost`` is set once a
    hold was found taken over or finished by someone else."""

    def __init__(self, interval: float, holds: list[tuple[Claims, str, str]]) -> None:
        super().__init__(daemon=True)
        self._interval, self._holds, self._stop_event = interval, holds, threading.Event()
        self.lost, self._gone = threading.Event(), ""

    def run(self) -> None:
        while not self._stop_event.wait(self._interval):
            for claims, key, owner in self._holds:
                if not claims.beat(key, owner):
                    self._gone = f"{key} ({claims.namespace})"
                    self.lost.set()

    def check(self) -> None:
        """Raise ``HoldLost``, naming the hold, if a hold was lost."""
        if self.lost.is_set():
            raise HoldLost(f"{self._gone} was taken over by another worker")

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@contextmanager
def beating(interval: float, *holds: tuple[Claims, str, str]) -> Iterator[_Beater]:
    """Keep ``(claims, key, owner)`` holds alive while the block runs; the block may call the
    yielded beater's ``check()`` between steps of its work to stop once a hold was lost."""
    beater = _Beater(interval, list(holds))
    beater.start()
    try:
        yield beater
    finally:
        beater.stop()
