"""Shared pieces of the tests of ablate.scale: a tiny search file and its store, and real
``ablate worker`` processes."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest

from ablate.scale.storage import open_store

HEARTBEAT = ["--heartbeat", "1", "--grace", "4"]
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
    def start(*args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "ablate.cli", "worker", *args,
                                 "--results", str(tmp_path / "results"), *HEARTBEAT],
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
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
