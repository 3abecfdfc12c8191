"""Run one variant into one result row, and a whole experiment into a runs table.

For each (variant, seed): build -> train -> evaluate -> checkpoint (inside ``train``) ->
latency -> profile (last: thop attaches to modules) -> one row. A row is written atomically to
``results/<experiment>/runs/<variant>/seed<k>/row.json`` as the run's last act, and the runs
table (``runs.csv`` and ``runs.parquet``) is rebuilt from those files after every run. A sweep
killed at any point (SIGKILL included) and started again skips the cells that have a row, resumes
the interrupted one from its last checkpoint, and ends with exactly one row per (variant, seed).
A failing run (bad variant, NaN loss, out-of-memory, any exception) is recorded with its reason
and the sweep goes on. A cell identical to a finished run of another experiment under the same
results folder (same run key: variant, data, settings, seed) is copied, not retrained.
``run_cell`` is the one place that decides a cell (reuse, resume or train, and the row written
for any outcome); grid workers and search trials go through it too.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from .common.env import environment, resolve_device
from .common.faults import fault_point
from .common.files import atomic_path, write_text
from .config import TrainConfig
from .data import DatasetInfo, DataSpec, Split, load_dataset
from .evaluation.metrics import METRICS, definitions
from .evaluation.timing import latency_ms
from .experiment import Experiment
from .models.model import build_model
from .models.profile import profile_model
from .models.variant import KNOBS, Variant
from .training.convergence import COLUMNS as CONVERGENCE_COLUMNS
from .training.convergence import judge
from .training.loop import drop_resume_state, train

COUNTER_UNITS = ("gmacs_* = 1e9 multiply-accumulates per image at profile_input (thop, fvcore: "
                 "one MAC = one 'flop'; exact: conv + linear from layer shapes); gflops_torch = "
                 "1e9 FLOPs (2 per MAC, torch FlopCounterMode, conv + matmul only)")
PROFILE_COLUMNS = ("params", "params_m", "macs_exact", "gmacs_exact", "gmacs_thop",
                   "gmacs_fvcore", "gflops_torch", "profile_input", "unpriced_thop",
                   "unpriced_fvcore", "counter_mismatch", "profile_note")
ENV_COLUMNS = ("device", "python", "torch", "torchvision", "thop", "fvcore", "numpy", "pandas",
               "optuna", "git_commit")


def columns() -> tuple[str, ...]:
    """The columns of a result row, in order: the knobs and the metrics come from their
    registries (``KNOBS``, ``METRICS``), so a new knob or metric is a new column."""
    return ("experiment", "variant", "seed", "status", "error", *KNOBS.names(),
            "dataset", "image_size", "budget", "epochs", "epochs_run", "steps", "preset", "loss",
            *METRICS.names(), *CONVERGENCE_COLUMNS, *PROFILE_COLUMNS,
            "train_time_s", "train_images_per_s", "latency_ms", "peak_mem_mb", "wall_s",
            *ENV_COLUMNS, "metric_definition", "counter_units", "run_key")


def run_dir(exp_dir: Path, variant: Variant | str, seed: int) -> Path:
    vid = variant.id if isinstance(variant, Variant) else variant
    return Path(exp_dir) / "runs" / vid / f"seed{seed}"


def run_key(variant: Variant, data: DataSpec, config: TrainConfig, seed: int,
            profile_size: int) -> str:
    """Hash of everything that decides a run's result; a stored row with another key is stale."""
    payload = json.dumps([variant.to_dict(), data.to_dict(), config.to_dict(), seed, profile_size],
                         sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def run_one(variant: Variant, data: DataSpec | tuple[DatasetInfo, dict[str, Split]],
            config: TrainConfig, seed: int, out_dir: Path | None = None,
            profile_size: int = 224, experiment: str = "", preset: str = "",
            progress: bool | None = None, on_epoch: Callable | None = None,
            metric: str = "dice") -> dict[str, Any]:
    """Train, evaluate, time and profile one variant; return its result row (see ``columns``).

    ``metric`` is the score the run is compared on: the convergence columns judge its curve.
    """
    result = train(variant, data, config, seed=seed, out_dir=out_dir, progress=progress,
                   on_epoch=on_epoch)
    row = base_row(variant, seed, experiment, preset, config)
    row.update(status=result.status, error=result.error, epochs_run=result.epochs_run,
               dataset=result.info.name if result.info else "", **result.env)
    if result.steps:
        row.update(epochs=result.epochs, steps=result.steps)
    row.update({m: result.metrics.get(m, math.nan) for m in METRICS.names()})
    if result.status == "ok":
        row.update(judge(result.history, metric, METRICS.get(metric).better).row())
    row.update(train_time_s=result.train_time_s, train_images_per_s=result.train_images_per_s,
               peak_mem_mb=result.peak_mem_mb)
    if result.model is not None:
        size = (result.info.in_channels, profile_size, profile_size)
        row["latency_ms"] = latency_ms(result.model, size)
        row.update(profile_model(result.model, size).row())  # last: after checkpoints
    return row


def base_row(variant: Variant, seed: int, experiment: str, preset: str,
             config: TrainConfig) -> dict[str, Any]:
    """A failed row with the variant's knobs and the settings filled in; the rest NaN."""
    row: dict[str, Any] = {c: math.nan for c in columns()}
    row.update(experiment=experiment, variant=variant.id, seed=seed, status="failed", error="")
    row.update(variant.columns())
    row.update(
        image_size=config.image_size, budget=config.budget_label,
        epochs=config.epochs if config.epochs is not None else math.nan, preset=preset,
        loss=config.loss,
        metric_definition=" ".join(f"{k}: {v}" for k, v in definitions().items()),
        counter_units=COUNTER_UNITS,
    )
    return row


def data_spec(exp: Experiment) -> DataSpec:
    """The dataset of ``exp`` at its training size (what the run keys of its cells hash)."""
    return DataSpec(exp.data.name, exp.data.root, exp.config.image_size, exp.data.options)


def run_experiment(exp: Experiment, results_dir: str | Path = "results",
                   progress: bool | None = None, retry_failed: bool = False,
                   cache_dir: str | Path = ".cache/ablate") -> pd.DataFrame:
    """Run every missing cell ``planned_runs`` asks for, round after round; return the runs
    table of the planned cells."""
    exp_dir = Path(results_dir) / exp.name
    exp_dir.mkdir(parents=True, exist_ok=True)
    write_text(exp_dir / "experiment.json", json.dumps(describe(exp), indent=2))
    spec = data_spec(exp)
    data, tried = None, set()
    bar = tqdm(total=0, desc=exp.name, unit="run",
               disable=None if progress is None else not progress)
    while True:
        cells = planned_runs(exp, collect_runs(exp_dir, exp))
        keys = {(v.id, s): run_key(v, spec, exp.config, s, exp.profile_size) for v, s in cells}
        todo = [(v, s) for v, s in cells if (v.id, s) not in tried
                and not is_finished(run_dir(exp_dir, v, s), keys[v.id, s], retry_failed)]
        bar.total = len(cells)
        bar.n = len(cells) - len(todo)
        bar.refresh()
        if not todo:
            break
        if data is None:
            data = load_dataset(spec, cache_dir)  # decoded once for every variant and seed
        for variant, seed in todo:
            bar.set_postfix_str(f"{variant.id} seed {seed}")
            run_cell(exp, variant, seed, data, run_dir(exp_dir, variant, seed),
                     keys[variant.id, seed], progress, retry_failed=retry_failed,
                     reuse_from=Path(results_dir))
            tried.add((variant.id, seed))
            write_runs(exp_dir, collect_runs(exp_dir, exp, cells))
            bar.update(1)
    bar.close()
    runs = collect_runs(exp_dir, exp, cells)
    write_runs(exp_dir, runs)
    return runs


def planned_runs(exp: Experiment, runs: pd.DataFrame) -> list[tuple[Variant, int]]:
    """The (variant, seed) cells ``exp`` needs, given the rows so far (``collect_runs``).

    A seed list: every cell. Adaptive seeds (``exp.adaptive``): seeds 0..min-1 of every
    variant; then, whenever every planned cell has a current row (its run key), the verdicts
    at that look (``ablate.analysis.stats.verdicts``) add the next seed for the baseline and
    for each comparison still undecided, until none is or the seeds reach ``max``. The same
    rows give the same plan in every process, so grid workers agree on it.
    """
    if exp.adaptive is None:
        return exp.runs()
    from .analysis.stats import verdicts  # scipy and statsmodels only where seeds adapt

    spec = data_spec(exp)
    current = set()
    if len(runs):
        current = set(zip(runs["variant"], runs["seed"].astype(int), runs["run_key"]))
    n = exp.adaptive.min
    cells = [(v, s) for s in range(n) for v in exp.variants]
    while n < exp.adaptive.max:
        if any((v.id, s, run_key(v, spec, exp.config, s, exp.profile_size)) not in current
               for v, s in cells):
            break
        planned = set((v.id, s) for v, s in cells)
        rows = runs[[(v, int(s)) in planned for v, s in zip(runs["variant"], runs["seed"])]]
        decided = verdicts(rows, exp.baseline.id, exp.metric,
                           margin=exp.margins().get(exp.metric), looks=exp.looks)
        undecided = set(decided.loc[decided["verdict"] == "undecided", "variant"])
        if not undecided:
            break
        cells += [(v, n) for v in exp.variants if v == exp.baseline or v.id in undecided]
        n += 1
    return cells


class Pruned(Exception):
    """Raised by an ``on_epoch`` hook to stop a run early (e.g. Optuna's pruner).

    The cell's row gets status ``pruned``, the message as its error, the last epoch's metrics
    and the profile of an untrained copy (a stopped run returns no model).
    """


def run_cell(exp: Experiment, variant: Variant, seed: int,
             data: tuple[DatasetInfo, dict[str, Split]], out: Path, key: str,
             progress: bool | None = None, *, retry_failed: bool = False,
             reuse_from: Path | None = None, on_epoch: Callable | None = None) -> dict[str, Any]:
    """Reuse, resume or train one (variant, seed) cell of ``exp`` in ``out``; return its row.

    The one place that decides a cell, for ``ablate run``, grid workers and search trials: a
    current row (``is_finished``, run key ``key``) is returned as it is; with ``reuse_from`` (a
    results folder) an identical finished run of another experiment there is copied; otherwise
    the cell trains, resuming its checkpoint. The run key is written first, so an interrupted
    cell resumes only under the same settings. ``on_epoch(epoch, scores)`` is passed to
    ``train``; a ``Pruned`` it raises becomes a pruned row, any other exception a failed row
    with its reason, never an error of the caller. Every cell run here ends with ``row.json``;
    then its resume state is dropped (``checkpoints/final.pt`` keeps the weights).
    """
    if is_finished(out, key, retry_failed):
        return read_row(out)
    if reuse_from is not None and _reuse(Path(reuse_from), out, key, exp.name):
        return read_row(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "run_key").write_text(key)
    last: dict[str, Any] = {}

    def hook(epoch: int, scores: dict[str, float]) -> None:
        last.update(scores, epoch=epoch)
        fault_point("epoch-end")
        if on_epoch is not None:
            on_epoch(epoch, scores)

    start = time.perf_counter()
    try:
        row = run_one(variant, data, exp.config, seed, out, exp.profile_size, exp.name,
                      exp.preset, progress, on_epoch=hook, metric=exp.metric)
    except Pruned as exc:
        info = data[0]
        row = base_row(variant, seed, exp.name, exp.preset, exp.config)
        row.update(environment(resolve_device(exp.config.device)))
        row.update({k: last[k] for k in METRICS.names() if k in last})
        row.update(status="pruned", error=str(exc), epochs_run=last["epoch"],
                   dataset=info.name)
        row.update(untrained_profile(variant, info, exp.profile_size))
    except Exception as exc:  # recorded, never fatal to the sweep
        row = base_row(variant, seed, exp.name, exp.preset, exp.config)
        row["error"] = f"{type(exc).__name__}: {exc}"
        row["dataset"] = exp.data.name
    row["run_key"] = key
    row["wall_s"] = time.perf_counter() - start
    write_row(out, row)
    drop_resume_state(out)
    return row


def untrained_profile(variant: Variant, info: DatasetInfo, profile_size: int) -> dict[str, Any]:
    """The profile columns of a throw-away, untrained copy of ``variant`` (nothing is trained)."""
    model = build_model(variant, info.model_outputs, info.in_channels)
    return profile_model(model, (info.in_channels, profile_size, profile_size)).row()


def _reuse(results_dir: Path, out: Path, key: str, experiment: str) -> bool:
    """Copy an identical finished run (same run key) from another experiment instead of
    training it again; its row says where it came from (``reused_from``)."""
    for row_file in results_dir.glob(f"*/runs/{out.parent.name}/{out.name}/row.json"):
        if row_file.parent == out:
            continue
        row = json.loads(row_file.read_text())
        if row.get("run_key") != key or row.get("status") != "ok":
            continue
        shutil.copytree(row_file.parent, out, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("row.json", "checkpoints"))
        row["reused_from"] = row.get("reused_from") or row["experiment"]
        row["experiment"] = experiment
        write_row(out, row)
        return True
    return False


def is_finished(path: Path, key: str, retry_failed: bool) -> bool:
    """Has this cell a current row? Otherwise clear what cannot be resumed.

    A row with another run key is stale; with ``retry_failed`` a failed row is redone. A folder
    without a row is an interrupted run: it resumes only if it was started with the same key.
    """
    row_file, marker = path / "row.json", path / "run_key"
    if row_file.is_file():
        row = json.loads(row_file.read_text())
        if row.get("run_key") == key and not (retry_failed and row.get("status") != "ok"):
            return True
    resumable = (not row_file.is_file() and marker.is_file()
                 and marker.read_text().strip() == key)
    if path.is_dir() and not resumable:
        shutil.rmtree(path)
    return False


def collect_runs(exp_dir: Path, exp: Experiment,
                 cells: list[tuple[Variant, int]] | None = None) -> pd.DataFrame:
    """The runs table: one row per (variant, seed) cell that has a row file, over ``cells``
    (default: every cell of ``exp`` that may run).

    A finished run's convergence columns are judged again from its ``history.csv`` on the
    experiment's metric: a run reused from a study that compared another metric (the run key
    leaves the metric out, since it does not change training) is judged on this one.
    """
    rows = []
    for variant, seed in exp.runs() if cells is None else cells:
        out = run_dir(exp_dir, variant, seed)
        if not (out / "row.json").is_file():
            continue
        # knob columns the row predates (knobs added since, at their defaults) come from the id
        row = {**variant.columns(), **read_row(out)}
        if row.get("status") == "ok" and (out / "history.csv").is_file():
            history = pd.read_csv(out / "history.csv").to_dict("records")
            row.update(judge(history, exp.metric, METRICS.get(exp.metric).better).row())
        rows.append(row)
    frame = pd.DataFrame(rows)
    known = columns()
    extra = [c for c in frame.columns if c not in known]
    return frame.reindex(columns=[*known, *extra])


def write_runs(exp_dir: Path, runs: pd.DataFrame, stem: str = "runs") -> None:
    """``<stem>.csv`` and ``<stem>.parquet``, each replaced atomically."""
    write_text(exp_dir / f"{stem}.csv", runs.to_csv(index=False))
    fault_point("runs-table")
    with atomic_path(exp_dir / f"{stem}.parquet") as tmp:
        runs.to_parquet(tmp, index=False)


def read_row(out: Path) -> dict[str, Any]:
    """A run's stored ``row.json``."""
    return json.loads((out / "row.json").read_text())


def write_row(out: Path, row: dict[str, Any]) -> None:
    """A run's ``row.json``, replaced atomically."""
    write_text(out / "row.json", row_text(row))


def row_text(row: dict[str, Any]) -> str:
    """A result row as JSON; numpy and torch scalars become plain numbers."""
    return json.dumps(row, default=lambda v: v.item() if hasattr(v, "item") else str(v))


def describe(exp: Experiment) -> dict[str, Any]:
    """What ``experiment.json`` records of an experiment."""
    return {"name": exp.name, "description": exp.description, "dataset": exp.data.to_dict(),
            "preset": exp.preset, "config": exp.config.to_dict(), "seeds": list(exp.seeds),
            "adaptive_seeds": ({"min": exp.adaptive.min, "max": exp.adaptive.max}
                               if exp.adaptive else None),
            "baseline": exp.baseline.id, "variants": [v.id for v in exp.variants],
            "profile_size": exp.profile_size, "metric": exp.metric,
            "equivalence": exp.margins()}
