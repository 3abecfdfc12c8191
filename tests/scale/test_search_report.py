"""Tests of ablate.scale.search_report: a tiny search's trials table, Pareto plot and report,
with no password of the storage URL in any file."""

from __future__ import annotations

import dataclasses

import optuna
import pandas as pd
import pytest

from ablate.results import columns
from ablate.scale.search import run_search
from ablate.scale.search_report import write_search_report
from ablate.scale.search_spec import parse_search


@pytest.mark.slow
def test_tiny_search_writes_trials_table_pareto_plot_and_report(tmp_path, tiny, tiny_store):
    spec = parse_search(tiny())
    store = tiny_store
    assert run_search(spec, store, tmp_path, progress=False, sampler_seed=0) == 2
    shown = dataclasses.replace(store, url="postgresql://ablate:s3cret@db.lan/studies")
    report = write_search_report(spec, shown, tmp_path)  # only the label of the storage differs
    out = tmp_path / "tiny"
    assert "`postgresql://ablate:***@db.lan/studies`" in report.read_text()
    assert not [p for p in out.rglob("*") if p.is_file() and p.suffix in (".md", ".csv", ".json")
                and "s3cret" in p.read_text()]
    trials = pd.read_csv(out / "trials.csv")
    assert list(trials.columns[:2]) == ["trial", "trial_state"]
    assert set(columns()) <= set(trials.columns) and {"param_pool", "param_block"} <= set(trials)
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
                 "### Parameter importances", "![Dice vs GMACs (thop), Pareto front](pareto.png)",
                 "## Results", "(baseline)", "Class with uncertainty",
                 "2 of 2 complete variants ran one seed (seed 0)"):
        assert part in text
    front = text.split("### Pareto front")[1].split("###")[0]
    assert all(line.rstrip(" |").endswith("one seed") for line in front.splitlines()
               if line.startswith("| ") and "`" in line)
    # one-epoch trials cannot be judged: the search report says so of every complete trial
    assert "- Convergence: 0 of 2 complete trials converged; **still improving: trial 0" in text
    # joining a finished study runs nothing more
    assert run_search(spec, store, tmp_path, progress=False) == 2
    assert len(optuna.load_study(study_name="tiny", storage=store.optuna).trials) == len(trials)
