"""Tests of ablate.bench.jobs: the settings compared, their labels, and ``make ablation``'s
``JOBS`` held to the setting the committed CPU benchmark measured fastest."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import torch

from ablate.bench.jobs import job_counts, label
from ablate.scale.jobs import plan_jobs

ROOT = Path(__file__).resolve().parents[2]


def test_job_counts_double_up_to_every_thread():
    cpu = torch.device("cpu")
    assert job_counts(cpu, 8) == [1, 2, 4, 8]
    assert job_counts(cpu, 6) == [1, 2, 4, 6]
    assert job_counts(cpu, 1) == [1]
    assert job_counts(torch.device("cuda"), 16) == [1, 2, 4]


def test_labels_name_the_jobs_and_their_threads():
    cpu = torch.device("cpu")
    assert label(plan_jobs(1, None, "cpu", 0, 8), cpu, 8) == "1 job x 8 threads"
    assert label(plan_jobs(8, None, "cpu", 0, 8), cpu, 8) == "8 jobs x 1 thread"
    assert label(plan_jobs(2, None, "cuda:0", 0, 8), torch.device("cuda"), 8) == \
        "2 jobs on one GPU"


def test_make_ablation_runs_the_jobs_measured_fastest():
    """results/bench/cpu.csv (``make bench`` on the project's CPU) decides ``JOBS``: the setting
    with the highest median speed-up over one job."""
    with open(ROOT / "results" / "bench" / "cpu.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f)
                if r["section"] == "jobs" and r["metric"] == "jobs_speedup"]
    if not rows:
        pytest.skip("results/bench/cpu.csv predates the jobs section; run `make bench`")
    best = max(rows, key=lambda r: float(r["median"]))
    jobs = int(best["variant"].split()[0])
    make = re.search(r"^JOBS\s*\?=\s*(\d+)", (ROOT / "Makefile").read_text(), re.M)
    assert make is not None and int(make.group(1)) == jobs, best
