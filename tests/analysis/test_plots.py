"""Tests of ablate.plots: the Pareto front by hand, and figures written as real PNG and SVG."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from ablate.analysis import plots
from ablate.analysis.plots import (
    plot_curves,
    plot_interactions,
    plot_metric_ci,
    plot_metric_vs_cost,
    plot_samples,
)
from ablate.analysis.stats import summarize

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IDS = ["r18-M-w128.64.32.32-k0123-cat-ds-bil", "r18-MAA-w128.64.32.32-k0123-cat-ds-bil",
       "r18-MAA-w128.64.32.32-k23-cat-ds-bil"]


def make_runs(dice: dict[str, list[float | None]]) -> pd.DataFrame:
    """A minimal runs table: one row per (variant, seed); None = failed run."""
    rows = []
    for i, (variant, values) in enumerate(dice.items()):
        for seed, value in enumerate(values):
            rows.append(dict(variant=variant, seed=seed,
                             status="failed" if value is None else "ok",
                             dice=np.nan if value is None else value,
                             gmacs_thop=3.8 - 0.1 * i, params_m=22.5 + 0.2 * i, image_size=224))
    return pd.DataFrame(rows)


@pytest.fixture
def summary() -> pd.DataFrame:
    runs = make_runs({IDS[0]: [0.90, 0.91, 0.92], IDS[1]: [0.93, 0.94, 0.945],
                      IDS[2]: [0.89, None, 0.90]})
    return summarize(runs, IDS[0])


def assert_figure(paths, stem: str, texts=()) -> str:
    """Both files exist under the stem, the PNG is a PNG, the SVG an SVG holding ``texts``."""
    assert [p.name for p in paths] == [f"{stem}.png", f"{stem}.svg"]
    png, svg = paths
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 1000
    text = svg.read_text(encoding="utf-8")
    assert "<svg" in text and "</svg>" in text
    for t in texts:
        assert t in text
    return text


def test_dice_vs_gmacs_and_params(tmp_path, summary):
    # Short labels drop the tokens every id shares: "M-k0123", "MAA-k0123", "MAA-k23".
    text = assert_figure(plot_metric_vs_cost(summary, "gmacs", tmp_path), "dice_vs_gmacs",
                         ["baseline", "Pareto front", "M-k0123", "MAA-k23", "GMACs (thop)"])
    assert IDS[0] not in text
    assert_figure(plot_metric_vs_cost(summary, "params", tmp_path), "dice_vs_params",
                  ["Params (M)", "millions of parameters", "MAA-k0123"])
    # Each variant drawn by its class: the legend names the classes present.
    classes = set(summary["pareto_gmacs"])
    assert classes <= {"optimal", "possibly optimal", "dominated"}
    for name, label in (("optimal", "Pareto-optimal"), ("possibly optimal", "possibly optimal"),
                        ("dominated", "dominated (a cheaper")):
        assert (label in text) == (name in classes)


@pytest.mark.parametrize("cost", ["gmacs", "latency"])
def test_every_text_of_a_cost_plot_lies_inside_the_figure(tmp_path, summary, monkeypatch, cost):
    """No text is cut at the figure's edge: a long axis label wraps (the GMACs label of the
    committed plots once ran off both sides), and long variant labels stay inside."""
    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, out_dir, stem: drawn.append(fig) or [])
    long_ids = summary.assign(variant=[f"{v}-{i}with_a_long_tail_of_knobs_and_more" for i, v
                                       in enumerate(summary["variant"])],
                              latency_ms=[20.0, 25.0, 28.0])
    plot_metric_vs_cost(long_ids, cost, tmp_path)
    [fig] = drawn
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    box, [ax] = fig.bbox, fig.axes
    texts = [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts]  # ax.texts: the variants
    assert any("long_tail" in t.get_text() for t in texts)
    for t in texts:
        extent = t.get_window_extent(renderer)
        assert box.x0 - 1 <= extent.x0 and extent.x1 <= box.x1 + 1, t.get_text()


def test_dice_vs_latency_and_interactions(tmp_path, summary):
    timed = summary.assign(latency_ms=[20.0, 18.0, 25.0], pareto_latency=[
        "possibly optimal", "optimal", "dominated"])
    assert_figure(plot_metric_vs_cost(timed, "latency", tmp_path), "dice_vs_latency",
                  ["Latency (ms)", "possibly optimal", "dominated (a cheaper"])
    runs = pd.DataFrame([dict(variant=f"{f}-{u}", seed=s, status="ok", fusion=f, upsample=u,
                              dice=0.8 + 0.01 * s + 0.03 * (f == "add"))
                         for f in ("concat", "add") for u in ("bilinear", "nearest", "transpose")
                         for s in range(3)])
    assert_figure(plot_interactions(runs, ["fusion", "upsample"], "concat-bilinear", tmp_path),
                  "dice_interactions", ["fusion = concat", "fusion = add", "transpose",
                                        "parallel lines = no interaction"])


def test_dice_vs_gmacs_needs_counts(tmp_path, summary):
    with pytest.raises(ValueError, match="gmacs_thop"):
        plot_metric_vs_cost(summary.assign(gmacs_thop=np.nan), "gmacs", tmp_path)


def test_dice_ci(tmp_path, summary):
    assert_figure(plot_metric_ci(summary, tmp_path), "dice_ci",
                  [f"{IDS[1]} (n=3)", f"{IDS[2]} (n=2)", "baseline mean"])


def write_history(run_dir, dice_start: float) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    epochs = np.arange(1, 6)
    pd.DataFrame({"epoch": epochs, "train_loss": 1 / epochs, "val_loss": 1.1 / epochs,
                  "dice": dice_start + 0.01 * epochs, "iou": dice_start - 0.1 + 0.01 * epochs,
                  "boundary_iou": 0.5 + 0.01 * epochs, "lr": 1e-3, "time_s": 1.0}
                 ).to_csv(run_dir / "history.csv", index=False)


def test_curves_skip_missing_histories(tmp_path):
    runs = make_runs({"base": [0.9, 0.91], "other": [0.8, 0.81], "nohist": [0.7]})
    write_history(tmp_path / "runs" / "base" / "seed0", 0.85)
    write_history(tmp_path / "runs" / "base" / "seed1", 0.86)
    write_history(tmp_path / "runs" / "other" / "seed1", 0.75)
    text = assert_figure(plot_curves(tmp_path, runs, tmp_path / "plots"), "curves",
                         ["base (n=2)", "other (n=1)", "epoch", "train loss"])
    assert "nohist" not in text
    assert plot_curves(tmp_path / "empty", runs, tmp_path / "plots2") == []
    assert not (tmp_path / "plots2").exists()
    with pytest.raises(ValueError, match=r"metric='f1'.*allowed: dice, iou"):
        plot_curves(tmp_path, runs, tmp_path / "plots", metric="f1")
    with pytest.raises(ValueError, match="history.csv lacks column.*pixel_acc"):
        plot_curves(tmp_path, runs, tmp_path / "plots", metric="pixel_acc")


def test_samples_grid_uses_first_seed_with_a_picture(tmp_path):
    runs = make_runs({"base": [0.9, 0.91], "other": [0.8, 0.81], "none": [0.7]})
    image = np.zeros((20, 60, 3))
    for variant, seed in (("base", 0), ("other", 1)):
        run_dir = tmp_path / "runs" / variant / f"seed{seed}"
        run_dir.mkdir(parents=True)
        matplotlib.image.imsave(run_dir / "samples.png", image)
    assert_figure(plot_samples(tmp_path, runs, tmp_path / "plots"), "samples",
                  ["base (seed 0)", "other (seed 1)"])
    assert plot_samples(tmp_path / "empty", runs, tmp_path / "plots") == []
