"""Figures of an ablation, drawn from a summary table and the runs' stored files.

Every figure is saved as PNG and SVG and the functions return the paths they wrote. Figures are
built with ``matplotlib.figure.Figure`` directly, never through ``pyplot``: no global backend is
switched and nothing is left open, so this works headless and inside notebooks alike.

Each run's files live in its run folder (``ablate.results.run_dir``): ``history.csv`` (one row per
epoch: ``epoch``, ``train_loss`` and the metrics) and ``samples.png``; missing files are
skipped.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from ..common.checks import oriented
from ..evaluation.metrics import DEFAULT_METRIC, METRICS
from ..results import COSTS, OK, run_dir
from ..training.convergence import LOSS_TOLERANCE, TOLERANCE, is_converged, window_start
from .pareto import pareto_front
from .tables import input_size, metric_of


def _short_labels(variants: Sequence[str]) -> list[str]:
    """Variant ids without the ``-`` tokens they all share (the full id if nothing is left)."""
    tokens = [str(v).split("-") for v in variants]
    common = set.intersection(*map(set, tokens)) if len(tokens) > 1 else set()
    return ["-".join(t for t in toks if t not in common) or str(v)
            for v, toks in zip(variants, tokens)]


def _save(fig: Figure, out_dir: Path | str, stem: str) -> list[Path]:
    """Save ``fig`` as ``<stem>.png`` and ``<stem>.svg`` (SVG without a date, so reproducible)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{stem}.png", out_dir / f"{stem}.svg"
    with matplotlib.rc_context({"svg.hashsalt": "ablate", "svg.fonttype": "none"}):
        fig.savefig(png, dpi=150)
        fig.savefig(svg, metadata={"Date": None})
    return [png, svg]


def _metric_axis(summary: pd.DataFrame) -> tuple[str, str]:
    metric = metric_of(summary)
    level = f"{100 * (1 - summary.attrs.get('alpha', 0.05)):g}%"
    return metric, f"{METRICS.get(metric).label} (mean over seeds, {level} CI)"


def _error(summary: pd.DataFrame, mean: pd.Series) -> np.ndarray:
    """Asymmetric error bars from the CI columns (0 where there is no interval)."""
    low = (mean - summary["ci_low"]).fillna(0).to_numpy(float)
    high = (summary["ci_high"] - mean).fillna(0).to_numpy(float)
    return np.vstack([low, high])


#: How each Pareto class is drawn: marker, colour, label.
_CLASS_STYLE = {"optimal": ("o", "C1", "Pareto-optimal (front of the means)"),
                "possibly optimal": ("s", "C0", "possibly optimal (not dominated with "
                                                "confidence)"),
                "dominated": ("x", "0.45", "dominated (a cheaper or equal variant is "
                                           "significantly better)")}


def plot_metric_vs_cost(summary: pd.DataFrame, cost: str, out_dir: Path | str) -> list[Path]:
    """Mean metric with CI bars against a cost of ``ablate.results.COSTS`` (its column in the
    summary), the Pareto front and the baseline marked; where the summary classes the variants
    against the cost (``pareto_<cost>``), each is drawn by its class. Saved as
    ``<metric>_vs_<cost>``."""
    c = COSTS.get(cost)
    classes = f"pareto_{cost}" if f"pareto_{cost}" in summary.columns else None
    metric, metric_label = _metric_axis(summary)
    rows = summary[summary[f"{metric}_mean"].notna() & summary[c.column].notna()]
    if rows.empty:
        raise ValueError(f"no variant has both a {metric} mean and a {c.column} value to plot")
    rows = rows.reset_index(drop=True)
    x, y = rows[c.column].to_numpy(float), rows[f"{metric}_mean"].to_numpy(float)
    front = pareto_front(list(zip(-oriented(c.better) * x,
                                  oriented(METRICS.get(metric).better) * y)))

    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.add_subplot()
    ax.errorbar(x, y, yerr=_error(rows, rows[f"{metric}_mean"]), fmt="none", ecolor="0.6",
                capsize=3)
    ax.step(x[front], y[front], where="post", color="C1", lw=1.5, label="Pareto front")
    if classes is None:
        ax.scatter(x, y, color="C0", zorder=3, label="variant")
        ax.scatter(x[front], y[front], s=130, facecolors="none", edgecolors="C1", lw=1.5)
    else:
        for cls, (marker, color, label) in _CLASS_STYLE.items():
            pick = (rows[classes] == cls).to_numpy()
            if pick.any():
                ax.scatter(x[pick], y[pick], marker=marker, s=60, color=color, zorder=3,
                           label=label)
    base = rows.index[rows["is_baseline"]]
    ax.scatter(x[base], y[base], marker="*", s=260, color="C3", zorder=5, label="baseline")
    middle = (x.min() + x.max()) / 2
    for xi, yi, label in zip(x, y, _short_labels(list(rows["variant"]))):
        right = xi > middle  # labelled towards the middle: a label never leaves the axes
        ax.annotate(label, (xi, yi), xytext=(-5 if right else 5, 5), textcoords="offset points",
                    ha="right" if right else "left", fontsize=7)
    ax.set_xlabel(textwrap.fill(f"{c.label}: {c.unit} ({input_size(summary)})", 90))
    ax.set_ylabel(metric_label)
    ax.set_title(f"{METRICS.get(metric).label} vs {c.label}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out_dir, f"{metric}_vs_{cost}")


def plot_metric_ci(summary: pd.DataFrame, out_dir: Path | str) -> list[Path]:
    """Mean metric per variant with its CI as horizontal bars, against the baseline's mean and CI.

    Best rows (best mean and those not significantly worse) are drawn in green.
    """
    metric, metric_label = _metric_axis(summary)
    rows = summary[summary[f"{metric}_mean"].notna()].reset_index(drop=True)
    mean = rows[f"{metric}_mean"]
    y = np.arange(len(rows))[::-1]
    fig = Figure(figsize=(8, 1.5 + 0.4 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    base = rows[rows["is_baseline"]].iloc[0]
    if pd.notna(base["ci_low"]):
        ax.axvspan(base["ci_low"], base["ci_high"], color="C3", alpha=0.1, label="baseline CI")
    ax.axvline(base[f"{metric}_mean"], color="C3", ls="--", lw=1, label="baseline mean")
    colors = np.where(rows["best"], "C2", "C0")
    err = _error(rows, mean)
    for i, color in enumerate(colors):
        ax.errorbar(mean[i], y[i], xerr=err[:, i:i + 1], fmt="o", color=color, capsize=3)
    ax.set_yticks(y, [f"{v} (n={n})" for v, n in zip(rows["variant"], rows["n_seeds"])],
                  fontsize=8)
    ax.set_xlabel(metric_label)
    ax.set_title(f"{METRICS.get(metric).label} per variant "
                 "(green: best or not significantly worse)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out_dir, f"{metric}_ci")


def plot_interactions(runs: pd.DataFrame, factors: Sequence[str], baseline: str,
                      out_dir: Path | str, metric: str = DEFAULT_METRIC,
                      alpha: float = 0.05) -> list[Path]:
    """Interaction plot of each pair of grid knobs: the metric (mean over seeds, with its
    t-interval) against one knob's levels, one line per level of the other, averaged over any
    further knobs. Parallel lines: the effects add up; crossing or converging lines: an
    interaction (``ablate.analysis.factorial``). Baseline levels come first."""
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not allowed; allowed: {', '.join(METRICS.names())}")
    values = pd.to_numeric(runs[metric], errors="coerce")
    ok = runs[(runs["status"] == OK) & values.notna()].assign(y=values.astype(float))
    base = runs[runs["variant"] == baseline].iloc[0]
    pairs = [(a, b) for i, a in enumerate(factors) for b in factors[i + 1:]]
    fig = Figure(figsize=(6 * len(pairs), 4.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(pairs)))
    for ax, (a, b) in zip(axes, pairs):
        if ok[a].nunique() < ok[b].nunique():
            a, b = b, a  # the knob with more levels on the x axis
        order = {k: [str(base[k])] + sorted(set(ok[k].astype(str)) - {str(base[k])})
                 for k in (a, b)}
        per_seed = ok.groupby([ok[a].astype(str), ok[b].astype(str), "seed"])["y"].mean()
        x = np.arange(len(order[a]))
        for n, level in enumerate(order[b]):
            mean, low, high = [], [], []
            for level_a in order[a]:
                y = per_seed.loc[(level_a, level)].to_numpy(float)
                m = float(y.mean())
                half = (float(stats.t.ppf(1 - alpha / 2, len(y) - 1) * stats.sem(y))
                        if len(y) > 1 else 0.0)
                mean.append(m)
                low.append(m - half)
                high.append(m + half)
            shift = (n - (len(order[b]) - 1) / 2) * 0.04
            ax.errorbar(x + shift, mean, yerr=[np.subtract(mean, low), np.subtract(high, mean)],
                        marker="o", capsize=3, color=f"C{n % 10}", label=f"{b} = {level}")
        ax.set_xticks(x, order[a])
        ax.set_xlabel(a)
        ax.set_ylabel(f"{METRICS.get(metric).label} (mean over seeds, "
                      f"{100 * (1 - alpha):g}% CI)")
        ax.set_title(f"{a} x {b}: parallel lines = no interaction", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, out_dir, f"{metric}_interactions")


def _histories(exp_dir: Path | str, runs: pd.DataFrame, variant: str,
               metric: str) -> list[pd.DataFrame]:
    """The history tables of a variant's ok runs that have one."""
    needed = {"epoch", "train_loss", metric}
    out = []
    ok = runs[(runs["variant"] == variant) & (runs["status"] == OK)]
    for seed in sorted(ok["seed"]):
        path = run_dir(exp_dir, variant, seed) / "history.csv"
        if not path.is_file():
            continue
        history = pd.read_csv(path)
        missing = needed - set(history.columns)
        if missing:
            raise ValueError(f"{path} lacks column(s) {', '.join(sorted(missing))}")
        out.append(history)
    return out


def _all_converged(runs: pd.DataFrame, variant: str) -> bool:
    """Did every ok run of ``variant`` converge? True when the runs table does not say."""
    if "converged" not in runs.columns:
        return True
    ok = runs[(runs["variant"] == variant) & (runs["status"] == OK)]
    return all(is_converged(v) for v in ok["converged"])


def plot_curves(exp_dir: Path | str, runs: pd.DataFrame, out_dir: Path | str,
                metric: str = DEFAULT_METRIC) -> list[Path]:
    """Validation ``metric`` and train loss against epoch, mean over ok seeds, one line per variant.

    The band around each line spans the seeds' minimum to maximum. The convergence window (the
    last third of the budget, where ``ablate.training.convergence`` asks both curves to be flat) is
    shaded, and a variant whose runs did not all converge is marked "still improving" in the
    legend. Runs without a ``history.csv`` are skipped; returns ``[]`` when no variant has one.
    """
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not allowed; allowed: {', '.join(METRICS.names())}")
    variants = list(pd.unique(runs["variant"]))
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    ax_val, ax_loss = fig.subplots(1, 2)
    drawn, last_epoch = 0, 0
    for color, (variant, label) in enumerate(zip(variants, _short_labels(variants))):
        histories = _histories(exp_dir, runs, variant, metric)
        if not histories:
            continue
        per_epoch = pd.concat(histories).groupby("epoch")
        last_epoch = max(last_epoch, int(per_epoch.size().index.max()))
        note = "" if _all_converged(runs, variant) else ", still improving"
        for ax, column in ((ax_val, metric), (ax_loss, "train_loss")):
            mean = per_epoch[column].mean()
            ax.plot(mean.index, mean.to_numpy(), color=f"C{color % 10}",
                    label=f"{label} (n={len(histories)}{note})")
            ax.fill_between(mean.index, per_epoch[column].min(), per_epoch[column].max(),
                            color=f"C{color % 10}", alpha=0.15, lw=0)
        drawn += 1
    if not drawn:
        return []
    start = window_start(last_epoch)
    for ax in (ax_val, ax_loss):
        ax.axvspan(start - 0.5, last_epoch + 0.5, color="0.5", alpha=0.12, lw=0,
                   label="convergence window" if ax is ax_val else None)
    ax_val.legend(fontsize=7, loc="lower right")
    ax_val.set_title(f"shaded: last third of the budget; converged = {METRICS.get(metric).label} "
                     f"gain < {TOLERANCE:g} and train loss < {100 * LOSS_TOLERANCE:g}% of its "
                     "descent there", fontsize=8)
    ax_val.set_ylabel(f"validation {METRICS.get(metric).label} (mean over seeds)")
    ax_loss.set_ylabel("train loss (mean over seeds)")
    for ax in (ax_val, ax_loss):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    ax_loss.legend(fontsize=7)
    return _save(fig, out_dir, "curves")


def plot_samples(exp_dir: Path | str, runs: pd.DataFrame, out_dir: Path | str) -> list[Path]:
    """One grid of each variant's ``samples.png`` from its lowest seed that has one.

    Returns ``[]`` when no run has a sample picture.
    """
    found = []
    for variant in pd.unique(runs["variant"]):
        for seed in sorted(runs.loc[runs["variant"] == variant, "seed"]):
            path = run_dir(exp_dir, variant, seed) / "samples.png"
            if path.is_file():
                found.append((variant, seed, matplotlib.image.imread(path)))
                break
    if not found:
        return []
    height, width = found[0][2].shape[:2]
    ncols = 1 if width >= 2 * height else min(3, len(found))
    nrows = math.ceil(len(found) / ncols)
    cell = 10.0 if ncols == 1 else 4.0
    fig = Figure(figsize=(cell * ncols, nrows * (cell * height / width + 0.4)),
                 layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, (variant, seed, image) in zip(axes, found):
        ax.imshow(image)
        ax.set_title(f"{variant} (seed {seed})", fontsize=8)
    return _save(fig, out_dir, "samples")
