"""Tests of ablate.search: the search file, a tiny search end to end, the budget and pruning."""

from __future__ import annotations

import copy
import dataclasses

import optuna
import pandas as pd
import pytest
import yaml

from ablate import runner
from ablate.runner import COLUMNS
from ablate.scale import search
from ablate.scale.distributed import open_store
from ablate.scale.search import (
    SearchError,
    load_search,
    parse_search,
    run_search,
    trials_table,
    write_search_report,
)

TINY = {
    "study": "tiny",
    "dataset": {"name": "shapes", "options": {"n_train": 16, "n_val": 8}},
    "preset": "quick",
    "train": {"epochs": 1, "image_size": 32, "batch_size": 8, "samples": 0, "threads": 1},
    "baseline": {"widths": [16, 8, 8, 8]},
    "space": {"pool": ["M", "MAA"], "block": ["conv", "dsconv"]},
    "objectives": "dice,gmacs",
    "trials": 2,
    "sampler": "random",
    "profile_size": 32,
}


def tiny(**changes) -> dict:
    raw = copy.deepcopy(TINY)
    raw.update(changes)
    return raw


def store_for(tmp_path, name="tiny"):
    return open_store(f"sqlite:///{tmp_path / name / 'study.db'}", heartbeat=1, grace=5)


@pytest.mark.parametrize("changes, message", [
    ({"epochs": 3}, "unknown key 'epochs'; allowed: study, description"),
    ({"space": {"colour": ["red"]}}, "space: unknown knob 'colour'; allowed: block, encoder"),
    ({"space": {"pool": ["M", "MXA"]}}, "space.pool: pool='MXA' is not allowed"),
    ({"space": {"pool": ["M", "MSSS"]}}, "space.pool: ['M', 'MSSS'] lists the same choice twice"),
    ({"space": {"widths": [[8, 8]], "width_mult": [1.0]}}, "give widths or width_mult"),
    ({"space": {"width_mult": [0, 1]}}, "space.width_mult: 0 is not allowed"),
    ({"space": {"pool": "M"}}, "space.pool: expected a non-empty list"),
    ({"objectives": "gmacs,dice"}, "objectives: 'gmacs,dice' is not allowed; allowed: one metric"),
    ({"objectives": "dice,flops"}, "objectives: 'flops' is not allowed; allowed: boundary_iou"),
    ({"pruner": "median"}, "pruner: 'median' needs a single objective"),
    ({"pruner": "asha"}, "pruner: 'asha' is not allowed; allowed: hyperband, median, none"),
    ({"objectives": "dice", "pruner": {"name": "median", "n_warmup": 1}},
     "pruner: median with {'n_warmup': 1}"),
    ({"sampler": "cmaes"}, "sampler: 'cmaes' is not allowed; allowed: nsga2, random, tpe"),
    ({"trials": 5}, "trials: 5 is more than the 4 distinct valid variants"),
    ({"trials": 0}, "trials: 0 is not allowed; allowed: an integer >= 1"),
    ({"budget_gmacs": -1}, "budget_gmacs: -1 is not allowed"),
    ({"train": {"epochz": 1}}, "train: unknown training key 'epochz'"),
    ({"study": "a b"}, "study: 'a b' is not allowed"),
    ({"space": {"skips": [["e0", "e1", "e2", "e3"]]}, "baseline": {"widths": [8, 8],
                                                                  "skips": ["e3"]}},
     "no choice of the space makes a valid variant"),
])
def test_bad_search_files_are_refused_with_file_key_and_allowed(tmp_path, changes, message):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(tiny(**changes)))
    with pytest.raises(SearchError) as err:
        load_search(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


def test_space_choices_are_storable_and_map_to_variants():
    spec = parse_search(tiny(space={"width_mult": [0.5, 1], "skips": [["e3", "e2"], "none"],
                                    "pool": ["MAAS", "AAM"]}, trials=8))
    choices = {p.name: p.choices for p in spec.space}
    assert choices == {"width_mult": (0.5, 1.0), "skips": ("e2,e3", "none"),
                       "pool": ("MAA", "AAM")}
    variant = spec.variant({"width_mult": 0.5, "skips": "e2,e3", "pool": "AAM"})
    assert variant.widths == (8, 4, 4, 4) and variant.skips == ("e2", "e3")
    assert variant.id == "r18-AAM-w8.4.4.4-k23-cat-cv-bil"
    assert spec.baseline_params() is None  # the baseline keeps every skip: not in the space
    assert parse_search(tiny()).baseline_params() == {"pool": "M", "block": "conv"}
    assert spec.directions == ["maximize", "minimize"]
    widths = parse_search(tiny(space={"widths": [[16, 8, 8, 8], "8,8,8,8"]}))
    assert widths.space[0].choices == ("16,8,8,8", "8,8,8,8")


def test_a_study_refuses_workers_with_other_settings(tmp_path):
    store = store_for(tmp_path)
    search.open_study(parse_search(tiny()), store)
    search.open_study(parse_search(tiny(trials=3, description="more trials")), store)
    with pytest.raises(ValueError, match=r"study 'tiny' in sqlite:///.* was made with other "
                                         r"settings \(space differ\)"):
        search.open_study(parse_search(tiny(space={"pool": ["M", "AAM"]})), store)
    assert search.load_study_spec("tiny", store).trials == 3
    with pytest.raises(ValueError, match="no study 'nope' in .*; allowed: tiny"):
        search.load_study_spec("nope", store)


@pytest.mark.slow
def test_tiny_search_writes_trials_table_pareto_plot_and_report(tmp_path):
    spec = parse_search(tiny())
    store = store_for(tmp_path)
    assert run_search(spec, store, tmp_path, progress=False, sampler_seed=0) == 2
    shown = dataclasses.replace(store, url="postgresql://ablate:s3cret@db.lan/studies")
    report = write_search_report(spec, shown, tmp_path)  # only the label of the storage differs
    out = tmp_path / "tiny"
    assert "`postgresql://ablate:***@db.lan/studies`" in report.read_text()
    assert not [p for p in out.rglob("*") if p.is_file() and p.suffix in (".md", ".csv", ".json")
                and "s3cret" in p.read_text()]
    trials = pd.read_csv(out / "trials.csv")
    assert list(trials.columns[:2]) == ["trial", "trial_state"]
    assert set(COLUMNS) <= set(trials.columns) and {"param_pool", "param_block"} <= set(trials)
    ok = trials[trials["status"] == "ok"]
    assert len(ok) == 2 and (ok["trial_state"] == "COMPLETE").all()
    assert ok["variant"].is_unique and ok["gmacs_thop"].gt(0).all()
    assert ok.iloc[0]["variant"] == spec.baseline.id  # enqueued first
    for _, row in ok.iterrows():  # the parameters are the row's knobs
        assert spec.variant({"pool": row["param_pool"], "block": row["param_block"]}).id \
            == row["variant"]
        assert (out / "runs" / row["variant"] / "seed0" / "row.json").is_file()
    assert (out / "pareto.png").is_file() and (out / "importances.csv").is_file()
    text = report.read_text()
    for part in ("## Search", "2 complete of 2 asked", "### Pareto front",
                 "### Parameter importances", "![Dice vs GMACs, Pareto front](pareto.png)",
                 "## Results", "(baseline)"):
        assert part in text
    # joining a finished study runs nothing more
    assert run_search(spec, store, tmp_path, progress=False) == 2
    assert len(optuna.load_study(study_name="tiny", storage=store.optuna).trials) == len(trials)


@pytest.mark.slow
def test_budget_skips_over_budget_variants_without_training_them(tmp_path, monkeypatch):
    trained = []
    real_train = runner.train

    def spy(variant, *args, **kwargs):
        trained.append(variant.encoder)
        return real_train(variant, *args, **kwargs)

    monkeypatch.setattr(runner, "train", spy)
    spec = parse_search(tiny(objectives="dice", budget_gmacs=0.06, trials=1,
                             baseline={"widths": [16, 8, 8, 8], "encoder": "resnet34"},
                             space={"encoder": ["resnet34", "resnet18"]}))
    store = store_for(tmp_path)
    assert run_search(spec, store, tmp_path, progress=False, sampler_seed=0) == 1
    assert trained == ["resnet18"]
    write_search_report(spec, store, tmp_path)
    trials = pd.read_csv(tmp_path / "tiny" / "trials.csv")
    skipped = trials[trials["status"] == "skipped"]
    assert len(skipped) >= 1 and (skipped["encoder"] == "resnet34").all()
    assert skipped["error"].str.startswith("over budget").all()
    assert (skipped["gmacs_thop"] > 0.06).all() and (skipped["epochs_run"].isna()).all()
    ok = trials[trials["status"] == "ok"]
    assert list(ok["encoder"]) == ["resnet18"] and (ok["gmacs_thop"] <= 0.06).all()
    assert f"{len(skipped)} over budget" in (tmp_path / "tiny" / "report.md").read_text()


@pytest.mark.slow
def test_pruned_trials_record_their_row_and_the_epochs_saved(tmp_path, monkeypatch):
    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda self: True)
    spec = parse_search(tiny(objectives="dice", pruner="median", trials=1, max_trials=1,
                             train={**TINY["train"], "epochs": 3}, space={"pool": ["M"]}))
    store = store_for(tmp_path)
    assert run_search(spec, store, tmp_path, progress=False, sampler_seed=0) == 0
    study = optuna.load_study(study_name="tiny", storage=store.optuna)
    table = trials_table(study, spec)
    assert list(table["trial_state"]) == ["PRUNED"] and list(table["status"]) == ["pruned"]
    assert list(table["epochs_run"]) == [1] and table["dice"].notna().all()
    assert table["gmacs_thop"].gt(0).all()  # from a throw-away copy: no model after pruning
    assert search.epochs_saved(table) == 2
    assert study.trials[0].intermediate_values == {1: table["dice"][0]}
    text = write_search_report(spec, store, tmp_path).read_text()
    assert "1 pruned (2 epochs saved by pruning)" in text
    assert "No complete trial yet" in text
