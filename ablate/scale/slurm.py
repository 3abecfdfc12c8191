"""Arrays of workers on a SLURM cluster, submitted through submitit: ``ablate launch slurm``.

``launch`` submits one job array for an experiment or a search file: each array task is one
worker (``run_grid`` or ``run_search``) on the shared storage, so the cells (or trials) are
spread over the tasks exactly as over hand-started ``ablate worker`` processes. Before anything
is submitted, ``check_launch`` refuses (``ValueError``; exit 2 on the command line): submitit
missing, a storage URL holding a password (it would be pickled into the job files), a storage
it cannot open, no SLURM, a partition SLURM does not list, and a storage or results folder the
tasks cannot share (``check_placement``).

Requeue: submitit asks SLURM to send SIGUSR2 before a task's time limit (``--signal``), and on
it calls the worker's ``checkpoint``, stores the call and requeues the task (``scontrol
requeue``); the worker exits at once, releasing its cell (a training saves a checkpoint at
every epoch end). A task SLURM preempts or requeues by itself starts again the same way. Each
task works under one name in the claims, ``slurm:<cluster>:<array job>_<task>``, stable across
its requeues, so a restarted task takes back a cell it still held at once, without waiting for
``grace`` (``ablate.scale.pool``). Whoever takes a cell resumes it from its checkpoint through
``ablate.runner.run_cell``: one row per cell, as with hand-started workers.

Each launch is recorded in ``results/<name>/slurm/launch.json`` beside submitit's files and the
tasks' logs (``<job>_<task>_0_log.out`` / ``.err``); ``status`` reads it back with the state of
each task (``squeue``, else ``sacct``, else the result submitit left) and the cells (or trial
slots) done from the claims.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import json
import os
import pickle
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..common.files import write_text
from ..experiment import read_mapping
from ..tracking import check_sinks
from .slurm_spec import SlurmSpec
from .storage import journal_path, open_store, redact

LAUNCH_FILE = "launch.json"
EXPERIMENT, SEARCH = "experiment", "search"
#: File systems shared between machines (``/proc/mounts`` types); ``fuse.*`` counts too.
NETWORK_FS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs",
                        "glusterfs", "ceph", "cephfs", "panfs", "pvfs2", "orangefs", "afs",
                        "wekafs", "ocfs2", "gfs2"})
#: Requeues after a time limit before submitit gives a task up (preemptions do not count).
MAX_TIMEOUTS = 20
#: Task states of a job still in the queue or running.
ACTIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED",
                    "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED", "STOPPED",
                    "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD"})
COMPLETED = "COMPLETED"


@dataclass(frozen=True)
class Launch:
    """One submitted (or about to be submitted) array: what ``launch.json`` records."""

    kind: str          # "experiment" or "search"
    name: str          # the experiment's name or the study's: results/<name>/
    file: str          # absolute path of the YAML file every task reads
    storage: str
    results: str       # absolute results root
    spec: SlurmSpec
    heartbeat: float
    grace: float | None = None
    plugins: tuple[str, ...] = ()
    tracking: tuple[str, ...] = ()  # --track sinks, on top of the file's tracking:
    job_id: str = ""
    submitted: str = ""

    @property
    def folder(self) -> Path:
        """Where submitit keeps the job files and the tasks' logs."""
        return Path(self.results) / self.name / "slurm"

    def log(self, task: int, stream: str = "err") -> Path:
        """A task's log (``err``: tracebacks, ``out``: what the worker printed)."""
        return self.folder / f"{self.job_id}_{task}_0_log.{stream}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["spec"]["setup"], data["plugins"] = list(self.spec.setup), list(self.plugins)
        data["tracking"] = list(self.tracking)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Launch:
        spec = SlurmSpec(**{**data["spec"], "setup": tuple(data["spec"]["setup"])})
        return cls(**{**data, "spec": spec, "plugins": tuple(data["plugins"]),
                      "tracking": tuple(data.get("tracking", ()))})


def plan_launch(file: str | Path, results: str | Path = "results", storage: str | None = None,
                heartbeat: float = 60, grace: float | None = None,
                plugins: tuple[str, ...] = (), tracking: tuple[str, ...] = (),
                **options: Any) -> Launch:
    """The launch of ``file`` (an experiment, or a search: it has a ``space``) with the file's
    ``slurm:`` keys, ``options`` (not None) on top, and the tracker sinks ``tracking`` added to
    the file's; checks the file, the sinks and the options only."""
    from ..experiment import load_experiment
    from .search import default_storage
    from .search_spec import load_search

    path = Path(file).resolve()
    try:
        tracking = check_sinks(list(tracking))
    except ValueError as exc:
        raise ValueError(f"--track: {exc}") from None
    if "space" in read_mapping(path, "experiment or search", ("dataset", "space")):
        spec = load_search(path).with_plugins(plugins)
        kind, name, slurm = SEARCH, spec.name, spec.slurm
        url = storage or spec.storage or default_storage(spec.name, Path(results).resolve())
    else:
        exp = load_experiment(path)
        kind, name, slurm = EXPERIMENT, exp.name, exp.slurm
        url = storage or f"sqlite:///{Path(results).resolve() / exp.name / 'grid.db'}"
    return Launch(kind, name, str(path), url, str(Path(results).resolve()),
                  slurm.replace(**options), heartbeat, grace, tuple(plugins), tracking)


def check_launch(launch: Launch, mounts: str | None = None) -> int:
    """Refuse (``ValueError``) a launch that cannot work, before anything is submitted; return
    the number of nodes of its partition."""
    if importlib.util.find_spec("submitit") is None:
        raise ValueError("ablate launch slurm needs submitit: pip install 'ablate[slurm]'")
    if ":***@" in redact(launch.storage):
        raise ValueError(f"storage {redact(launch.storage)}: a password in the URL would be "
                         f"written into the job files under {launch.folder}; give it through "
                         "PGPASSWORD or ~/.pgpass instead")
    _check_storage(launch)
    storage_file(launch.storage)  # an in-memory database is refused
    nodes = partition_nodes(launch.spec.partition)
    check_placement(launch.storage, Path(launch.results), nodes,
                    launch.spec.partition or "the default partition", mounts)
    return nodes


def _check_storage(launch: Launch) -> None:
    """Open the storage the tasks will share (and the search's study), as a worker would."""
    store = open_store(launch.storage, launch.heartbeat, launch.grace)
    try:
        store.claims(f"launch/{launch.name}").all()
    except sa.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ValueError(f"cannot open storage {redact(launch.storage)}: {reason}") from None
    if launch.kind == SEARCH:
        from .search import open_study
        from .search_spec import load_search

        open_study(load_search(launch.file).with_plugins(launch.plugins), store)


def _slurm(*command: str) -> str:
    """The output of a SLURM command; a missing command or a failure is a ``ValueError``."""
    if shutil.which(command[0]) is None:
        raise ValueError(f"no SLURM here: `{command[0]}` is not on PATH (run ablate launch "
                         "slurm on a login node of the cluster)")
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise ValueError(f"`{' '.join(command)}` failed: {done.stderr.strip() or done.stdout}")
    return done.stdout


def partition_nodes(partition: str | None) -> int:
    """How many nodes ``partition`` (None: the default one) has; an unknown one is refused."""
    nodes: dict[str, int] = {}
    default = None
    for line in _slurm("sinfo", "-h", "-o", "%P|%D").splitlines():
        name, count = line.strip().split("|")
        if name.endswith("*"):
            name = default = name[:-1]
        nodes[name] = nodes.get(name, 0) + int(count)
    if partition is None and default is None:
        raise ValueError(f"the cluster has no default partition; give --partition (one of "
                         f"{', '.join(nodes) or 'none'})")
    if (partition or default) not in nodes:
        raise ValueError(f"partition={partition!r} is not allowed (SLURM does not list it); "
                         f"allowed: {', '.join(nodes) or 'none (sinfo lists no partition)'}")
    return nodes[partition or default]


def fs_type(path: Path, mounts: str | None = None) -> str:
    """The file system type of ``path`` (made or not: symbolic links resolved as far as it
    exists), from the longest mount point of ``mounts`` (the text of ``/proc/mounts``) that
    holds it."""
    if mounts is None:
        mounts = Path("/proc/mounts").read_text() if Path("/proc/mounts").is_file() else ""
    path, found, kind = Path(os.path.realpath(path)), -1, "unknown"
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = Path(fields[1].replace("\\040", " "))
        if (path == point or point in path.parents) and len(str(point)) > found:
            found, kind = len(str(point)), fields[2]
    return kind


def is_network_fs(kind: str) -> bool:
    """Whether a file system type is shared between machines (NFS, Lustre, GPFS, ...)."""
    return kind in NETWORK_FS or kind.startswith("fuse.")


def storage_file(storage: str) -> Path | None:
    """The file of a SQLite or journal storage (None for a server); in-memory is refused."""
    if journal_path(storage) is not None or not storage.startswith("sqlite"):
        return journal_path(storage)
    database = sa.engine.make_url(storage).database
    if database in (None, "", ":memory:"):
        raise ValueError(f"storage {storage}: an in-memory SQLite database is private to one "
                         "process; array tasks need a file or a server")
    return Path(database)


def check_placement(storage: str, results: Path, nodes: int, partition: str,
                    mounts: str | None = None) -> None:
    """Refuse a storage or results folder the array tasks cannot share.

    SQLite locks files, which NFS and its kin do not do reliably: a SQLite file on a network
    file system is refused on any partition. On a partition of several nodes, the tasks run on
    different machines, so the storage file (SQLite or journal) and the results folder (rows,
    checkpoints, logs) must sit on a shared file system; a local disk is refused. PostgreSQL
    (any server URL) is shared by construction.
    """
    several = f"partition {partition} has {nodes} nodes"
    where = storage_file(storage)
    kind = fs_type(where, mounts) if where is not None else "server"
    if journal_path(storage) is None and where is not None and is_network_fs(kind):
        raise ValueError(f"storage {storage} is refused: SQLite on a network file system "
                         f"({kind}) can corrupt the study, its file locks are unreliable there; "
                         "use journal:PATH on the shared file system or "
                         "postgresql+psycopg://USER@HOST/DB")
    if nodes > 1 and where is not None and not is_network_fs(kind):
        raise ValueError(f"storage {storage} is on a local disk ({kind}) but {several}: tasks "
                         "on other nodes would not see it; use journal:PATH on a shared file "
                         "system or PostgreSQL, or a single-node partition")
    kind = fs_type(results, mounts)
    if nodes > 1 and not is_network_fs(kind):
        raise ValueError(f"results folder {results} is on a local disk ({kind}) but "
                         f"{several}: rows and checkpoints written on one node would be missing "
                         "on the others; give --results on a shared file system")


def submit(launch: Launch) -> Launch:
    """Submit the array (submitit) and record it in ``launch.json``; the launch with its job
    id."""
    import submitit

    spec = launch.spec
    launch.folder.mkdir(parents=True, exist_ok=True)
    executor = submitit.SlurmExecutor(folder=launch.folder, max_num_timeout=MAX_TIMEOUTS)
    executor.update_parameters(
        job_name=f"ablate-{launch.name}", partition=spec.partition, time=spec.time,
        cpus_per_task=spec.cpus_per_task, gpus_per_node=spec.gpus or None, mem=spec.mem,
        account=spec.account, qos=spec.qos, setup=list(spec.setup),
        signal_delay_s=min(90, 15 * spec.time), additional_parameters={"requeue": True})
    try:  # submitit also prints sbatch's complaint: it is in our message instead
        with contextlib.redirect_stderr(io.StringIO()):
            jobs = executor.map_array(ArrayWorker(launch), range(spec.array))
    except submitit.core.utils.UncompletedJobError as exc:
        raise ValueError(f"sbatch refused the array: {' '.join(str(exc).split())[-500:]}") \
            from None
    job_id = jobs[0].job_id.split("_")[0]
    done = dataclasses.replace(
        launch, job_id=job_id,
        submitted=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    record = launch.folder / LAUNCH_FILE
    history = json.loads(record.read_text()) if record.is_file() else []
    write_text(record, json.dumps([*history, done.to_dict()], indent=2))
    return done


def array_owner() -> str | None:
    """This array task's name in the claims, the same after a requeue; None outside SLURM."""
    job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if not (job and task):
        return None
    return f"slurm:{os.environ.get('SLURM_CLUSTER_NAME', '')}:{job}_{task}"


def log(line: str) -> None:
    """One line into the task's log, at once (a task can be killed any moment)."""
    print(line, flush=True)


@dataclass(frozen=True)
class ArrayWorker:
    """What one array task runs (pickled by submitit): a grid or search worker on the launch's
    storage; ``checkpoint`` is submitit's hook before a requeue."""

    launch: Launch

    def __call__(self, task: int) -> dict[str, Any]:
        import optuna

        from ..common.plugins import load_plugins
        from ..experiment import load_experiment
        from ..results import OK
        from .grid import run_grid
        from .search import run_search
        from .search_spec import load_search

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        launch, owner = self.launch, array_owner()
        load_plugins(launch.plugins)
        store = open_store(launch.storage, launch.heartbeat, launch.grace)
        log(f"array task {task} works as {owner} on {redact(launch.storage)}")
        if launch.kind == SEARCH:
            spec = load_search(launch.file).with_plugins(launch.plugins)
            spec = spec.with_tracking(launch.tracking)
            complete = run_search(spec, store, launch.results, progress=False, log=log,
                                  owner=owner)
            return {"task": task, "complete": complete, "asked": spec.trials}
        runs = run_grid(load_experiment(launch.file).with_tracking(launch.tracking), store,
                        launch.results, progress=False, log=log, owner=owner)
        return {"task": task, "runs": len(runs), "failed": int((runs["status"] != OK).sum())}

    def checkpoint(self, task: int) -> Any:
        """Requeue the same call: the cell's progress is in its run folder and the claims."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, task)


# ---------------------------------------------------------------------------------------------
# Following a launch: the tasks' states and the work done.


@dataclass(frozen=True)
class TaskState:
    """One array task: its SLURM state, a detail (node, reason, error) and its log."""

    task: int
    state: str
    detail: str
    log: Path

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def failed(self) -> bool:
        return not self.active and self.state != COMPLETED


def read_launches(results: str | Path, name: str | None = None) -> list[Launch]:
    """The last launch of ``name`` under ``results`` (None: of every name that has one)."""
    folders = [Path(results) / name / "slurm"] if name else sorted(Path(results).glob("*/slurm"))
    found = [Launch.from_dict(json.loads((f / LAUNCH_FILE).read_text())[-1])
             for f in folders if (f / LAUNCH_FILE).is_file()]
    if name and not found:
        raise FileNotFoundError(f"no launch of {name!r} under {results} "
                                f"({Path(results) / name / 'slurm' / LAUNCH_FILE} is missing)")
    return found


def task_states(launch: Launch) -> list[TaskState]:
    """The state of each array task: ``squeue`` while SLURM remembers the job, then ``sacct``
    where accounting is on, then the result submitit pickled (a task that left none ended
    without finishing: cancelled, killed, out of memory)."""
    job = launch.job_id
    states = _queue_states("squeue", "-h", "-r", "--states=all", "-j", job, "-o", "%i|%T|%R")
    if len(states) < launch.spec.array:
        states = {**_queue_states("sacct", "-n", "-P", "-X", "-j", job, "-o", "JobID,State"),
                  **states}
    out = []
    for task in range(launch.spec.array):
        state, detail = states.get(task, ("", ""))
        outcome, value = _result(launch.folder / f"{job}_{task}_result.pkl")
        if not state:
            state = {"success": COMPLETED, "error": "FAILED"}.get(outcome, "ENDED")
        if outcome == "error":
            detail = str(value).strip().splitlines()[-1]
        elif state == "ENDED":
            detail = "left no result: cancelled or killed (out of memory, node lost?)"
        out.append(TaskState(task, state, detail, launch.log(task)))
    return out


def _queue_states(*command: str) -> dict[int, tuple[str, str]]:
    """Task -> (state, detail) from ``squeue`` or ``sacct`` lines ``<job>_<task>|STATE[|...]``;
    nothing when the command fails (accounting off, job forgotten)."""
    try:
        text = _slurm(*command)
    except (ValueError, subprocess.TimeoutExpired):
        return {}
    states = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        job, _, task = fields[0].partition("_")
        if task.isdigit() and len(fields) >= 2:
            state = fields[1].split()[0]  # sacct: "CANCELLED by 0"
            states[int(task)] = (state, fields[2].strip("()") if len(fields) > 2 else "")
    return states


def _result(path: Path) -> tuple[str | None, Any]:
    """What submitit pickled for a task that ended: ("success", value), ("error", traceback),
    or (None, None) when nothing is there (yet)."""
    if not path.is_file():
        return None, None
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError):
        return None, None  # half-written, or pickled with classes this process lacks


def work_done(launch: Launch) -> tuple[int, int, int]:
    """(done, running, total): the launch's cells (trial slots for a search) in the claims."""
    from ..experiment import load_experiment
    from .grid import planned_cells
    from .search_spec import load_search

    store = open_store(launch.storage, launch.heartbeat, launch.grace)
    if launch.kind == SEARCH:
        spec = load_search(launch.file)
        claims, keys = store.claims(f"search/{spec.name}/slots"), map(str, range(spec.trials))
    else:
        exp = load_experiment(launch.file)
        claims, keys = store.claims(f"grid/{exp.name}"), planned_cells(exp, exp.runs())
    held, keys = claims.all(), list(keys)
    done = sum(k in held and held[k].state == "done" for k in keys)
    running = sum(k in held and held[k].state == "running" and not held[k].stale for k in keys)
    return done, running, len(keys)


def status_text(launch: Launch, tasks: list[TaskState]) -> str:
    """What ``ablate launch status`` prints for one launch."""
    done, running, total = work_done(launch)
    unit = "trial slots" if launch.kind == SEARCH else "cells"
    lines = [f"{launch.name}: {launch.kind} {launch.file}",
             f"  array job {launch.job_id} ({launch.spec.array} tasks, partition "
             f"{launch.spec.partition or 'default'}), submitted {launch.submitted}",
             f"  storage {redact(launch.storage)}: {done} of {total} {unit} done, "
             f"{running} running",
             f"  {'task':<6}{'state':<12}detail"]
    for t in tasks:
        detail = f"{t.detail}; log: {t.log}" if t.failed else t.detail
        lines.append(f"  {t.task:<6}{t.state:<12}{detail}".rstrip())
    failed = [t for t in tasks if t.failed]
    if failed:
        lines.append(f"  {len(failed)} task(s) failed; their logs: "
                     + ", ".join(str(t.log) for t in failed))
    lines.append(f"  logs: {launch.folder}")
    return "\n".join(lines)


def wait(launch: Launch, poll: float = 10.0) -> list[TaskState]:
    """Look at the tasks every ``poll`` seconds until none is queued or running."""
    while True:
        tasks = task_states(launch)
        if not any(t.active for t in tasks):
            return tasks
        time.sleep(poll)
