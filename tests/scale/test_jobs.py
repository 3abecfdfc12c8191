"""Tests of ablate.scale.jobs: what each job gets (threads, GPU, run keys), bad counts refused,
and real ``ablate run --jobs 2`` processes: rows equal bit for bit to one process at the same
thread count, a job killed by SIGKILL has its cell finished by the other, Ctrl-C stops them all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ablate import runner
from ablate.cli import main
from ablate.experiment import parse_experiment
from ablate.results import run_dir
from ablate.scale.jobs import Job, _job_env, check_jobs, job_experiment, plan_jobs, visible_gpus
from ablate.scale.storage import open_store

#: Two cells (the baseline and one variant, seed 0) at one thread, trained in seconds.
TINY = {"name": "tiny", "dataset": {"name": "shapes", "options": {"n_train": 16, "n_val": 8}},
        "preset": "quick",
        "train": {"epochs": 1, "image_size": 32, "batch_size": 8, "samples": 0, "threads": 1,
                  "encoder_init": None, "device": "cpu"},
        "seeds": [0], "baseline": {"widths": [16, 8, 8, 8]}, "variants": [{"pool": "MAA"}],
        "profile_size": 32}


def _write(tmp_path: Path, **train) -> Path:
    raw = json.loads(json.dumps(TINY))
    raw["train"].update(train)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_cpu_jobs_share_the_threads_unless_the_experiment_sets_them():
    assert plan_jobs(3, None, "cpu", 0, 8, ()) == [Job(1, 2), Job(2, 2), Job(3, 2)]
    assert {j.threads for j in plan_jobs(16, None, "cpu", 0, 8, ())} == {1}
    assert {j.threads for j in plan_jobs(2, None, "cpu", 3, 8, ())} == {3}
    assert plan_jobs(None, None, "cpu", 0, 8, ()) == [Job(1, 0)]  # one job: torch's default


def test_cuda_jobs_go_round_robin_over_the_visible_gpus():
    jobs = plan_jobs(None, 2, "cuda", 0, 8, ["3", "5"])
    assert [j.gpu for j in jobs] == ["3", "5", "3", "5"] and {j.threads for j in jobs} == {2}
    assert [j.gpu for j in plan_jobs(3, None, "cuda", 0, 8, ["0", "1"])] == ["0", "1", "0"]
    assert [j.gpu for j in plan_jobs(None, 3, "cuda:1", 0, 8, ["0", "1"])] == [None] * 3
    with pytest.raises(ValueError, match=r"--jobs-per-gpu=2 is not allowed on device 'cpu'"):
        plan_jobs(None, 2, "cpu", 0, 8, ())


def test_local_jobs_on_a_cuda_device_spread_over_its_gpus(monkeypatch):
    import torch

    from ablate.scale import jobs

    monkeypatch.setattr(jobs, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,7")
    exp = parse_experiment(TINY, "tiny")
    planned, device = jobs.local_jobs(exp, None, 2)
    assert device == "cuda" and [j.gpu for j in planned] == ["2", "7", "2", "7"]
    assert {j.threads for j in planned} == {1}  # the experiment's threads: 1
    assert jobs.job_experiment(exp, planned[0], device) is exp  # GPU keys keep their threads


def test_visible_gpus_follow_cuda_visible_devices():
    assert visible_gpus(2, {}) == ["0", "1"]
    assert visible_gpus(2, {"CUDA_VISIBLE_DEVICES": "4, 6"}) == ["4", "6"]


def test_a_jobs_environment_sets_threads_and_gpu_before_torch_starts():
    env = _job_env(Job(2, 3, "5"))
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "3"
    assert env["CUDA_VISIBLE_DEVICES"] == "5"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(Path(runner.__file__).parents[1])


def test_a_cpu_jobs_threads_decide_its_run_keys_and_one_job_keeps_the_old_keys():
    exp = parse_experiment({**TINY, "train": {**TINY["train"], "threads": 0}}, "tiny")

    def keys(e):
        return [runner.run_key(v, runner.data_spec(e), e.config, s, e.profile_size)
                for v, s in e.runs()]

    assert job_experiment(exp, Job(1, 0), "cpu") is exp  # threads 0: the committed keys
    split = job_experiment(exp, Job(1, 1), "cpu")
    assert split.config.threads == 1 and set(keys(split)).isdisjoint(keys(exp))
    assert job_experiment(exp, Job(1, 1), "cuda") is exp  # GPU results ignore CPU threads


@pytest.mark.parametrize("value", [0, -1, "0", "-2", "two", "1.5", True, None])
def test_bad_job_counts_are_refused_naming_the_value(value):
    with pytest.raises(ValueError, match=rf"--jobs={value!r} is not allowed; allowed: an "
                                         r"integer >= 1"):
        check_jobs("--jobs", value)
    assert check_jobs("--jobs", "3") == 3


@pytest.mark.parametrize("args, message", [
    (["--jobs", "0"], "--jobs='0' is not allowed; allowed: an integer >= 1"),
    (["--jobs", "-3"], "--jobs='-3' is not allowed; allowed: an integer >= 1"),
    (["--jobs", "many"], "--jobs='many' is not allowed; allowed: an integer >= 1"),
    (["--jobs-per-gpu", "0"], "--jobs-per-gpu='0' is not allowed"),
    (["--jobs-per-gpu", "2"], "--jobs-per-gpu=2 is not allowed on device 'cpu'"),
    (["--jobs", "2", "--retry-failed"], "--retry-failed is not allowed with 2 jobs"),
])
def test_ablate_run_refuses_bad_jobs_with_exit_2(tmp_path, capsys, args, message):
    path = _write(tmp_path)
    assert main(["run", str(path), "--results", str(tmp_path / "results"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "results" / "tiny" / "runs").exists()  # nothing ran


def test_jobs_in_an_experiment_file_are_validated(tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "jobs": 0}))
    assert main(["run", str(path), "--results", str(tmp_path / "results")]) == 2
    assert f"{path}: jobs: jobs=0 is not allowed; allowed: an integer >= 1" in \
        capsys.readouterr().err
    assert parse_experiment({**TINY, "jobs": 3}, "tiny").jobs == 3


def _ablate(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ablate.cli", *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _running_owners(tmp_path: Path, want: int, proc: subprocess.Popen) -> list[int]:
    """The pids of the jobs once ``want`` of them hold a running cell."""
    db = tmp_path / "results" / "tiny" / "grid.db"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if db.is_file():
            held = open_store(f"sqlite:///{db}").claims("grid/tiny").all().values()
            pids = [int(c.owner.split(":")[1]) for c in held if c.state == "running"]
            if len(pids) >= want:
                return pids
        time.sleep(0.1)
    pytest.fail(f"no {want} running jobs: {proc.communicate()}")


def _same(a: Path, b: Path) -> None:
    """Two run folders hold the same results: the row's numbers and the history, times aside."""
    ra, rb = (json.loads((p / "row.json").read_text()) for p in (a, b))
    timed = {"wall_s", "train_time_s", "train_images_per_s", "latency_ms", "peak_mem_mb",
             "git_commit"}
    assert {k: v for k, v in ra.items() if k not in timed} == \
        {k: v for k, v in rb.items() if k not in timed}
    ha, hb = (pd.read_csv(p / "history.csv") for p in (a, b))
    assert ha.drop(columns="time_s").equals(hb.drop(columns="time_s"))


@pytest.mark.slow
def test_two_jobs_give_the_rows_of_one_process_bit_for_bit(tmp_path, monkeypatch):
    path = _write(tmp_path)
    proc = _ablate(tmp_path, "run", str(path), "--jobs", "2")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out + err
    monkeypatch.chdir(tmp_path)  # the same decode-once cache as the jobs
    exp = parse_experiment(yaml.safe_load(path.read_text()), "tiny")
    alone = runner.run_experiment(exp, tmp_path / "alone", progress=False)
    jobs = pd.read_csv(tmp_path / "results" / "tiny" / "runs.csv")
    assert sorted(jobs["variant"]) == sorted(alone["variant"]) and (jobs["status"] == "ok").all()
    assert set(jobs["device"]) == {next(iter(alone["device"]))}  # "cpu (..., 1 threads)"
    for v, s in exp.runs():
        _same(run_dir(tmp_path / "results" / "tiny", v, s), run_dir(tmp_path / "alone" / "tiny",
                                                                     v, s))
    logs = sorted((tmp_path / "results" / "tiny" / "jobs").glob("*.log"))
    assert [p.name for p in logs] == ["1.log", "2.log"]
    assert sum(p.read_text().count("\nran ") for p in logs) == 2  # each cell once
    twin = tmp_path / "twin.yaml"  # the same cells in another experiment: copied, not trained
    twin.write_text(path.read_text().replace("name: tiny", "name: twin"))
    proc = _ablate(tmp_path, "run", str(twin), "--jobs", "2")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out + err
    assert list(pd.read_csv(tmp_path / "results" / "twin" / "runs.csv")["reused_from"]) == \
        ["tiny", "tiny"]


@pytest.mark.slow
def test_a_job_killed_mid_run_is_reported_and_its_cell_finished_by_the_other(tmp_path):
    path = _write(tmp_path, epochs=3)
    proc = _ablate(tmp_path, "run", str(path), "--jobs", "2")
    victim = _running_owners(tmp_path, 1, proc)[0]
    os.kill(victim, signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, out + err
    assert any(f"died (killed by SIGKILL); its log: results/tiny/jobs/{k}.log" in err
               for k in (1, 2))
    runs = pd.read_csv(tmp_path / "results" / "tiny" / "runs.csv")
    assert len(runs) == 2 and (runs["status"] == "ok").all()
    again = _ablate(tmp_path, "run", str(path), "--jobs", "2")  # the next run: nothing to do
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, out + err
    logs = (tmp_path / "results" / "tiny" / "jobs").glob("*.log")
    assert "\nran " not in "".join(p.read_text() for p in logs)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_every_job_and_gives_their_cells_back(tmp_path, sig):
    path = _write(tmp_path, epochs=50)
    proc = _ablate(tmp_path, "run", str(path), "--jobs", "2")
    pids = _running_owners(tmp_path, 2, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, out + err
    assert "stopped; 0 finished run(s) kept" in err
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # no job outlives the run
    db = tmp_path / "results" / "tiny" / "grid.db"
    held = open_store(f"sqlite:///{db}").claims("grid/tiny").all()
    assert held == {}  # each job gave its claim back: the next run takes the cells at once
