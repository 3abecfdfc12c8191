"""One process with every thread against N processes: the wall time of a fixed set of cells
trained by ``ablate run --jobs`` (``ablate.scale.jobs``), which ``make ablation``'s ``JOBS``
follows.

The cells: ``settings.jobs_cells`` seeds (at least as many as the most jobs compared) of the
first variant on ``shapes`` at the bench's image size and batch, ``JOBS_EPOCHS`` epochs of
``settings.steps`` batches, no encoder init. Each setting trains them from scratch into a fresh
results folder through ``run_jobs`` (so both sides pay their processes' start), in alternating
rounds after one untimed warm-up (which also fills the decode-once cache); speed-up = wall time
of one job / of N jobs, per round. On the CPU the settings are one job with every thread and N
jobs of ``T // N`` threads (N: 2, 4, ... up to the T threads); on CUDA, 1, 2 and 4 jobs on the
one GPU.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
import yaml

from ..experiment import parse_experiment
from ..models.variant import Variant
from ..scale.jobs import Job, plan_jobs, run_jobs
from .loops import alternate
from .machine import cores
from .settings import BenchSettings
from .stats import result_row

JOBS_EPOCHS = 2
CUDA_JOBS = (1, 2, 4)


def job_counts(device: torch.device, threads: int) -> list[int]:
    """The job counts compared: 1, then powers of two up to ``threads`` and ``threads`` itself
    (CPU); ``CUDA_JOBS`` on one GPU."""
    if device.type == "cuda":
        return list(CUDA_JOBS)
    counts = [1]
    while counts[-1] * 2 <= threads:
        counts.append(counts[-1] * 2)
    return sorted(set(counts) | {max(1, threads)})


def label(jobs: list[Job], device: torch.device, threads: int) -> str:
    """``"2 jobs x 1 thread"`` (``threads``: what a job of thread count 0 uses); on CUDA
    ``"2 jobs on one GPU"``."""
    n = len(jobs)
    if device.type == "cuda":
        return f"{n} job{'s' * (n > 1)} on one GPU"
    each = jobs[0].threads or threads
    return f"{n} job{'s' * (n > 1)} x {each} thread{'s' * (each != 1)}"


def jobs_rows(variant: Variant, device: torch.device, settings: BenchSettings) -> list[dict]:
    """Wall time of the same cells per setting, and each setting's speed-up over one job."""
    threads = settings.threads or cores()
    counts = job_counts(device, threads)
    cells = max(settings.jobs_cells, counts[-1])
    where = "cuda:0" if device.type == "cuda" else "cpu"
    plans = [plan_jobs(n, None, where, 0, threads) for n in counts]
    with tempfile.TemporaryDirectory(prefix="ablate-bench-jobs-") as tmp:
        path = Path(tmp) / "bench_jobs.yaml"
        path.write_text(yaml.safe_dump({
            "name": "bench_jobs",
            "dataset": {"name": "shapes", "options": {"n_train": settings.steps * settings.batch,
                                                      "n_val": settings.batch}},
            "preset": "quick", "seeds": list(range(cells)), "baseline": variant.to_dict(),
            "train": {"epochs": JOBS_EPOCHS, "image_size": settings.image_size,
                      "batch_size": settings.batch, "encoder_init": None, "samples": 0,
                      "device": device.type},
            "profile_size": settings.image_size}))
        exp = parse_experiment(yaml.safe_load(path.read_text()), "bench_jobs")

        def timed(jobs: list[Job]):
            def run(r: int) -> float:
                start = time.perf_counter()
                done = run_jobs(path, exp, jobs, where, Path(tmp) / f"r{r}-{len(jobs)}",
                                progress=False, log=lambda line: None)
                wall = time.perf_counter() - start
                if done.died or done.missing or not (done.runs["status"] == "ok").all():
                    raise RuntimeError(f"the bench's jobs failed ({label(jobs, device, threads)}): "
                                       f"{done.died or 'a run failed'}")
                return wall
            return run

        timed(plans[0])(0)  # warm-up: decodes the data into the cache
        walls = alternate(settings.jobs_rounds, *(timed(jobs) for jobs in plans))
    rows = []
    for jobs, wall in zip(plans, walls):
        name = label(jobs, device, threads)
        rows.append(result_row("jobs", name, "study_wall_s", "s", wall,
                               f"{cells} cells of {JOBS_EPOCHS} epochs x {settings.steps} "
                               f"batches of {settings.batch} at {settings.image_size} px"))
        rows.append(result_row("jobs", name, "jobs_speedup", "ratio",
                               [a / b for a, b in zip(walls[0], wall)],
                               "wall time of one job / of this setting"))
    return rows
