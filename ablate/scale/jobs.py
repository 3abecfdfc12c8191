"""Local jobs: ``ablate run --jobs N`` trains an experiment's cells in N worker processes.

A job is an ``ablate worker --experiment FILE`` process (``ablate.scale.grid``) on the
experiment's grid store (``sqlite:///results/<name>/grid.db``), so the claims that make any
number of workers safe on one storage make these safe too, and a worker started by hand on the
same store joins them. ``plan_jobs`` decides what each job gets:

- CPU: ``max(1, T // N)`` torch threads each (T: what one process would use, torch's default),
  unless the experiment sets ``threads``. The count goes into the job's ``TrainConfig``, so it is
  in every run key the job makes: a cell trained with 1 thread never passes for one trained with
  every core (torch sums in another order when the count changes). ``threads: 0`` (torch's
  default, what every committed row ran with) keeps its meaning and its keys: one job, every core.
- CUDA: jobs go round-robin over the visible GPUs (``CUDA_VISIBLE_DEVICES`` set per job), ``K``
  per GPU with ``--jobs-per-gpu K`` (N = GPUs x K unless given). GPU kernels do not depend on the
  CPU threads, so the run keys keep ``threads`` as the experiment gives it; each job's OpenMP
  pool is only capped at ``max(1, T // N)`` (``OMP_NUM_THREADS``) so the jobs do not oversubscribe
  the CPU. A device pinned as ``cuda:N`` keeps every job on that GPU.

``run_jobs`` starts the jobs (each in its own session, its output in
``results/<name>/jobs/<k>.log``, its environment set before torch starts), shows one progress bar
over the study's cells from the claims, and when they end writes the runs table once. A job
that dies is reported with its log; the claims it held are released at once, so the other jobs
(or the next run) take its cell over and resume its checkpoint. Ctrl-C or SIGTERM stops every
job: each gets SIGINT (it gives its claim back and exits), those still alive after
``STOP_TIMEOUT_S`` are killed; no job outlives the call and every finished row is kept.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import runner
from ..common.checks import not_allowed, to_int
from ..common.env import resolve_device
from ..experiment import Experiment
from ..results import collect_runs, run_dir, write_runs
from .grid import planned_cells
from .storage import DEFAULT_HEARTBEAT_S, open_store

JOBS_DIR = "jobs"            # results/<name>/jobs/<k>.log
STOP_TIMEOUT_S = 60          # a stopped job's time to give its claim back before it is killed
POLL_S = 1.0                 # how often the progress bar and the jobs are looked at
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # jobs import this same ablate


def check_jobs(name: str, value: Any) -> int:
    """``value`` (an int or its text, as given on the command line or in YAML) as an integer
    >= 1; anything else is refused naming ``name`` and the value."""
    try:
        number = to_int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise not_allowed(name, value, "an integer >= 1 (worker processes)")
    return number


@dataclass(frozen=True)
class Job:
    """One worker process: its number (1-based), torch threads and GPU."""

    index: int
    threads: int            # CPU: torch threads, in its run keys; CUDA: OpenMP cap only
    gpu: str | None = None  # its CUDA_VISIBLE_DEVICES; None: inherited


def visible_gpus(count: int, env: dict[str, str] | None = None) -> list[str]:
    """The ids of the ``count`` GPUs this process sees: its ``CUDA_VISIBLE_DEVICES`` entries, or
    0..count-1 when that is unset."""
    given = (os.environ if env is None else env).get("CUDA_VISIBLE_DEVICES")
    if given is None:
        return [str(i) for i in range(count)]
    return [g.strip() for g in given.split(",") if g.strip()][:count]


def plan_jobs(jobs: int | None, per_gpu: int | None, device: str, threads: int, cores: int,
              gpus: Sequence[str] = ()) -> list[Job]:
    """The jobs of one run (see the module docstring); one job when neither count is given.

    ``device`` is the experiment's device as resolved here (``cpu``, ``cuda``, ``cuda:N``,
    ``mps``), ``threads`` its ``TrainConfig.threads``, ``cores`` torch's default thread count,
    ``gpus`` the visible GPU ids (``visible_gpus``).
    """
    cuda = device.split(":")[0] == "cuda"
    if per_gpu is not None and not cuda:
        raise ValueError(f"--jobs-per-gpu={per_gpu} is not allowed on device {device!r}; "
                         "allowed: on CUDA only (on the CPU, give --jobs)")
    if not cuda:
        n = jobs or 1
        share = threads or (max(1, cores // n) if n > 1 else 0)
        return [Job(k + 1, share) for k in range(n)]
    slots = [None] if ":" in device else list(gpus) or [None]
    n = jobs or len(slots) * (per_gpu or 1)
    return [Job(k + 1, threads or max(1, cores // n), slots[k % len(slots)]) for k in range(n)]


def local_jobs(exp: Experiment, jobs: int | None,
               per_gpu: int | None) -> tuple[list[Job], str]:
    """The jobs of ``exp`` on this machine (``plan_jobs``), and its device as resolved here."""
    device = str(resolve_device(exp.config.device))
    gpus = visible_gpus(torch.cuda.device_count()) if device.startswith("cuda") else ()
    return plan_jobs(jobs, per_gpu, device, exp.config.threads, torch.get_num_threads(),
                     gpus), device


def job_experiment(exp: Experiment, job: Job, device: str) -> Experiment:
    """``exp`` as job ``job`` runs it: on the CPU with the job's threads in its settings."""
    if device.split(":")[0] == "cuda" or job.threads == exp.config.threads:
        return exp
    return dataclasses.replace(exp, config=exp.config.replace(threads=job.threads))


@dataclass
class JobsResult:
    """What ``run_jobs`` ends with: the runs table, the dead jobs, whether it was stopped."""

    runs: pd.DataFrame
    missing: int                 # planned cells without a current row
    died: list[str]              # one line per job that died: its exit and its log
    stopped: bool = False


class _Stop(Exception):
    """SIGTERM in the parent, turned into a clean stop of every job."""


def run_jobs(path: str | Path, exp: Experiment, jobs: Sequence[Job], device: str,
             results_dir: str | Path = "results", worker_args: Sequence[str] = (),
             progress: bool | None = None, log: Callable[[str], None] | None = None,
             heartbeat: float = DEFAULT_HEARTBEAT_S) -> JobsResult:
    """Run the cells of experiment ``exp`` (read from ``path``) in ``jobs``; see the module
    docstring. ``device`` is the experiment's device as resolved here; ``worker_args`` are
    passed on to every job's ``ablate worker`` (``--plugin``, ``--track``)."""
    log = log or (lambda line: tqdm.write(line, file=sys.stderr))
    exp_dir = Path(results_dir) / exp.name
    logs = exp_dir / JOBS_DIR
    logs.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{exp_dir / 'grid.db'}"
    store = open_store(url, heartbeat)  # made here first: the jobs do not race on its schema
    claims = store.claims(f"grid/{exp.name}")
    keyed = job_experiment(exp, jobs[0], device)  # every job shares its threads
    command = [sys.executable, "-m", "ablate.cli", "worker", "--experiment", str(path),
               "--results", str(results_dir), "--storage", url, "--heartbeat", str(heartbeat)]
    command += worker_args
    if keyed is not exp:
        command += ["--threads", str(keyed.config.threads)]
    for cell in _cells(keyed, exp_dir).values():
        _reuse(keyed, cell, Path(results_dir))
    procs: dict[int, tuple[subprocess.Popen, IO]] = {}
    died: list[str] = []
    bar = tqdm(total=0, desc=f"{exp.name} ({len(jobs)} jobs)", unit="run",
               disable=None if progress is None else not progress)
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_stop) if main else None
    stopped = False
    try:
        for job in jobs:
            out = open(logs / f"{job.index}.log", "w")  # noqa: SIM115 - open while the job runs
            procs[job.index] = (subprocess.Popen(
                command, env=_job_env(job), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True), out)
        while procs:
            for index, (proc, out) in list(procs.items()):
                if proc.poll() is None:
                    continue
                out.close()
                del procs[index]
                if proc.returncode != 0:
                    died.append(f"job {index} died ({_exit_text(proc.returncode)}); its log: "
                                f"{logs / f'{index}.log'}")
                    log(f"ablate: {died[-1]}")
                    _release(claims, proc.pid)
            cells = _cells(keyed, exp_dir)
            held = claims.all()
            bar.total = len(cells)
            bar.n = sum(1 for k in cells if k in held and held[k].state == "done")
            bar.refresh()
            if procs:
                time.sleep(POLL_S)
    except (KeyboardInterrupt, _Stop):
        stopped = True
        log(f"ablate: stopping {len(procs)} job(s) of {exp.name}")
        _stop(procs, claims)
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        for proc, out in procs.values():  # only after an error of this function
            proc.kill()
            proc.wait()
            out.close()
        bar.close()
    cells = _cells(keyed, exp_dir)
    runs = _current(collect_runs(exp_dir, keyed, [(v, s) for v, s, _ in cells.values()]), cells)
    write_runs(exp_dir, runs)
    return JobsResult(runs, len(cells) - len(runs), died, stopped)


def _job_env(job: Job) -> dict[str, str]:
    """A job's environment: the threads set before torch starts, its GPU, this ablate."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT),
                                                      env.get("PYTHONPATH")]))
    if job.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(job.threads)
    if job.gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = job.gpu
    return env


def _cells(exp: Experiment, exp_dir: Path) -> dict[str, tuple[Any, int, str]]:
    """The planned cells by claim key (adaptive seeds: as planned from the rows so far)."""
    rows = collect_runs(exp_dir, exp) if exp.adaptive else pd.DataFrame()
    return planned_cells(exp, runner.planned_runs(exp, rows))


def _reuse(exp: Experiment, cell: tuple[Any, int, str], results_dir: Path) -> None:
    """Copy a cell's identical finished run from another experiment, as ``ablate run`` does
    (grid workers do not), before the jobs start; a cell with a folder of its own is left to
    its job (``run_cell`` keeps, resumes or replaces it)."""
    variant, seed, key = cell
    out = run_dir(results_dir / exp.name, variant, seed)
    if not out.exists():
        runner.reuse_run(results_dir, variant, seed, out, key, exp.name)


def _current(runs: pd.DataFrame, cells: dict[str, tuple[Any, int, str]]) -> pd.DataFrame:
    """The rows of ``runs`` made under their cell's run key (a stale row of a stopped run, e.g.
    one trained with another thread count, is left out)."""
    if runs.empty:
        return runs
    keys = {(v.id, s): key for v, s, key in cells.values()}
    current = [keys.get((v, int(s))) == k
               for v, s, k in zip(runs["variant"], runs["seed"], runs["run_key"])]
    return runs[current].reset_index(drop=True)


def _release(claims, pid: int) -> None:
    """Give back the running claims of the dead job ``pid`` of this machine (a claim's owner is
    ``host:pid:suffix``), so the other jobs take its cell now, not after the grace."""
    me = f"{socket.gethostname()}:{pid}:"
    for key, claim in claims.all().items():
        if claim.state == "running" and claim.owner.startswith(me):
            claims.release(key, claim.owner)


def _stop(procs: dict[int, tuple[subprocess.Popen, IO]], claims) -> None:
    """SIGINT to every job, a wait for each, SIGKILL (and its claims released) after
    ``STOP_TIMEOUT_S`` or a second Ctrl-C."""
    for proc, _ in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    try:
        for proc, _ in procs.values():
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
    except KeyboardInterrupt:
        pass  # a second Ctrl-C: kill them now
    for index, (proc, out) in list(procs.items()):
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            _release(claims, proc.pid)
        out.close()
        del procs[index]


def _raise_stop(signum, frame) -> None:
    raise _Stop()


def _exit_text(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit {code}"
