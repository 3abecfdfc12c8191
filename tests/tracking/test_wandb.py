"""The W&B sink in offline mode, read back from W&B's own offline run files (``.wandb``: its
transaction log of protobuf ``Record`` messages, the file ``wandb sync`` uploads)."""

from __future__ import annotations

import json
import struct
from collections import defaultdict

import pytest

pytest.importorskip("wandb")

from wandb.proto import wandb_internal_pb2  # noqa: E402

pytestmark = pytest.mark.slow

_BLOCK, _HEADER = 32768, 7  # LevelDB log blocks after W&B's 7-byte file header
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_records(path):
    """Every ``Record`` of one offline ``.wandb`` file, in order."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pos, parts = [], _HEADER, b""
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:
            pos += left
            continue
        _, size, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if size == 0 and kind == 0:  # the rest of the block is padding
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + size], pos + 7 + size
        parts = chunk if kind in (_FULL, _FIRST) else parts + chunk
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            records.append(record)
    return records


def _key(item):
    return item.key or "/".join(item.nested_key)


@pytest.fixture(scope="module")
def offline(tracked_study):
    """Run id -> what its offline files say: job type, group, config, history, summary and
    exit codes (a run resumed in another process has several files)."""
    runs = defaultdict(lambda: {"history": [], "summary": {}, "exit": [], "config": {}})
    for path in sorted((tracked_study.exp_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        for record in read_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run = runs[record.run.run_id]
                current = run
                run.update(job_type=record.run.job_type, group=record.run.run_group,
                           name=record.run.display_name)
                run["config"].update({_key(i): json.loads(i.value_json)
                                      for i in record.run.config.update})
            elif kind == "history":
                current["history"].append({_key(i): json.loads(i.value_json)
                                           for i in record.history.item})
            elif kind == "summary":
                current["summary"].update({_key(i): i.value_json for i in record.summary.update})
            elif kind == "exit":
                current["exit"].append(record.exit.exit_code)
    return dict(runs)


def test_offline_by_default_with_one_finished_run_per_cell(tracked_study, offline):
    cells = {i: r for i, r in offline.items() if r["job_type"] == "cell"}
    finished = [r for r in cells.values() if r["exit"] == [0]]
    assert sorted(r["group"] for r in finished) == sorted(tracked_study.runs["variant"])
    killed = [r for r in cells.values() if 0 not in r["exit"]]
    assert [(r["group"], r["exit"]) for r in killed] == [(tracked_study.killed, [1])]
    assert killed[0]["summary"]["ablate_status"] == '"killed"'
    keys = set(tracked_study.runs["run_key"])
    assert {r["config"]["run_key"] for r in finished} == keys


def test_each_epoch_logged_once_with_the_tables_values(tracked_study, offline):
    for run in (r for r in offline.values() if r["job_type"] == "cell" and r["exit"] == [0]):
        history = tracked_study.history[run["group"]]
        logged = sorted((h["_step"], h["dice"]) for h in run["history"] if "dice" in h)
        assert logged == list(zip(history["epoch"], history["dice"]))


def test_aggregates_are_one_run_per_group_updated_in_place(tracked_study, offline):
    seeds = [r for r in offline.values() if r["job_type"] == "seeds"]
    assert sorted(r["group"] for r in seeds) == sorted(tracked_study.runs["variant"])
    for run in seeds:  # published twice (run, then report): the same run id both times
        assert run["exit"] == [0, 0]
        ok = tracked_study.runs[tracked_study.runs["variant"] == run["group"]]
        assert float(run["summary"]["dice_mean"]) == pytest.approx(ok["dice"].mean())
        assert json.loads(run["summary"]["converged"]) == f"{int(ok['converged'].sum())}/1"
    assert len([r for r in offline.values() if r["job_type"] == "study"]) == 1
