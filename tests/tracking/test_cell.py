"""Exactly once per cell: the bookkeeping of ``tracking.json``, with a sink that records calls.

No tracker package and no training: a run folder is written by hand (history.csv, row.json) and
each test checks which calls the sinks got.
"""

from __future__ import annotations

import json
import shutil

import pytest

from ablate.config import load_config
from ablate.models.variant import Variant
from ablate.results import write_row
from ablate.tracking.cell import RECORD, Tracking
from ablate.tracking.sinks import SINKS, Sink, TrackerRun, register_sink

CONFIG = load_config("quick", device="cpu")
VARIANT = Variant()


class Recorder(Sink):
    """Every call, in order, on a class-level list; ``fail`` makes one method raise."""

    calls: list[tuple] = []
    fail: str = ""

    def start(self, cell):
        self._maybe_fail("start")
        self.calls.append(("start", cell.attempt, cell.name))
        return _Run(self, f"run{len(self.calls)}")

    def mark_killed(self, run_id, cell):
        self.calls.append(("killed", run_id))

    def _maybe_fail(self, what):
        if self.fail == what:
            raise RuntimeError(f"{what} is down")


class _Run(TrackerRun):
    def __init__(self, sink, run_id):
        self.sink, self.id = sink, run_id

    def log_epoch(self, epoch, values):
        self.sink._maybe_fail("log_epoch")
        self.sink.calls.append(("epoch", self.id, epoch, values["dice"]))

    def finish(self, status, values, tags, files):
        self.sink._maybe_fail("finish")
        self.sink.calls.append(("finish", self.id, status, values["dice"],
                                sorted(p.name for p in files)))


@pytest.fixture
def recorder():
    register_sink("recorder", help="test sink")(Recorder)
    Recorder.calls, Recorder.fail = [], ""
    yield Recorder
    SINKS.unregister("recorder")


@pytest.fixture
def cell(tmp_path):
    out = tmp_path / "exp" / "runs" / VARIANT.id / "seed0"
    out.mkdir(parents=True)
    return out


def _history(out, epochs):
    lines = ["epoch,train_loss,dice,lr,time_s,in_window"]
    lines += [f"{e},{1 / e},{0.1 * e},0.01,{e},0" for e in range(1, epochs + 1)]
    (out / "history.csv").write_text("\n".join(lines) + "\n")


def _row(out, status="ok"):
    row = {"variant": VARIANT.id, "seed": 0, "status": status, "dice": 0.2, "params": 1000,
           "run_key": "k1", "error": ""}
    write_row(out, row)
    return row


def _tracking(tmp_path, messages=None):
    log = messages.append if messages is not None else None
    return Tracking(["recorder"], tmp_path / "exp", "exp", log)


def test_an_attempt_logs_each_epoch_once_then_finishes(recorder, tmp_path, cell):
    runs = _tracking(tmp_path).begin(cell, VARIANT, 0, "k1", CONFIG)
    _history(cell, 1)
    runs.epoch()
    runs.epoch()  # nothing new
    _history(cell, 2)
    runs.epoch()
    runs.end(_row(cell))
    assert recorder.calls == [
        ("start", 1, f"{VARIANT.id} seed0"), ("epoch", "run1", 1, 0.1), ("epoch", "run1", 2, 0.2),
        ("finish", "run1", "finished", 0.2, ["history.csv", "row.json"])]
    record = json.loads((cell / RECORD).read_text())["exp/recorder"]
    assert record == {"id": "run1", "run_key": "k1", "attempt": 1, "state": "finished"}


def test_a_finished_cell_is_not_logged_again(recorder, tmp_path, cell):
    runs = _tracking(tmp_path).begin(cell, VARIANT, 0, "k1", CONFIG)
    _history(cell, 2)
    runs.end(_row(cell))
    before = list(recorder.calls)
    _tracking(tmp_path).ensure(cell, VARIANT, 0, "k1", CONFIG)  # reused as it is
    assert recorder.calls == before


def test_a_cell_copied_from_another_experiment_is_logged_here_once(recorder, tmp_path, cell):
    runs = _tracking(tmp_path).begin(cell, VARIANT, 0, "k1", CONFIG)
    _history(cell, 2)
    runs.end(_row(cell))
    copy = tmp_path / "other" / "runs" / VARIANT.id / "seed0"
    shutil.copytree(cell, copy)  # as ablate.runner copies an identical finished run
    other = Tracking(["recorder"], tmp_path / "other", "other")
    for _ in range(2):
        other.ensure(copy, VARIANT, 0, "k1", CONFIG)
    calls = [c[0] for c in recorder.calls]
    assert calls == ["start", "epoch", "epoch", "finish"] * 2  # once in each study, no kill
    assert set(json.loads((copy / RECORD).read_text())) == {"exp/recorder", "other/recorder"}


def test_a_killed_attempt_is_marked_and_the_resume_logs_every_epoch(recorder, tmp_path, cell):
    _tracking(tmp_path).begin(cell, VARIANT, 0, "k1", CONFIG)
    _history(cell, 1)  # the process dies after epoch 1's checkpoint, before logging it
    runs = _tracking(tmp_path).begin(cell, VARIANT, 0, "k1", CONFIG)
    _history(cell, 2)
    runs.epoch()
    runs.end(_row(cell))
    assert recorder.calls == [
        ("start", 1, f"{VARIANT.id} seed0"), ("killed", "run1"),
        ("start", 2, f"{VARIANT.id} seed0 attempt 2"),
        ("epoch", "run3", 1, 0.1), ("epoch", "run3", 2, 0.2),
        ("finish", "run3", "finished", 0.2, ["history.csv", "row.json"])]


def test_a_cell_finished_before_tracking_is_logged_once_from_its_files(recorder, tmp_path, cell):
    _history(cell, 2)
    _row(cell)
    for _ in range(2):
        _tracking(tmp_path).ensure(cell, VARIANT, 0, "k1", CONFIG)
    assert [c[0] for c in recorder.calls] == ["start", "epoch", "epoch", "finish"]


def test_a_cut_off_finish_is_redone_at_the_next_report(recorder, tmp_path, cell):
    runs = _tracking(tmp_path).begin(cell, VARIANT, 0, "k1", CONFIG)
    _history(cell, 2)
    _row(cell)  # the row is written; the process dies before the trackers are told
    del runs
    _tracking(tmp_path).ensure(cell, VARIANT, 0, "k1", CONFIG)
    assert [c[0] for c in recorder.calls] == ["start", "killed", "start", "epoch", "epoch",
                                              "finish"]


def test_a_tracker_error_never_fails_the_run_and_is_retried(recorder, tmp_path, cell):
    messages = []
    recorder.fail = "log_epoch"
    runs = _tracking(tmp_path, messages).begin(cell, VARIANT, 0, "k1", CONFIG)
    _history(cell, 2)
    runs.epoch()
    runs.end(_row(cell))
    assert len(messages) == 1 and "recorder could not log epoch" in messages[0]
    assert "log_epoch is down" in messages[0] and "ablate report" in messages[0]
    assert json.loads((cell / RECORD).read_text())["exp/recorder"]["state"] == "running"
    recorder.fail = ""
    _tracking(tmp_path).ensure(cell, VARIANT, 0, "k1", CONFIG)
    assert recorder.calls[-1][:3] == ("finish", recorder.calls[-1][1], "finished")


def test_failed_and_pruned_rows_end_as_failed_and_killed(recorder, tmp_path, cell):
    for status, expected in (("failed", "failed"), ("pruned", "killed")):
        runs = _tracking(tmp_path).begin(cell, VARIANT, 0, f"k-{status}", CONFIG)
        runs.end(_row(cell, status))
        assert recorder.calls[-1][2] == expected


def test_new_settings_start_again_at_attempt_one(recorder, tmp_path, cell):
    runs = _tracking(tmp_path).begin(cell, VARIANT, 0, "k1", CONFIG)
    runs.end(_row(cell))
    _tracking(tmp_path).begin(cell, VARIANT, 0, "k2", CONFIG)
    assert recorder.calls[-1] == ("start", 1, f"{VARIANT.id} seed0")
    assert "killed" not in [c[0] for c in recorder.calls]


def test_params_name_knobs_config_key_environment_and_plugins(recorder, tmp_path, cell):
    seen = {}
    original = Recorder.start

    def start(self, cell_):
        seen.update(cell_.params)
        return original(self, cell_)

    Recorder.start = start
    try:
        _tracking(tmp_path).begin(cell, VARIANT, 0, "k1", CONFIG)
    finally:
        Recorder.start = original
    assert seen["knob.pool"] == VARIANT.pool and seen["run_key"] == "k1"
    assert seen["train.epochs"] == str(CONFIG.epochs) and seen["train.loss"] == CONFIG.loss
    assert seen["env.torch"] and "plugins" in seen
