"""Tests of ablate.common.faults: a worker dies (SIGKILL) at exactly the point ABLATE_FAULT
names."""

from __future__ import annotations

import os
import signal

import pytest

from ablate.common.faults import FAULT_ENV, FAULTS, fault_point


def _run_past(points: list[str], fault: str) -> tuple[int, list[str]]:
    """Pass ``points`` in a forked child with ``ABLATE_FAULT=fault``: the signal that ended it
    (0: none) and the points it reached (told through a pipe before each)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.environ[FAULT_ENV] = fault
        for name in points:
            os.write(write, f"{name} ".encode())
            fault_point(name)
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read) as f:
        reached = f.read().split()
    return (os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0), reached


def test_a_worker_is_killed_at_the_named_point_and_only_there():
    points = FAULTS.names()
    at = points.index("row-written")
    assert _run_past(points, "row-written") == (signal.SIGKILL, points[:at + 1])
    others = [p for p in points if p != "row-written"]
    assert _run_past(others, "row-written") == (0, others)


def test_points_cost_nothing_without_the_variable_and_bad_names_are_refused(monkeypatch):
    monkeypatch.delenv(FAULT_ENV, raising=False)
    for point in FAULTS.names():
        fault_point(point)  # alive
    with pytest.raises(ValueError, match="unknown fault point 'nope'; allowed: trial-created"):
        fault_point("nope")
    monkeypatch.setenv(FAULT_ENV, "trial-toldd")
    with pytest.raises(ValueError, match="ABLATE_FAULT='trial-toldd' is not allowed; allowed: "
                                         "trial-created, trial-taken"):
        fault_point("trial-told")


def test_every_point_says_which_workers_pass_it():
    for point in FAULTS.names():
        assert set(FAULTS.meta(point)["where"]) <= {"search", "grid", "run"}, point
        assert FAULTS.help(point).startswith(", ".join(FAULTS.meta(point)["where"]) + ": ")
