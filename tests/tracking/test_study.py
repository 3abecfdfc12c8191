"""Publishing the aggregates: every variant's run and the study's run, and a cell that cannot be
logged never stops the report (the ``journal`` sink records the calls)."""

from __future__ import annotations

import pandas as pd

from ablate.config import load_config
from ablate.models.variant import Variant
from ablate.results import run_dir, write_row
from ablate.tracking.cell import Tracking
from ablate.tracking.study import aggregate_values, publish


def test_publish_logs_cells_then_one_run_per_variant_and_the_study(tmp_path, journal):
    exp_dir, variant = tmp_path / "exp", Variant()
    out = run_dir(exp_dir, variant, 0)
    out.mkdir(parents=True)
    (out / "history.csv").write_text("epoch,train_loss,dice\n1,0.5,0.8\n")
    write_row(out, {"variant": variant.id, "seed": 0, "status": "ok", "dice": 0.8,
                    "run_key": "k"})
    runs = pd.DataFrame({"variant": [variant.id, "not-a-variant-id"], "seed": [0, 0],
                         "run_key": ["k", "k2"], "pool": [variant.pool, "M"]})
    summary = pd.DataFrame({"variant": [variant.id], "n_seeds": [1], "n_converged": [1],
                            "dice_mean": [0.8], "verdict": ["baseline"]})
    summary.attrs["metric"] = "dice"
    (exp_dir / "report.md").write_text("# report\n")
    messages = []
    tracking = Tracking(["journal"], exp_dir, "exp", messages.append)
    publish(tracking, exp_dir, load_config("quick"), runs, summary, exp_dir / "report.md")
    entries = journal(exp_dir, [f"{variant.id} seed0"])
    assert [e["call"] for e in entries] == ["start", "epoch", "finish", "variant", "study"]
    assert len(messages) == 1 and "not-a-variant-id" in messages[0]  # reported, not raised


def test_aggregate_values_split_numbers_from_tags_and_count_converged():
    values, tags = aggregate_values({"variant": "v", "n_seeds": 3, "n_converged": 2.0,
                                     "dice_mean": 0.9, "p_value": float("nan"), "note": "",
                                     "verdict": "undecided", "is_baseline": False}, "dice")
    assert values == {"n_seeds": 3.0, "n_converged": 2.0, "dice_mean": 0.9}
    assert tags == {"variant": "v", "verdict": "undecided", "is_baseline": "False",
                    "converged": "2/3", "metric": "dice"}
