"""Tests of ablate.scale.slurm: where the storage and results of an array may live, what a
launch refuses before submitting (exit 2), the status of ended tasks, and, on a real
single-node SLURM started here (Debian's slurm-wlm and munge, as root), an array whose tasks
are requeued (SIGUSR2, as before a time limit) and cancelled mid-cell and still ends with every
cell run exactly once, the interrupted cells resumed from their checkpoints."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from ablate.cli import main
from ablate.experiment import load_experiment
from ablate.results import ROW_FILE, run_dir
from ablate.scale import slurm
from ablate.scale.grid import planned_cells
from ablate.scale.storage import open_store

MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
tmpfs /tmp tmpfs rw 0 0
fs1:/export/home /home nfs4 rw,vers=4.2 0 0
lustre@tcp:/scratch /scratch lustre rw 0 0
host:/data /home/me/my\\040data fuse.sshfs rw 0 0
"""


def _tiny(tmp_path: Path, name: str = "tiny", **changes) -> Path:
    """A tiny experiment file: shapes, 32-pixel images, one thread per worker."""
    raw = {"name": name, "dataset": {"name": "shapes", "options": {"n_train": 16, "n_val": 8}},
           "preset": "quick",
           "train": {"epochs": 1, "image_size": 32, "batch_size": 8, "samples": 0,
                     "threads": 1, "encoder_init": None},
           "seeds": [0], "baseline": {"widths": [16, 8, 8, 8]}, "profile_size": 32, **changes}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("path, kind", [
    ("/home/me/results/x.db", "nfs4"), ("/home/me/my data/study.db", "fuse.sshfs"),
    ("/scratch/a/b/not/yet/made", "lustre"), ("/tmp/x", "tmpfs"), ("/var/x", "ext4"),
])
def test_the_file_system_of_a_path_is_its_longest_mount_point(path, kind):
    assert slurm.fs_type(Path(path), MOUNTS) == kind


@pytest.mark.parametrize("storage, results, nodes, refused", [
    ("sqlite:////home/me/study.db", "/home/me/results", 1, "SQLite on a network file system "
                                                           "(nfs4) can corrupt the study"),
    ("sqlite:////home/me/my data/x.db", "/home/me", 8, "SQLite on a network file system "
                                                       "(fuse.sshfs)"),
    ("sqlite:///:memory:", "/var/r", 1, "an in-memory SQLite database is private to one process"),
    ("sqlite:////var/study.db", "/home/me/results", 4, "storage sqlite:////var/study.db is on a "
                                                       "local disk (ext4) but partition gpu has "
                                                       "4 nodes"),
    ("journal:/tmp/s.journal", "/scratch/r", 2, "is on a local disk (tmpfs) but partition gpu"),
    ("journal:/scratch/s.journal", "/var/results", 2, "results folder /var/results is on a "
                                                      "local disk (ext4) but partition gpu has "
                                                      "2 nodes"),
    ("sqlite:////var/study.db", "/var/results", 1, None),  # one node, local disk: fine
    ("journal:/scratch/s.journal", "/home/me/results", 64, None),
    ("postgresql+psycopg://me@db/ablate", "/scratch/r", 64, None),
])
def test_storage_and_results_must_be_shared_by_every_node_of_the_partition(storage, results,
                                                                           nodes, refused):
    if refused is None:
        slurm.check_placement(storage, Path(results), nodes, "gpu", MOUNTS)
        return
    with pytest.raises(ValueError) as info:
        slurm.check_placement(storage, Path(results), nodes, "gpu", MOUNTS)
    assert refused in str(info.value)


@pytest.mark.parametrize("args, message", [
    (["--array", "0"], "array=0 is not allowed; allowed: an integer >= 1"),
    (["--time", "0"], "time=0 is not allowed; allowed: an integer >= 1"),
    (["--storage", "postgresql+psycopg://ablate@127.0.0.1:1/none"],
     "cannot open storage postgresql+psycopg://ablate@127.0.0.1:1/none: "),
    (["--storage", "postgresql+psycopg://ablate:pw@127.0.0.1:1/none"],
     "a password in the URL would be written into the job files"),
    (["--storage", "sqlite:///:memory:"], "an in-memory SQLite database is private"),
    (["--storage", "sqlite:/nowhere"], "storage='<unparseable storage URL>' is not allowed"),
    (["--track", "tensorbored"], "--track: tracking='tensorbored' is not allowed; allowed: "),
])
def test_a_launch_that_cannot_work_is_refused_with_exit_2_before_submitting(
        tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing could be submitted (no sbatch) anyway
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "none.conf"))
    assert main(["launch", "slurm", str(_tiny(tmp_path)), "--results", str(tmp_path / "r"),
                 *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ablate: error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "r" / "tiny" / "slurm" / "launch.json").exists()


def test_no_slurm_or_no_submitit_is_refused_with_what_to_do(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    exp = str(_tiny(tmp_path))
    assert main(["launch", "slurm", exp, "--results", str(tmp_path / "r")]) == 2
    assert "no SLURM here: `sinfo` is not on PATH" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "submitit", None)
    assert main(["launch", "slurm", exp, "--results", str(tmp_path / "r")]) == 2
    assert "needs submitit: pip install 'ablate[slurm]'" in capsys.readouterr().err


def test_status_names_each_ended_task_and_the_log_of_each_that_failed(tmp_path, capsys,
                                                                      monkeypatch):
    """No SLURM to ask (squeue missing): the state comes from what submitit left per task."""
    monkeypatch.setenv("PATH", str(tmp_path))
    exp_file = _tiny(tmp_path, seeds=[0, 1, 2])
    launch = slurm.plan_launch(exp_file, tmp_path / "r", array=3)
    launch = dataclasses.replace(launch, job_id="77")
    launch.folder.mkdir(parents=True)
    (launch.folder / slurm.LAUNCH_FILE).write_text(json.dumps([launch.to_dict()]))
    for task, result in ((0, ("success", {"runs": 3})),
                         (1, ("error", "Traceback ...\nRuntimeError: CUDA error: no device\n"))):
        (launch.folder / f"77_{task}_result.pkl").write_bytes(pickle.dumps(result))
    exp = load_experiment(exp_file)
    claims = open_store(launch.storage).claims(f"grid/{exp.name}")
    first, second, _ = planned_cells(exp, exp.runs())
    claims.take(first, "slurm::77_0")
    claims.claim(second, "slurm::77_1")

    assert main(["launch", "status", "tiny", "--results", str(tmp_path / "r")]) == 1
    out = capsys.readouterr().out
    assert "1 of 3 cells done, 1 running" in out
    assert "  0     COMPLETED" in out
    assert f"  1     FAILED      RuntimeError: CUDA error: no device; log: {launch.log(1)}" in out
    assert (f"  2     ENDED       left no result: cancelled or killed (out of memory, node "
            f"lost?); log: {launch.log(2)}") in out
    assert f"2 task(s) failed; their logs: {launch.log(1)}, {launch.log(2)}" in out
    assert main(["launch", "status", "other", "--results", str(tmp_path / "r")]) == 2
    assert "no launch of 'other'" in capsys.readouterr().err


@pytest.mark.slow
def test_track_reaches_every_array_task_through_the_launch_record(tmp_path, journal,
                                                                    monkeypatch):
    """``launch slurm --track`` is kept in launch.json and each task logs to it, on top of the
    file's tracking: (a task run here in-process, as submitit runs it on a node)."""
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    exp_file = _tiny(tmp_path)
    launch = slurm.plan_launch(exp_file, tmp_path / "r", tracking=("journal",))
    stored = slurm.Launch.from_dict(json.loads(json.dumps(launch.to_dict())))
    assert stored == launch and stored.tracking == ("journal",)
    assert slurm.ArrayWorker(stored)(0) == {"task": 0, "runs": 1, "failed": 0}
    exp = load_experiment(exp_file)
    journal(tmp_path / "r" / exp.name, [f"{exp.baseline.id} seed0"])
    older = {k: v for k, v in launch.to_dict().items() if k != "tracking"}  # before --track
    assert slurm.Launch.from_dict(older).tracking == ()


def test_a_search_file_launches_search_workers_and_counts_its_trial_slots(tmp_path, tiny):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(tiny(slurm={"array": 4, "time": 30})))
    launch = slurm.plan_launch(path, tmp_path / "r", time=90)
    assert (launch.kind, launch.name, launch.spec.array, launch.spec.time) == \
        ("search", "tiny", 4, 90)
    assert launch.storage == f"sqlite:///{tmp_path / 'r' / 'tiny' / 'study.db'}"
    slots = open_store(launch.storage).claims("search/tiny/slots")
    slots.take("1", "slurm::5_0")
    assert slurm.work_done(launch) == (1, 0, 2)


# ---------------------------------------------------------------------------------------------
# A real single-node SLURM.


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_CONF = """\
ClusterName=ablatetest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.sock,cred_expire=5
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=1
SlurmdParameters=config_overrides
JobRequeue=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
KillWait=5
MinJobAge=600
NodeName={host} NodeAddr=127.0.0.1 CPUs=3 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _sbin(name: str) -> str:
    """A daemon's path (root's PATH has /usr/sbin, a user's often not)."""
    return shutil.which(name) or f"/usr/sbin/{name}"


@pytest.fixture(scope="session")
def slurm_conf():
    """A throw-away single-node SLURM (munged, slurmctld, slurmd) for the session: the path of
    its slurm.conf; skipped with the reason when it cannot start. Its jobs are cancelled and
    its daemons stopped at the end (by their pids)."""
    pytest.importorskip("submitit", reason="submitit is not installed (pip install "
                                           "'ablate[slurm]')")
    missing = [c for c in ("munged", "slurmctld", "slurmd", "sbatch")
               if not Path(_sbin(c)).is_file()]
    if missing:
        pytest.skip(f"no SLURM ({', '.join(missing)} missing): install Debian's slurm-wlm and "
                    "munge (.ci/slurm.sh does)")
    if os.geteuid() != 0:
        pytest.skip("starting a throw-away SLURM needs root (its daemons run as root)")
    root = Path(tempfile.mkdtemp(prefix="ablate-slurm-"))
    root.chmod(0o755)  # munge's socket must be reachable
    (root / "state").mkdir()
    (root / "spool").mkdir()
    (root / "munge.key").write_bytes(os.urandom(1024))
    (root / "munge.key").chmod(0o400)
    host = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(_CONF.format(host=host, root=root, ctld_port=_free_port(),
                                 d_port=_free_port()))
    env = {**os.environ, "SLURM_CONF": str(conf)}

    def stop() -> None:
        subprocess.run(["scancel", "--full", "--partition", "debug"], env=env,
                       capture_output=True, timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and subprocess.run(
                ["squeue", "-h"], env=env, capture_output=True, text=True, timeout=30).stdout:
            time.sleep(0.5)
        for pid_file in ("slurmd.pid", "slurmctld.pid", "munged.pid"):
            try:
                os.kill(int((root / pid_file).read_text()), 15)
            except (OSError, ValueError):
                pass  # never started, or gone
        time.sleep(1)
        shutil.rmtree(root, ignore_errors=True)

    try:
        subprocess.run([_sbin("munged"), "--force", f"--key-file={root / 'munge.key'}",
                        f"--socket={root / 'munge.sock'}", f"--pid-file={root / 'munged.pid'}",
                        f"--log-file={root / 'munged.log'}", f"--seed-file={root / 'seed'}"],
                       check=True, capture_output=True, text=True, timeout=30)
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([_sbin(daemon)], env=env, check=True, capture_output=True, text=True,
                           timeout=30)
        deadline = time.monotonic() + 30
        while "idle" not in subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, text=True,
                                           capture_output=True, timeout=30).stdout:
            if time.monotonic() > deadline:
                raise RuntimeError("the node never became idle")
            time.sleep(0.5)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, RuntimeError) as exc:
        logs = " | ".join(p.read_text()[-300:] for p in sorted(root.glob("*.log")))
        stop()
        pytest.skip(f"could not start SLURM: {getattr(exc, 'stderr', '') or exc} {logs}")
    yield conf
    stop()


def _squeue(job: str) -> str:
    return subprocess.run(["squeue", "-h", "-r", "-j", job, "-o", "%i %T"], text=True,
                          capture_output=True).stdout


@pytest.mark.slow
def test_an_unknown_partition_or_an_array_sbatch_refuses_exits_2(slurm_conf, tmp_path, capsys,
                                                                 monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(slurm_conf))
    assert main(["launch", "slurm", str(_tiny(tmp_path)), "--results", str(tmp_path / "r"),
                 "--partition", "gpu"]) == 2
    err = capsys.readouterr().err
    assert "partition='gpu' is not allowed (SLURM does not list it); allowed: debug" in err
    assert main(["launch", "slurm", str(_tiny(tmp_path)), "--results", str(tmp_path / "r"),
                 "--mem", "64T"]) == 2  # more than the node has: sbatch refuses it
    err = capsys.readouterr().err
    assert err.startswith("ablate: error: sbatch refused the array: sbatch: error: Memory "
                          "specification can not be satisfied") and len(err.splitlines()) == 1
    assert not (tmp_path / "r" / "tiny" / "slurm" / slurm.LAUNCH_FILE).exists()


def _checkpoint(out: Path) -> dict | None:
    """The resume state of a cell's run folder (None before its first epoch ends)."""
    try:
        return torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    except (OSError, RuntimeError, EOFError):
        return None


@pytest.mark.slow
def test_an_array_requeued_and_cancelled_mid_cell_runs_every_cell_exactly_once(
        slurm_conf, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(slurm_conf))
    results = tmp_path / "results"
    exp_file = _tiny(tmp_path, name="arr", seeds=[0, 1, 2],
                     dataset={"name": "shapes", "options": {"n_train": 128, "n_val": 8}},
                     train={"epochs": 5, "image_size": 32, "batch_size": 8, "samples": 0,
                            "threads": 1, "encoder_init": None},
                     slurm={"array": 3, "time": 10})
    exp = load_experiment(exp_file)
    cells = planned_cells(exp, exp.runs())
    with ThreadPoolExecutor(1) as pool:  # the command waits for the array; the test cuts it
        launched = pool.submit(main, ["launch", "slurm", str(exp_file), "--results",
                                      str(results), "--heartbeat", "1", "--grace", "4",
                                      "--wait", "--poll", "1"])
        record = results / exp.name / "slurm" / slurm.LAUNCH_FILE
        while not record.is_file():
            assert not launched.done(), launched.result()
            time.sleep(0.2)
        [launch] = slurm.read_launches(results, exp.name)
        try:
            claims = open_store(launch.storage).claims(f"grid/{exp.name}")
            owners = {f"slurm:ablatetest:{launch.job_id}_{t}": t for t in range(3)}
            cut: dict[int, tuple[Path, dict]] = {}  # task -> its cell's folder, resume state
            deadline = time.monotonic() + 150
            while len(cut) < 2:  # two tasks mid-cell: a checkpoint saved, no row yet
                assert time.monotonic() < deadline, f"none mid-cell: {_squeue(launch.job_id)}"
                for key, claim in claims.all().items():
                    variant, seed, _ = cells[key]
                    out = run_dir(results / exp.name, variant, seed)
                    state = _checkpoint(out) if claim.state == "running" else None
                    task = owners.get(claim.owner)
                    if state and state["epoch"] < 4 and task not in cut and task is not None:
                        cut[task] = (out, state)
                time.sleep(0.2)
            requeued, cancelled = sorted(cut)[:2]
            assert not (cut[requeued][0] / ROW_FILE).exists()
            subprocess.run(["scancel", "--signal=USR2", f"{launch.job_id}_{requeued}"],
                           check=True)
            subprocess.run(["scancel", f"{launch.job_id}_{cancelled}"], check=True)
            assert launched.result(timeout=200) == 1  # --wait: every cell done, a task failed
        finally:
            subprocess.run(["scancel", launch.job_id], capture_output=True)
    waited = capsys.readouterr().out
    assert f"submitted array job {launch.job_id}: 3 worker(s) of experiment arr on partition " \
           "default (1 node(s))" in waited
    assert "3 of 3 cells done, 0 running" in waited

    assert "Caught signal SIGUSR2" in launch.log(requeued).read_text()
    runs = pd.read_csv(results / exp.name / "runs.csv")
    assert sorted(zip(runs["variant"], runs["seed"])) == \
        sorted((v.id, s) for v, s, _ in cells.values())  # one row per cell
    assert (runs["status"] == "ok").all() and (runs["epochs_run"] == 5).all()
    assert [c.state for c in claims.all().values()] == ["done"] * 3
    for out, state in cut.values():  # resumed: the epochs before the cut were not trained again
        history = pd.read_csv(out / "history.csv")
        assert len(history) == 5
        before = pd.DataFrame(state["history"])
        pd.testing.assert_frame_equal(history.iloc[:len(before)], before, check_dtype=False,
                                      rtol=1e-9)  # timings too: a retrained epoch differs

    assert main(["launch", "status", exp.name, "--results", str(results)]) == 1
    out = capsys.readouterr().out
    assert "3 of 3 cells done, 0 running" in out
    assert f"  {requeued}     COMPLETED" in out
    assert f"  {cancelled}     CANCELLED" in out and f"log: {launch.log(cancelled)}" in out
    assert main(["report", str(exp_file), "--results", str(results)]) == 0
    assert (results / exp.name / "report.md").is_file()
