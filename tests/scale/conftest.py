"""Shared pieces of the tests of ablate.scale: a tiny search file and its store, real
``ablate worker`` processes, forked workers killed at a fault point (``ablate.common.faults``) with
training replaced by an instant stand-in, and the storages they share (SQLite, a journal file,
a throw-away PostgreSQL server)."""

from __future__ import annotations

import copy
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from ablate import runner
from ablate.common.faults import FAULT_ENV
from ablate.evaluation.metrics import METRICS
from ablate.scale.claims import _Beater
from ablate.scale.storage import open_store

HEARTBEAT = ["--heartbeat", "1", "--grace", "4"]
STORAGES = ("sqlite", "journal", "postgresql")
TINY = {
    "study": "tiny",
    "dataset": {"name": "shapes", "options": {"n_train": 16, "n_val": 8}},
    "preset": "quick",
    "train": {"epochs": 1, "image_size": 32, "batch_size": 8, "samples": 0, "threads": 1,
              "encoder_init": None},
    "baseline": {"widths": [16, 8, 8, 8]},
    "space": {"pool": ["M", "MAA"], "block": ["conv", "dsconv"]},
    "objectives": "dice,gmacs",
    "trials": 2,
    "sampler": "random",
    "profile_size": 32,
}


@pytest.fixture
def tiny():
    """``tiny(**changes)``: the tiny search file as a mapping, with top-level keys changed."""
    def make(**changes) -> dict:
        raw = copy.deepcopy(TINY)
        raw.update(changes)
        return raw
    return make


@pytest.fixture
def tiny_store(tmp_path):
    """The tiny study's SQLite store under ``tmp_path``, with fast heartbeats."""
    return open_store(f"sqlite:///{tmp_path / 'tiny' / 'study.db'}", heartbeat=1, grace=5)


@pytest.fixture
def start_worker(tmp_path):
    """``start_worker(*args)``: an ``ablate worker`` process in ``tmp_path`` (fast heartbeats)."""
    def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "ablate.cli", "worker", *args,
                                 "--results", str(tmp_path / "results"), *HEARTBEAT],
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, **(env or {})})
    return start


@pytest.fixture
def finish_workers():
    """``finish_workers(procs)``: wait for each worker, check it succeeded, return its output."""
    def finish(procs: list[subprocess.Popen], timeout: float = 300) -> list[str]:
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            assert p.returncode == 0, f"worker failed:\n{out}\n{err}"
            outs.append(out + err)
        return outs
    return finish


@pytest.fixture
def beats_lost():
    """``beats_lost()``: wait (30 s at most) until a heartbeat of this process found a hold taken
    over, so a test need not guess how long the beating thread takes on a busy machine."""
    def wait() -> None:
        deadline = time.monotonic() + 30
        while not any(isinstance(t, _Beater) and t.lost.is_set() for t in threading.enumerate()):
            assert time.monotonic() < deadline, "no heartbeat found its hold taken over"
            time.sleep(0.01)
    return wait


@pytest.fixture
def taken_over(monkeypatch, fake_training, beats_lost):
    """``taken_over(take)``: at the end of the next training's first epoch, ``take(variant)``
    takes this worker's work over (as a worker that found its beats late does), and the
    training goes on once a heartbeat found out; later trainings are ``fake_training``'s.
    Returns the list of the epochs that training reached."""
    def arm(take: Callable) -> list[int]:
        fake, epochs = runner.run_one, []

        def late(variant, *args, on_epoch, **kwargs):
            monkeypatch.setattr(runner, "run_one", fake)

            def hook(epoch: int, scores: dict) -> None:
                epochs.append(epoch)
                if epoch == 1:
                    take(variant)
                    beats_lost()
                on_epoch(epoch, scores)
            return fake(variant, *args, on_epoch=hook, **kwargs)

        monkeypatch.setattr(runner, "run_one", late)
        return epochs
    return arm


@pytest.fixture
def fast():
    """``open_store`` settings for forked workers: a beat every 0.5 s, stale after 6 s. A busy
    machine holds a live worker's beats back (on CI's two cores, sixteen forked workers and a
    PostgreSQL server once did for over 3 s). A worker taken for dead while alive still leaves
    the study exact (test_ledger), but may train its variant a second time, which the fault
    tests count: the margin keeps those counts about the faults they inject."""
    return {"heartbeat": 0.5, "grace": 6.0}


@pytest.fixture
def fast_tmp(tmp_path):
    """A fresh folder in memory (/dev/shm) where there is one, else ``tmp_path``: SQLite and
    PostgreSQL sync every commit to disk, which dominates the time of the forked workers."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="ablate-test-", dir=shm))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fake_training(monkeypatch, fast_tmp):
    """Training replaced by an instant stand-in for this test and the workers it forks.

    ``runner.run_cell`` is kept (row.json, resume, reuse); only ``runner.run_one`` is replaced:
    it calls the epoch hook once per epoch (so ``epoch-end`` is passed), then logs
    ``<experiment> <variant> seed<k>`` and returns an ok row. The fixture returns a function
    giving the logged lines as a Counter: how often each run was trained to completion.
    """
    log = fast_tmp / "trained.log"

    def run_one(variant, data, config, seed, out_dir=None, profile_size=224, experiment="",
                preset="", progress=None, on_epoch=None, metric="dice"):
        for epoch in range(1, config.epochs + 1):
            if on_epoch is not None:
                on_epoch(epoch, {m: 0.5 for m in METRICS.names()})
        with open(log, "a") as f:  # one short append: whole lines even from racing workers
            f.write(f"{experiment} {variant.id} seed{seed}\n")
        row = runner.base_row(variant, seed, experiment, preset, config)
        row.update({m: 0.5 for m in METRICS.names()})
        row.update(status="ok", epochs_run=config.epochs, dataset="shapes", params_m=1.0,
                   gmacs_thop=len(variant.id) / 100)
        return row

    monkeypatch.setattr(runner, "run_one", run_one)
    return lambda: Counter(log.read_text().splitlines() if log.is_file() else [])


@pytest.fixture
def fork():
    """``fork(work, fault=None)``: run ``work()`` in a forked worker process, with
    ``ABLATE_FAULT=fault``; returns its pid (see ``ended``). Children still running at the end of
    the test are killed.

    The child shares what this process imported and patched, runs PyTorch on one thread (no
    OpenMP team across a fork) and ends with ``os._exit``: 0 when ``work`` returned, 1 (and a
    traceback on stderr) when it raised; no test teardown runs in it.
    """
    pids = []

    def start(work: Callable[[], object], fault: str | None = None) -> int:
        pid = os.fork()
        if pid:
            pids.append(pid)
            return pid
        code = 1
        try:
            if fault is not None:
                os.environ[FAULT_ENV] = fault
            torch.set_num_threads(1)
            work()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)

    yield start
    for pid in pids:
        try:
            if os.waitpid(pid, os.WNOHANG) == (0, 0):  # our child, still running
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        except ChildProcessError:
            pass  # already waited for (``ended``)


@pytest.fixture
def ended():
    """``ended(pid)``: wait for a forked process; ``"killed"`` (SIGKILL) or ``"exit <code>"``."""
    def wait(pid: int, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                return "still running"
            time.sleep(0.05)
        if not os.WIFSIGNALED(status):
            return f"exit {os.WEXITSTATUS(status)}"
        return "killed" if os.WTERMSIG(status) == signal.SIGKILL else "signalled"
    return wait


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(dirs[-1]).parent if dirs else None


@pytest.fixture(scope="session")
def postgres_url():
    """A throw-away PostgreSQL cluster on 127.0.0.1 with a password, for the whole session
    (tests give their studies distinct names); skipped when impossible."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server (initdb, pg_ctl): install Debian's postgresql "
                    "package (.ci/postgres.sh does)")
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install "
                                          "'ablate[postgres]')")
    user = {}
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            import pwd

            entry = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run initdb as")
        user = {"user": entry.pw_uid, "group": entry.pw_gid}
    root = Path(tempfile.mkdtemp(prefix="ablate-pg-"))
    data, password = root / "data", "s3cret-pw"
    (root / "pw").write_text(password)
    if user:
        os.chown(root, user["user"], user["group"])
        os.chown(root / "pw", user["user"], user["group"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def run(*cmd: str) -> None:
        subprocess.run(cmd, check=True, capture_output=True, text=True, **user)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "ablate", f"--pwfile={root / 'pw'}",
            "-A", "scram-sha-256")
        # A throw-away cluster: no sync to disk (fsync=off), as fast as the tests can go.
        run(str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"),
            "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                  "-c synchronous_commit=off -c full_page_writes=off", "start")
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start PostgreSQL: {exc.stderr.strip()[-300:]}")
    yield f"postgresql+psycopg://ablate:{password}@127.0.0.1:{port}/postgres"
    run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=STORAGES)
def storage(request, fast_tmp):
    """``storage(name)``: a URL of the test's storage kind (its parameter) for study or
    experiment ``name``: a file each for SQLite and a journal, one shared PostgreSQL server.
    The storage's libraries are loaded here, once, rather than in every forked worker."""
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        make = lambda name: url  # noqa: E731
    elif request.param == "journal":
        make = lambda name: f"journal:{fast_tmp / name}.journal"  # noqa: E731
    else:
        make = lambda name: f"sqlite:///{fast_tmp / name}.db"  # noqa: E731
    open_store(make("warm-up")).claims("warm-up").all()
    return make
