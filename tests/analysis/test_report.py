"""Tests of ablate.report: the runs table round-trips, and report.md holds what it promises."""

from __future__ import annotations

import re

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from ablate.analysis.report import write_report
from ablate.analysis.stats import COLUMNS, summarize
from ablate.analysis.tables import format_summary
from ablate.results import load_runs

DEFINITION = "Dice = 2TP/(2TP+FP+FN) over all validation pixels (micro)"
UNITS = "GMACs = 1e9 multiply-accumulates (thop), input 1x3x224x224"


def make_runs(dice: dict[str, list[float | None]]) -> pd.DataFrame:
    """A runs table with the schema's identity, setup, metric and environment columns."""
    rows = []
    for i, (variant, values) in enumerate(dice.items()):
        for seed, value in enumerate(values):
            ok = value is not None
            rows.append(dict(
                experiment="pooling", variant=variant, seed=seed,
                status="ok" if ok else "failed",
                error="" if ok else "RuntimeError: CUDA out of memory | at step 12",
                pretrained="", dataset="toy-shapes", image_size=224, epochs=15,
                preset="tiny", loss="dice", dice=value if ok else np.nan,
                iou=value - 0.05 if ok else np.nan, params=22_500_000 + i,
                params_m=22.5 + i * 1e-6, gmacs_thop=3.8 - 0.1 * i, device="cuda:0 (H100)",
                torch="2.5.1", git_commit="abc1234", metric_definition=DEFINITION,
                counter_units=UNITS))
    return pd.DataFrame(rows)


@pytest.fixture
def runs() -> pd.DataFrame:
    return make_runs({"r18-M": [0.90, 0.91, 0.92], "r18-MAA": [0.93, 0.94, 0.945],
                      "r18-AAM": [0.89, None, 0.90]})


def test_load_runs_prefers_parquet_and_keeps_empty_text(tmp_path, runs):
    with pytest.raises(FileNotFoundError, match="runs.parquet or runs.csv"):
        load_runs(tmp_path)
    runs.to_csv(tmp_path / "runs.csv", index=False)
    back = load_runs(tmp_path)
    assert back.loc[0, "error"] == "" and back.loc[0, "pretrained"] == ""
    assert back["dice"].isna().sum() == 1
    pd.testing.assert_series_equal(back["dice"], runs["dice"])
    runs.iloc[:2].to_parquet(tmp_path / "runs.parquet")
    assert len(load_runs(tmp_path)) == 2


@pytest.mark.slow
def test_report_holds_setup_table_figures_failures_and_definitions(tmp_path, runs):
    run_dir = tmp_path / "runs" / "r18-M" / "seed0"
    run_dir.mkdir(parents=True)
    pd.DataFrame({"epoch": [1, 2], "train_loss": [0.5, 0.4], "val_loss": [0.6, 0.5],
                  "dice": [0.8, 0.9], "iou": [0.7, 0.8], "boundary_iou": [0.5, 0.6],
                  "lr": [1e-3, 5e-4], "time_s": [1.0, 1.0]}).to_csv(run_dir / "history.csv",
                                                                     index=False)
    matplotlib.image.imsave(run_dir / "samples.png", np.zeros((8, 24, 3)))

    path = write_report(tmp_path, runs, "r18-M", title="Pooling order")
    assert path == tmp_path / "report.md"
    text = path.read_text(encoding="utf-8")

    assert text.startswith("# Pooling order\n")
    for fact in ("toy-shapes", "224", "15", "tiny", "cuda:0 (H100)", "abc1234", "2.5.1",
                 "seeds: 0, 1, 2", "runs: 9 (8 ok, 1 failed)"):
        assert fact in text
    table = format_summary(summarize(runs, "r18-M"), "markdown")
    assert table in text and "★ **r18-MAA**" in text
    assert "How to read this table" in text and "Holm" in text and "t-interval" in text
    assert r"RuntimeError: CUDA out of memory \| at step 12" in text
    assert DEFINITION in text and UNITS in text

    links = re.findall(r"\]\(([^)]+)\)", text)
    assert {"plots/dice_vs_gmacs.png", "plots/dice_vs_params.png", "plots/dice_ci.png",
            "plots/curves.png", "plots/samples.png", "summary.csv", "summary.tex"} <= set(links)
    for link in links:
        assert not link.startswith("/") and (tmp_path / link).is_file(), link
    assert (tmp_path / "summary.md").is_file()


def test_report_says_which_figures_it_could_not_draw(tmp_path, runs):
    text = write_report(tmp_path, runs.assign(gmacs_thop=np.nan), "r18-M").read_text("utf-8")
    assert text.startswith("# Ablation report: pooling\n")
    assert "Not drawn: no `gmacs_thop` in the runs table." in text
    assert "Not drawn: no history.csv found." in text
    assert "Not drawn: no samples.png found." in text
    assert not (tmp_path / "plots" / "dice_vs_gmacs.png").exists()


def test_report_on_another_metric_and_a_bad_baseline(tmp_path, runs):
    text = write_report(tmp_path, runs, "r18-M", metric="iou").read_text("utf-8")
    assert "IoU mean ± sd" in text and "plots/iou_vs_gmacs.png" in text
    with pytest.raises(ValueError, match="baseline='r50'"):
        write_report(tmp_path, runs, "r50")


def test_unconverged_variants_are_named_first_and_counted_in_the_table(tmp_path, runs):
    runs["converged"] = True
    runs.loc[(runs["variant"] == "r18-MAA") & (runs["seed"] == 1), "converged"] = False
    runs.to_csv(tmp_path / "runs.csv", index=False)  # the flag must survive the CSV round trip
    runs = load_runs(tmp_path)
    summary = summarize(runs, "r18-M")
    assert summary.set_index("variant")["n_converged"].to_dict() == {
        "r18-M": 3, "r18-MAA": 2, "r18-AAM": 2}  # AAM's failed run is not counted
    report = write_report(tmp_path, runs, "r18-M").read_text()
    first = report.split("## Setup")[0]
    assert "still improving" in first and "r18-MAA (1 of 3 runs)" in first
    assert "training speed, not architecture" in first and "r18-AAM" not in first
    assert re.search(r"\|\s+2/3 \|", format_summary(summary))


@pytest.mark.slow
def test_no_warning_when_every_run_converged_or_the_table_does_not_say(tmp_path, runs):
    assert "Warning: still improving" not in write_report(tmp_path, runs, "r18-M").read_text()
    assert re.search(r"\|\s+— \|", format_summary(summarize(runs, "r18-M")))  # unknown
    runs["converged"] = True
    assert "Warning: still improving" not in write_report(tmp_path, runs, "r18-M").read_text()


def test_report_defines_every_summary_column(tmp_path, runs):
    text = write_report(tmp_path, runs, "r18-M").read_text("utf-8")
    summary = summarize(runs, "r18-M")
    assert [c.replace("<metric>", "dice") for c in COLUMNS] == list(summary.columns)
    definitions = text.split("**Summary columns**")[1]
    for column in summary.columns:
        assert f"- `{column}`: " in definitions
    assert "Not drawn: no `latency_ms` in the runs table." in text
    assert "## Adaptive seeds" not in text
    assert "## Factorial effects" not in text  # one knob varies at most: not a grid


@pytest.mark.slow
def test_margins_give_verdicts_on_every_metric_that_has_one(tmp_path, runs):
    text = write_report(tmp_path, runs, "r18-M",
                        equivalence={"dice": 0.05, "iou": 0.05}).read_text("utf-8")
    summary = summarize(runs, "r18-M", margin=0.05)
    assert format_summary(summary) in text and "TOST" in text
    other = text.split("### Verdicts on IoU (margin ±0.05)")[1].split("##")[0]
    iou = summarize(runs, "r18-M", "iou", margin=0.05).set_index("variant")
    for variant in ("r18-MAA", "r18-AAM"):
        line = next(line for line in other.splitlines() if f"`{variant}`" in line)
        assert line.rstrip(" |").endswith(iou.loc[variant, "verdict"])


@pytest.mark.slow
def test_adaptive_seeds_and_a_grid_get_their_sections(tmp_path):
    rows = []
    for fusion, upsample, shift in (("cat", "bil", 0.0), ("add", "bil", 0.04),
                                    ("cat", "nn", -0.005), ("add", "nn", 0.03)):
        for seed, noise in enumerate([0.002, -0.001, 0.003, -0.002]):
            rows.append(dict(variant=f"{fusion}-{upsample}", seed=seed, status="ok",
                             fusion=fusion, upsample=upsample, dice=0.85 + shift + noise,
                             gmacs_thop=1.9, params_m=11.3, latency_ms=20.0))
    runs = pd.DataFrame(rows)
    runs = runs[~((runs["variant"] == "add-bil") & (runs["seed"] == 3))]  # decided at look 1
    text = write_report(tmp_path, runs, "cat-bil", looks=(3, 4)).read_text("utf-8")
    assert "## Adaptive seeds" in text and "## Factorial effects" in text
    assert "**Runs: 15 of the 16 that 4 seeds for every variant would take; adaptivity saved " \
           "1 runs (6%).**" in text
    assert "fusion: add vs cat" in text and "plots/dice_interactions.png" in text
    assert "plots/dice_vs_latency.png" in text
    assert (tmp_path / "factorial.csv").is_file() and (tmp_path / "factorial.tex").is_file()
    columns = pd.read_csv(tmp_path / "factorial.csv").columns
    definitions = text.split("**Factorial columns**")[1]
    assert all(f"- `{c}`: " in definitions for c in columns)
