"""Tests of ablate.scale.grid: real grid workers run every cell exactly once, and a grid cell
goes through the same ``runner.run_cell`` as ``ablate run`` (each reuses the other's row)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from ablate import runner
from ablate.experiment import parse_experiment
from ablate.scale.grid import run_grid
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
    row_file = runner.run_dir(results / "grid", exp.baseline, 0) / "row.json"
    row = json.loads(row_file.read_text())
    assert (runs["status"] == "ok").all() and list(runs["wall_s"]) == [row["wall_s"]]

    monkeypatch.setattr(runner, "train", lambda *a, **k: pytest.fail("a current row retrained"))
    again = runner.run_experiment(exp, results, progress=False, cache_dir=cache)  # ablate run
    assert list(again["wall_s"]) == [row["wall_s"]] and json.loads(row_file.read_text()) == row
    fresh = open_store(f"sqlite:///{tmp_path / 'fresh.db'}", heartbeat=1, grace=5)
    third = run_grid(exp, fresh, results, progress=False, cache_dir=cache, log=logs.append)
    assert cells == [exp.baseline.id] * 2  # the new pool's worker found the row: not retrained
    assert list(third["wall_s"]) == [row["wall_s"]] and json.loads(row_file.read_text()) == row


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
