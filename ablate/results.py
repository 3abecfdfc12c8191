"""The result row and where it lives: its columns, statuses, costs, run folders and tables.

A row is one (variant, seed) run. Its columns are derived from the code that fills them: the
knobs (``KNOBS``), the metrics (``METRICS``), convergence (``ablate.training.convergence``),
the profile (``ablate.models.profile``) and the environment (``ablate.common.env``), so a new
knob, metric or counter is a new column. Each run lives in ``<exp_dir>/runs/<variant>/seed<k>/``
(:func:`run_dir`): ``row.json`` (written last), ``history.csv``, ``samples.png`` and
``checkpoints/``. The runs table (``runs.csv`` and ``runs.parquet``) is rebuilt from the row
files (:func:`collect_runs`, :func:`write_runs`) and read back with :func:`load_runs`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .common.checks import check_better
from .common.env import COLUMNS as ENV_COLUMNS
from .common.faults import fault_point
from .common.files import atomic_path, write_text
from .common.markdown import table
from .common.registry import Registry
from .evaluation.metrics import METRICS
from .experiment import Experiment
from .models.profile import COLUMNS as PROFILE_COLUMNS
from .models.variant import KNOBS, Variant
from .training.convergence import COLUMNS as CONVERGENCE_COLUMNS
from .training.convergence import judge

#: How a run or a search trial ended (a row's ``status``). ``row`` marks the statuses a run's
#: row can have; the others are given to search trials only (``ablate.scale.search``).
STATUSES: Registry = Registry("status", ordered=True)
for _name, _row, _help in (
        ("ok", True, "trained its whole budget; the only runs the statistics count"),
        ("failed", True, "stopped by an error (non-finite loss, out of memory, any exception), "
                         "its reason in error"),
        ("pruned", True, "stopped early by a search's pruner; the metrics of its last epoch"),
        ("skipped", False, "a search trial not trained: over the GMACs budget, an invalid "
                           "variant or a duplicate"),
        ("lost", False, "a search trial whose worker died; retried as a new trial"),
        ("running", False, "a search trial still running"),
        ("waiting", False, "a search trial enqueued, not started")):
    STATUSES.register(_name, help=_help, row=_row)(_name)
OK, FAILED, PRUNED, SKIPPED, LOST, RUNNING, WAITING = STATUSES.names()


def row_statuses() -> tuple[str, ...]:
    """The statuses a run's row can have (``ok``, ``failed``, ``pruned``)."""
    return tuple(s for s in STATUSES.names() if STATUSES.meta(s)["row"])


@dataclass(frozen=True)
class Cost:
    """One cost quantity of a variant, as ``Metric`` is one score: the row column holding it,
    its label in tables, plots and search reports, its unit, and which way is better."""

    name: str
    column: str
    label: str
    unit: str
    better: str = "min"


#: Every cost a row reports, in order. Search objectives, summaries, plots and Pareto fronts
#: read their columns, labels and directions from here.
COSTS: Registry = Registry("cost", ordered=True)


def register_cost(name: str, column: str, label: str, unit: str, better: str = "min") -> Cost:
    """Add a cost to :data:`COSTS` (``column`` must be a row column) and return it."""
    cost = Cost(name, column, label, unit, check_better(better))
    return COSTS.register(name, help=f"{label}: {unit}")(cost)


register_cost("gmacs", "gmacs_thop", "GMACs (thop)",
              "1e9 multiply-accumulates per image at the profiled size, counted by thop")
register_cost("gmacs_exact", "gmacs_exact", "GMACs (exact)",
              "1e9 multiply-accumulates per image, conv + linear from layer shapes")
register_cost("gmacs_fvcore", "gmacs_fvcore", "GMACs (fvcore)",
              "1e9 multiply-accumulates per image, counted by fvcore")
register_cost("gflops_torch", "gflops_torch", "GFLOPs (torch)",
              "1e9 FLOPs per image (2 per MAC), torch FlopCounterMode, conv + matmul only")
register_cost("params", "params_m", "Params (M)", "millions of parameters")
register_cost("latency", "latency_ms", "Latency (ms)",
              "median ms per image at batch 1 and the profiled size")
register_cost("peak_mem", "peak_mem_mb", "Peak memory (MiB)",
              "MiB in training: CUDA max allocated, or the process's peak RSS on CPU")


def costs_markdown() -> str:
    """The cost table of docs/experiments.md, from :data:`COSTS`."""
    rows = [(f"`{c.name}`", f"`{c.column}`", c.label, c.unit, f"`{c.better}`")
            for c in (COSTS.get(n) for n in COSTS.names())]
    return table(("cost", "column", "label", "unit", "better"), rows)


def columns() -> tuple[str, ...]:
    """The columns of a result row, in order, derived from the registries and the code that
    fills them (knobs, metrics, convergence, profile, environment)."""
    return ("experiment", "variant", "seed", "status", "error", *KNOBS.names(),
            "dataset", "image_size", "budget", "epochs", "epochs_run", "steps", "preset", "loss",
            *METRICS.names(), *CONVERGENCE_COLUMNS, *PROFILE_COLUMNS,
            "train_time_s", "train_images_per_s", "latency_ms", "peak_mem_mb", "wall_s",
            *ENV_COLUMNS, "plugins", "metric_definition", "counter_units", "run_key")


def text_columns() -> tuple[str, ...]:
    """Text columns of the runs table whose empty cells mean "nothing", not "missing number";
    read back as text (a knob value such as widths "128,64" or pool "M" is never a number).
    Read when called, so a knob a plugin registered since import is a text column too."""
    return ("experiment", "variant", "status", "error", *KNOBS.names(), "dataset", "preset",
            "budget", "loss", "device", "torch", "git_commit", "plugins", "profile_note",
            "metric_definition", "counter_units")

RUNS = "runs"           # the folder of an experiment's run folders
ROW_FILE = "row.json"   # a run's row, written last


def seed_folder(seed: int) -> str:
    """The folder (and claim-key part) of seed ``seed``: ``seed<k>``."""
    return f"seed{int(seed)}"


def run_dir(exp_dir: Path | str, variant: Variant | str, seed: int) -> Path:
    """The folder of one run: ``<exp_dir>/runs/<variant id>/seed<k>`` (``exp_dir`` may be a
    glob pattern such as ``*``)."""
    vid = variant.id if isinstance(variant, Variant) else str(variant)
    return Path(exp_dir) / RUNS / vid / seed_folder(seed)


def read_row(out: Path) -> dict[str, Any]:
    """A run's stored ``row.json``."""
    return json.loads((Path(out) / ROW_FILE).read_text())


def write_row(out: Path, row: dict[str, Any]) -> None:
    """A run's ``row.json``, replaced atomically."""
    write_text(Path(out) / ROW_FILE, row_text(row))


def row_text(row: dict[str, Any]) -> str:
    """A result row as JSON; numpy and torch scalars become plain numbers."""
    return json.dumps(row, default=lambda v: v.item() if hasattr(v, "item") else str(v))


def collect_runs(exp_dir: Path, exp: Experiment,
                 cells: list[tuple[Variant, int]] | None = None) -> pd.DataFrame:
    """The runs table: one row per (variant, seed) cell that has a row file, over ``cells``
    (default: every cell of ``exp`` that may run).

    A finished run's convergence columns are judged again from its ``history.csv`` on the
    experiment's metric: a run reused from a study that compared another metric (the run key
    leaves the metric out, since it does not change the model trained) is judged on this one.
    """
    rows = []
    for variant, seed in exp.runs() if cells is None else cells:
        out = run_dir(exp_dir, variant, seed)
        if not (out / ROW_FILE).is_file():
            continue
        # knob columns the row predates (knobs added since, at their defaults) come from the id
        row = {**variant.columns(), **read_row(out)}
        if row.get("status") == OK and (out / "history.csv").is_file():
            history = pd.read_csv(out / "history.csv").to_dict("records")
            row.update(judge(history, exp.metric, METRICS.get(exp.metric).better).row())
        rows.append(row)
    frame = pd.DataFrame(rows)
    known = columns()
    extra = [c for c in frame.columns if c not in known]
    return frame.reindex(columns=[*known, *extra])


def write_runs(exp_dir: Path, runs: pd.DataFrame, stem: str = RUNS) -> None:
    """``<stem>.csv`` and ``<stem>.parquet``, each replaced atomically."""
    write_text(exp_dir / f"{stem}.csv", runs.to_csv(index=False))
    fault_point("runs-table")
    with atomic_path(exp_dir / f"{stem}.parquet") as tmp:
        runs.to_parquet(tmp, index=False)


def load_runs(exp_dir: Path | str, stem: str = RUNS) -> pd.DataFrame:
    """The runs table of an experiment: ``<stem>.parquet`` if present, else ``<stem>.csv``.

    Empty text cells (``error``, ``pretrained``...) read back as ``""``, never NaN.
    """
    exp_dir = Path(exp_dir)
    parquet, csv = exp_dir / f"{stem}.parquet", exp_dir / f"{stem}.csv"
    if parquet.is_file():
        runs = pd.read_parquet(parquet)
    elif csv.is_file():
        runs = pd.read_csv(csv, dtype={c: str for c in text_columns()})
    else:
        raise FileNotFoundError(f"no runs table in {exp_dir}: expected {parquet.name} "
                                f"or {csv.name}")
    for column in text_columns():
        if column in runs.columns:
            runs[column] = runs[column].astype(object).where(runs[column].notna(), "").astype(str)
    return runs
