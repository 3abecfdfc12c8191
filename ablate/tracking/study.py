"""The seed aggregates no tracker computes, published when a report is built (and a search's
study run, with its trials table and report).

``publish`` runs after ``ablate.analysis.report.write_report`` (``ablate run`` and
``ablate report``): it logs any finished cell no sink holds yet (``Tracking.ensure``), then
creates or updates, per variant, one aggregate run with the summary row (mean, sd, 95% CI, the
verdict against the baseline with its p-values, converged k/n) and, per study, one run with the
summary table and ``report.md``. The aggregate runs are found again by name on every rebuild and
updated in place, never duplicated. A file lock in the experiment folder keeps two processes that
report at once from racing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import TrainConfig
from ..models.variant import KNOBS, Variant
from ..results import run_dir
from .cell import Tracking
from .sinks import lock

#: Summary columns published as tags (text); every other finite number is a metric.
TAG_COLUMNS = ("variant", "is_baseline", "significant", "note", "verdict", "verdict_test",
               "best", "pareto_gmacs", "pareto_latency")


def publish(tracking: Tracking, exp_dir: Path, config: TrainConfig, runs: pd.DataFrame,
            summary: pd.DataFrame, report: Path) -> None:
    """Log unlogged finished cells of ``runs`` (trained with ``config``), then every variant's
    aggregate run from ``summary`` and the study's run with ``report``."""
    if not tracking:
        return
    exp_dir = Path(exp_dir)
    with lock(exp_dir):
        for variant_id, seed, key in zip(runs["variant"], runs["seed"], runs["run_key"]):
            if isinstance(key, str) and key:
                tracking.attempt("tracking", f"log {variant_id} seed {seed}", _ensure, tracking,
                                 exp_dir, variant_id, int(seed), key, config)
        for row in summary.to_dict("records"):
            knobs = _knobs(runs, row["variant"])
            values, tags = aggregate_values(row, summary.attrs.get("metric", ""))
            for name, sink in zip(tracking.names, tracking.sinks):
                tracking.attempt(name, f"publish {row['variant']}", sink.publish_variant,
                                 row["variant"], knobs, values, tags)
        files = [p for p in (exp_dir / "summary.csv", exp_dir / "summary.md",
                             exp_dir / "runs.csv") if p.is_file()]
        for name, sink in zip(tracking.names, tracking.sinks):
            tracking.attempt(name, "publish the study", sink.publish_study, summary, report, files)


def publish_search(tracking: Tracking, exp_dir: Path, report: Path) -> None:
    """The study run of a search: its trials table (``trials.csv``) and report. Its trials'
    cells were logged as they ran; one seed has no aggregates to publish."""
    if not tracking:
        return
    exp_dir = Path(exp_dir)
    trials = pd.read_csv(exp_dir / "trials.csv")
    with lock(exp_dir):
        for name, sink in zip(tracking.names, tracking.sinks):
            tracking.attempt(name, "publish the study", sink.publish_study, trials, report,
                             [exp_dir / "trials.csv"])


def _ensure(tracking: Tracking, exp_dir: Path, variant_id: str, seed: int, key: str,
            config: TrainConfig) -> None:
    variant = Variant.from_id(variant_id)
    tracking.ensure(run_dir(exp_dir, variant, seed), variant, seed, key, config)


def aggregate_values(row: dict[str, Any], metric: str) -> tuple[dict[str, float], dict[str, str]]:
    """A summary row as numbers and tags; ``converged`` is k/n as text too."""
    values, tags = {}, {}
    for k, v in row.items():
        if k in TAG_COLUMNS:
            if v not in (None, "") and not (isinstance(v, float) and math.isnan(v)):
                tags[k] = str(v)
        elif isinstance(v, (bool, int, float)) and math.isfinite(float(v)):
            values[k] = float(v)
    if "n_seeds" in values and "n_converged" in values:
        tags["converged"] = f"{int(values['n_converged'])}/{int(values['n_seeds'])}"
    tags["metric"] = metric
    return values, tags


def _knobs(runs: pd.DataFrame, variant: str) -> dict[str, str]:
    first = runs[runs["variant"] == variant].iloc[0]
    return {f"knob.{k}": str(first[k]) for k in KNOBS.names() if k in runs.columns}
