"""Tests of ablate.scale.grid: real grid workers run every cell exactly once, also with a worker
killed at every fault point (``ablate.common.faults``) on every storage, and a grid cell goes
through the same ``runner.run_cell`` as ``ablate run`` (each reuses the other's row)."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ablate import runner
from ablate.cli import main
from ablate.common.faults import FAULTS
from ablate.data import load_dataset
from ablate.experiment import parse_experiment
from ablate.results import ROW_FILE, run_dir
from ablate.scale.grid import cell_key, run_grid
from ablate.scale.storage import open_store


@pytest.mark.slow
def test_two_grid_workers_run_every_cell_exactly_once(tmp_path, tiny, start_worker,
                                                      finish_workers):
    exp = tmp_path / "grid.yaml"
    exp.write_text(yaml.safe_dump({
        "name": "grid", "dataset": tiny()["dataset"], "preset": "quick", "train": tiny()["train"],
        "seeds": [0, 1], "baseline": {"widths": [16, 8, 8, 8]},
        "variants": [{"pool": "MAA"}], "profile_size": 32}))
    url = f"sqlite:///{tmp_path / 'grid.db'}"
    outs = finish_workers([start_worker("--experiment", str(exp), "--storage", url)
                           for _ in range(2)])
    ran = [line.split(": ")[0] for out in outs for line in out.splitlines()
           if line.startswith("ran ")]
    cells = [f"ran {v} seed {s}" for v in ("r18-M-w16.8.8.8-k0123-cat-cv-bil",
                                           "r18-MAA-w16.8.8.8-k0123-cat-cv-bil") for s in (0, 1)]
    assert sorted(ran) == sorted(cells)  # each cell once, over both workers
    runs = pd.read_csv(tmp_path / "results" / "grid" / "runs.csv")
    assert len(runs) == 4 and (runs["status"] == "ok").all()
    assert runs[["variant", "seed"]].drop_duplicates().shape[0] == 4


@pytest.mark.slow
def test_a_grid_cell_and_ablate_run_share_one_row_through_run_cell(tmp_path, monkeypatch, tiny):
    exp = parse_experiment({"name": "grid", "dataset": tiny()["dataset"], "preset": "quick",
                            "train": tiny()["train"], "seeds": [0],
                            "baseline": {"widths": [16, 8, 8, 8]}, "profile_size": 32}, "grid")
    results, cache = tmp_path / "results", tmp_path / "cache"
    cells, run_cell, logs = [], runner.run_cell, []

    def spy(exp, variant, *args, **kwargs):
        cells.append(variant.id)
        return run_cell(exp, variant, *args, **kwargs)

    monkeypatch.setattr(runner, "run_cell", spy)
    store = open_store(f"sqlite:///{tmp_path / 'grid.db'}", heartbeat=1, grace=5)
    runs = run_grid(exp, store, results, progress=False, cache_dir=cache, log=logs.append)
    assert cells == [exp.baseline.id] and logs == [f"ran {exp.baseline.id} seed 0: ok"]
    row_file = run_dir(results / "grid", exp.baseline, 0) / ROW_FILE
    row = json.loads(row_file.read_text())
    assert (runs["status"] == "ok").all() and list(runs["wall_s"]) == [row["wall_s"]]

    monkeypatch.setattr(runner, "train", lambda *a, **k: pytest.fail("a current row retrained"))
    again = runner.run_experiment(exp, results, progress=False, cache_dir=cache)  # ablate run
    assert list(again["wall_s"]) == [row["wall_s"]] and json.loads(row_file.read_text()) == row
    fresh = open_store(f"sqlite:///{tmp_path / 'fresh.db'}", heartbeat=1, grace=5)
    third = run_grid(exp, fresh, results, progress=False, cache_dir=cache, log=logs.append)
    assert cells == [exp.baseline.id] * 2  # the new pool's worker found the row: not retrained
    assert list(third["wall_s"]) == [row["wall_s"]] and json.loads(row_file.read_text()) == row


@pytest.mark.slow
def test_a_grid_worker_taken_for_dead_stops_its_cell_and_resumes_it_later(tmp_path, tiny,
                                                                         fake_training,
                                                                         taken_over):
    """Mid-training, another worker takes the cell over (this one's beats came late) and then
    dies too: the late worker stops at the next epoch end instead of training beside it, and
    once the heir's claim is stale it takes the cell back: one row, trained to the end once."""
    exp = parse_experiment({"name": "grid", "dataset": tiny()["dataset"], "preset": "quick",
                            "train": {**tiny()["train"], "epochs": 3}, "seeds": [0],
                            "baseline": {"widths": [16, 8, 8, 8]}, "profile_size": 32}, "grid")
    store = open_store(f"sqlite:///{tmp_path / 'grid.db'}", heartbeat=0.1, grace=1)

    def heir(variant) -> None:
        claims = store.claims(f"grid/{exp.name}")
        [(cell, held)] = claims.all().items()
        assert claims.claim(cell, "heir", takeover=held.owner)

    epochs, logs = taken_over(heir), []
    runs = run_grid(exp, store, tmp_path / "results", progress=False,
                    cache_dir=tmp_path / "cache", log=logs.append)
    assert epochs == [1] and list(runs["status"]) == ["ok"]
    assert list(fake_training().values()) == [1]
    assert logs == [f"stopped {exp.baseline.id} seed 0: another worker took the cell over (this "
                    "worker missed its heartbeats), which resumes it",
                    f"ran {exp.baseline.id} seed 0: ok"]


GRID_FAULTS = [p for p in FAULTS.names() if "grid" in FAULTS.meta(p)["where"]]


@pytest.mark.slow
def test_a_grid_worker_killed_at_any_fault_point_leaves_every_cell_run_once(
        storage, tiny, fast, fast_tmp, fake_training, fork, ended, journal):
    """Per fault point, a grid worker dies there; then two more finish the grid together. The
    grid is tracked (the ``journal`` sink): one finished tracker run per cell, the rest killed."""
    results, cache, go = fast_tmp / "results", fast_tmp / "cache", fast_tmp / "go"
    exps = {p: parse_experiment({"name": f"grid-{p}", "dataset": tiny()["dataset"],
                                 "preset": "quick", "train": {**tiny()["train"], "epochs": 2},
                                 "seeds": [0], "baseline": {"widths": [16, 8, 8, 8]},
                                 "variants": [{"pool": "MAA"}], "profile_size": 32,
                                 "tracking": ["journal"]}, p)
            for p in GRID_FAULTS}
    load_dataset(runner.data_spec(exps["epoch-end"]), cache)  # decoded once, before any fork

    def start(point: str, fault: str | None = None, go: Path | None = None) -> int:
        def work() -> None:
            while go is not None and not go.exists():
                time.sleep(0.01)
            exp = exps[point]
            run_grid(exp, open_store(storage(exp.name), **fast), results, progress=False,
                     cache_dir=cache, log=lambda line: None)
        return fork(work, fault)

    victims = {p: start(p, fault=p) for p in exps}
    assert {p: ended(pid) for p, pid in victims.items()} == dict.fromkeys(exps, "killed")
    time.sleep(fast["grace"])  # every victim's claims are stale now
    heirs = {p: [start(p, go=go) for _ in range(2)] for p in exps}
    go.touch()
    assert {p: [ended(pid) for pid in pids] for p, pids in heirs.items()} == \
        dict.fromkeys(exps, ["exit 0", "exit 0"])
    trained = fake_training()
    for point, exp in exps.items():
        cells = {f"{exp.name} {v.id} seed{s}": cell_key(v.id, s, runner.run_key(
            v, runner.data_spec(exp), exp.config, s, exp.profile_size)) for v, s in exp.runs()}
        assert Counter({k: trained[k] for k in cells}) == Counter(dict.fromkeys(cells, 1)), point
        held = open_store(storage(exp.name)).claims(f"grid/{exp.name}").all()
        assert {held[k].state for k in cells.values()} == {"done"}, point
        runs = pd.read_csv(results / exp.name / "runs.csv")
        assert sorted(runs["variant"] + " seed" + runs["seed"].astype(str)) == \
            sorted(k.split(" ", 1)[1] for k in cells), point
        assert (runs["status"] == "ok").all(), point
        parquet = pd.read_parquet(results / exp.name / "runs.parquet")
        assert parquet[["variant", "seed", "status"]].equals(runs[["variant", "seed", "status"]])
        entries = journal(results / exp.name, [k.split(" ", 1)[1] for k in cells], point)
        if point == "epoch-end":  # killed mid-training: its tracker run marked, then redone
            assert entries[0]["id"] in {e["id"] for e in entries if e["call"] == "killed"}


def test_adaptive_seeds_in_a_pool_run_each_added_cell_exactly_once(tmp_path, monkeypatch,
                                                                   adaptive_raw, fake_cell):
    """Two workers (threads here; cells write made-up rows) share the rounds of adaptive
    seeds: every planned cell, the added seeds included, is run once, and both end with the
    plan ``ablate run`` would make."""
    import threading

    from ablate.scale import grid

    ran, lock = [], threading.Lock()

    def cell(exp, variant, seed, *args, **kwargs):
        with lock:
            ran.append((variant.id, seed))
        return fake_cell(exp, variant, seed, *args, **kwargs)

    monkeypatch.setattr(runner, "run_cell", cell)
    monkeypatch.setattr(grid, "load_dataset", lambda *a, **k: None)
    exp = parse_experiment(adaptive_raw, "adaptive")
    url = f"sqlite:///{tmp_path / 'grid.db'}"
    results = {}

    def work(name: str) -> None:
        store = open_store(url, heartbeat=1, grace=30)
        results[name] = grid.run_grid(exp, store, tmp_path / name, progress=False,
                                      log=lambda line: None)

    workers = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert sorted(ran) == sorted(set(ran))  # no cell twice
    planned = runner.planned_runs(exp, results["a"])
    assert sorted(ran) == sorted((v.id, s) for v, s in planned)
    assert len(planned) > 12 and len(planned) < 24  # rounds were added, not every seed
    for runs in results.values():
        assert sorted(zip(runs["variant"], runs["seed"])) == sorted(ran)


def test_a_grid_worker_that_cannot_import_a_plugin_refuses_before_claiming(dup_plugin, tiny,
                                                                          capsys):
    exp = dup_plugin.parent / "grid.yaml"
    exp.write_text(yaml.safe_dump({"name": "grid", "plugins": [dup_plugin.name],
                                   "dataset": tiny()["dataset"], "train": tiny()["train"],
                                   "baseline": {"widths": [16, 8, 8, 8]}}))
    url = f"sqlite:///{dup_plugin.parent / 'grid.db'}"
    assert main(["worker", "--experiment", str(exp), "--storage", url]) == 2
    err = capsys.readouterr().err
    assert f"{exp}: plugins: plugin 'dupplug.py': loss 'dice' is already registered" in err
    assert not (dup_plugin.parent / "grid.db").exists()  # no store opened, nothing claimed
