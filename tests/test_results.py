"""Tests of ablate.results: a schema derived from the code that fills it, the statuses, the
costs, and the run folders and tables read back."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from ablate.common.env import environment
from ablate.evaluation.metrics import METRICS, register_metric
from ablate.experiment import parse_experiment
from ablate.models.model import build_model
from ablate.models.profile import profile_model
from ablate.models.variant import KNOBS, Variant
from ablate.results import (
    COSTS,
    OK,
    STATUSES,
    collect_runs,
    columns,
    load_runs,
    read_row,
    register_cost,
    row_statuses,
    run_dir,
    write_row,
    write_runs,
)
from ablate.runner import base_row
from ablate.training.convergence import judge

TINY = Variant(widths=(16, 8, 8, 8), block="dsconv")


def test_the_row_holds_what_the_profile_environment_convergence_and_registries_fill():
    model = build_model(TINY, 2)
    filled = {**profile_model(model, (3, 32, 32)).row(),
              **environment(torch.device("cpu")),
              **judge([{"epoch": 1, "train_loss": 1.0, "dice": 0.5}]).row(),
              **{m: 0.0 for m in METRICS.names()}, **TINY.columns()}
    schema = columns()
    assert set(filled) <= set(schema) and len(set(schema)) == len(schema)
    for group in (profile_model(model, (3, 32, 32)).row(), environment(torch.device("cpu"))):
        at = [schema.index(c) for c in group]  # each group in its own order, side by side
        assert at == list(range(at[0], at[0] + len(group)))
    assert set(KNOBS.names()) <= set(schema)
    assert all(COSTS.get(c).column in schema for c in COSTS.names())


def test_a_newly_registered_metric_is_a_new_column():
    before = columns()
    register_metric("fake_score", better="max", label="Fake", definition="for a test")(
        lambda acc: 0.0)
    try:
        after = columns()
        assert "fake_score" in after and "fake_score" not in before
        assert after.index("fake_score") == after.index(METRICS.names()[-2]) + 1
    finally:
        METRICS.unregister("fake_score")
    assert columns() == before


def test_costs_carry_column_label_unit_and_direction():
    assert COSTS.names() == ["gmacs", "gmacs_exact", "gmacs_fvcore", "gflops_torch", "params",
                             "latency", "peak_mem"]
    assert COSTS.get("gmacs").column == "gmacs_thop" and COSTS.get("params").label == "Params (M)"
    assert {COSTS.get(c).better for c in COSTS.names()} == {"min"}
    with pytest.raises(ValueError, match="better='lower' is not allowed; allowed: max, min"):
        register_cost("energy", "energy_j", "Energy (J)", "joules per image", better="lower")
    register_cost("energy", "energy_j", "Energy (J)", "joules per image")
    try:
        assert COSTS.get("energy").better == "min" and "energy" in COSTS.names()
    finally:
        COSTS.unregister("energy")


def test_statuses_are_one_registry_and_a_row_has_three():
    assert STATUSES.names() == ["ok", "failed", "pruned", "skipped", "lost", "running",
                                "waiting"]
    assert row_statuses() == ("ok", "failed", "pruned")
    with pytest.raises(ValueError, match="unknown status 'done'; allowed: ok, failed, pruned"):
        STATUSES.get("done")


def _experiment():
    return parse_experiment({
        "name": "tiny", "dataset": {"name": "shapes"}, "preset": "quick",
        "train": {"epochs": 1, "image_size": 32}, "seeds": [0, 1],
        "baseline": {"widths": [16, 8, 8, 8], "block": "dsconv"},
        "variants": [{"pool": "MAA"}]})


def test_the_run_folder_layout_is_read_back(tmp_path):
    exp, exp_dir = _experiment(), tmp_path / "tiny"
    assert run_dir(exp_dir, exp.baseline, 1) == exp_dir / "runs" / exp.baseline.id / "seed1"
    assert run_dir(exp_dir, exp.baseline.id, 1) == run_dir(exp_dir, exp.baseline, 1)
    for variant, seed in exp.runs()[:3]:
        row = base_row(variant, seed, exp.name, exp.preset, exp.config)
        row.update(status=OK, dice=0.5 + seed / 10, dataset="shapes",
                   **environment(torch.device("cpu")))
        write_row(run_dir(exp_dir, variant, seed), row)
    assert read_row(run_dir(exp_dir, exp.baseline, 0))["variant"] == exp.baseline.id
    # "*" in place of the experiment folder finds the same run in every experiment
    assert list(tmp_path.glob(str(run_dir("*", exp.baseline, 0) / "row.json"))) == [
        run_dir(exp_dir, exp.baseline, 0) / "row.json"]

    runs = collect_runs(exp_dir, exp)
    assert list(runs.columns) == list(columns()) and len(runs) == 3
    write_runs(exp_dir, runs)
    back = load_runs(exp_dir)
    assert list(back.columns) == list(runs.columns)
    assert back["error"].tolist() == [""] * 3 and back["status"].tolist() == [OK] * 3
    (exp_dir / "runs.parquet").unlink()
    from_csv = load_runs(exp_dir)
    pd.testing.assert_series_equal(from_csv["dice"], back["dice"])
    assert math.isnan(from_csv["gmacs_thop"][0])
