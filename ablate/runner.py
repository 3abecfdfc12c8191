"""Run one variant into one result row, and a whole experiment into a runs table.

For each (variant, seed): build -> train -> evaluate -> checkpoint (inside ``train``) ->
latency -> profile (last: thop attaches to modules) -> one row. A row is written atomically to
``results/<experiment>/runs/<variant>/seed<k>/row.json`` as the run's last act, and the runs
table (``runs.csv`` and ``runs.parquet``) is rebuilt from those files after every run (the row's
schema, folders and tables: ``ablate.results``). A sweep killed at any point (SIGKILL included)
and started again skips the cells that have a row, resumes the interrupted one from its last
checkpoint, and ends with exactly one row per (variant, seed).
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
from .common.files import CACHE_DIR, write_text
from .common.plugins import column as plugins_column
from .config import TrainConfig
from .data import DatasetInfo, DataSpec, Split, load_dataset
from .evaluation.metrics import DEFAULT_METRIC, METRICS, definitions
from .evaluation.timing import latency_ms
from .experiment import Experiment
from .models.model import build_model
from .models.profile import COUNTER_UNITS, profile_model
from .models.variant import Variant
from .results import (
    FAILED,
    OK,
    PRUNED,
    ROW_FILE,
    collect_runs,
    columns,
    read_row,
    run_dir,
    write_row,
    write_runs,
)
from .tracking.cell import Tracking
from .training.convergence import judge
from .training.loop import drop_resume_state, train
from .training.losses import key_name


def run_key(variant: Variant, data: DataSpec, config: TrainConfig, seed: int,
            profile_size: int) -> str:
    """Hash of everything that decides a run's result; a stored row with another key is stale."""
    settings = config.to_dict()
    settings["loss"] = key_name(settings["loss"])  # ce+dice keyed as bce+dice
    payload = json.dumps([variant.to_dict(), data.to_dict(), settings, seed, profile_size],
                         sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def run_one(variant: Variant, data: DataSpec | tuple[DatasetInfo, dict[str, Split]],
            config: TrainConfig, seed: int, out_dir: Path | None = None,
            profile_size: int = 224, experiment: str = "", preset: str = "",
            progress: bool | None = None, on_epoch: Callable | None = None,
            metric: str = DEFAULT_METRIC) -> dict[str, Any]:
    """Train, evaluate, time and profile one variant; return its result row
    (``ablate.results.columns``).

    ``metric`` is the score the run is compared on: ``best.pt`` follows it and the convergence
    columns judge its curve.
    """
    result = train(variant, data, config, seed=seed, out_dir=out_dir, progress=progress,
                   on_epoch=on_epoch, metric=metric)
    row = base_row(variant, seed, experiment, preset, config)
    row.update(status=result.status, error=result.error, epochs_run=result.epochs_run,
               dataset=result.info.name if result.info else "", **result.env)
    if result.steps:
        row.update(epochs=result.epochs, steps=result.steps)
    row.update({m: result.metrics.get(m, math.nan) for m in METRICS.names()})
    if result.status == OK:
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
    row.update(experiment=experiment, variant=variant.id, seed=seed, status=FAILED, error="")
    row.update(variant.columns())
    row.update(
        image_size=config.image_size, budget=config.budget_label,
        epochs=config.epochs if config.epochs is not None else math.nan, preset=preset,
        loss=config.loss,
        metric_definition=" ".join(f"{k}: {v}" for k, v in definitions().items()),
        counter_units=COUNTER_UNITS,
        plugins=plugins_column(),  # every plugin this process imported: name==version or hash
    )
    return row


def data_spec(exp: Experiment) -> DataSpec:
    """The dataset of ``exp`` at its training size (what the run keys of its cells hash)."""
    return DataSpec(exp.data.name, exp.data.root, exp.config.image_size, exp.data.options)


def run_experiment(exp: Experiment, results_dir: str | Path = "results",
                   progress: bool | None = None, retry_failed: bool = False,
                   cache_dir: str | Path = CACHE_DIR) -> pd.DataFrame:
    """Run every missing cell ``planned_runs`` asks for, round after round; return the runs
    table of the planned cells."""
    exp_dir = Path(results_dir) / exp.name
    exp_dir.mkdir(parents=True, exist_ok=True)
    write_text(exp_dir / "experiment.json", json.dumps(describe(exp), indent=2))
    spec = data_spec(exp)
    data, tried = None, set()
    tracking = Tracking(exp.tracking, exp_dir, exp.name)
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
                     reuse_from=Path(results_dir), tracking=tracking)
            tried.add((variant.id, seed))
            write_runs(exp_dir, collect_runs(exp_dir, exp, cells))
            bar.update(1)
    bar.close()
    tracking.close()
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
             reuse_from: Path | None = None, on_epoch: Callable | None = None,
             tracking: Tracking | None = None) -> dict[str, Any]:
    """Reuse, resume or train one (variant, seed) cell of ``exp`` in ``out``; return its row.

    The one place that decides a cell, for ``ablate run``, grid workers and search trials: a
    current row (``is_finished``, run key ``key``) is returned as it is; with ``reuse_from`` (a
    results folder) an identical finished run of another experiment there is copied; otherwise
    the cell trains, resuming its checkpoint. The run key is written first, so an interrupted
    cell resumes only under the same settings. ``on_epoch(epoch, scores)`` is passed to
    ``train``; a ``Pruned`` it raises becomes a pruned row, any other exception a failed row
    with its reason, never an error of the caller. Every cell run here ends with ``row.json``;
    then its resume state is dropped (``checkpoints/final.pt`` keeps the weights).
    ``tracking`` (``ablate.tracking.cell``) logs the attempt to the experiment's trackers, and a
    reused or copied cell only if no tracker holds it yet: once per cell.
    """
    if is_finished(out, key, retry_failed) or (
            reuse_from is not None
            and reuse_run(Path(reuse_from), variant, seed, out, key, exp.name)):
        if tracking:
            tracking.ensure(out, variant, seed, key, exp.config)
        return read_row(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "run_key").write_text(key)
    last: dict[str, Any] = {}
    tracked = tracking.begin(out, variant, seed, key, exp.config) if tracking else None

    def hook(epoch: int, scores: dict[str, float]) -> None:
        last.update(scores, epoch=epoch)
        if tracked is not None:
            tracked.epoch()
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
        row.update(status=PRUNED, error=str(exc), epochs_run=last["epoch"],
                   dataset=info.name)
        row.update(untrained_profile(variant, info, exp.profile_size))
    except Exception as exc:  # recorded, never fatal to the sweep
        row = base_row(variant, seed, exp.name, exp.preset, exp.config)
        row["error"] = f"{type(exc).__name__}: {exc}"
        row["dataset"] = exp.data.name
    row["run_key"] = key
    row["wall_s"] = time.perf_counter() - start
    write_row(out, row)
    if tracked is not None:
        tracked.end(row)
    drop_resume_state(out)
    return row


def untrained_profile(variant: Variant, info: DatasetInfo, profile_size: int) -> dict[str, Any]:
    """The profile columns of a throw-away, untrained copy of ``variant`` (nothing is trained)."""
    model = build_model(variant, info.model_outputs, info.in_channels)
    return profile_model(model, (info.in_channels, profile_size, profile_size)).row()


def reuse_run(results_dir: Path, variant: Variant, seed: int, out: Path, key: str,
              experiment: str) -> bool:
    """Copy an identical finished run (same run key) from another experiment instead of
    training it again; its row says where it came from (``reused_from``)."""
    for row_file in results_dir.glob(str(run_dir("*", variant, seed) / ROW_FILE)):
        if row_file.parent == out:
            continue
        row = json.loads(row_file.read_text())
        if row.get("run_key") != key or row.get("status") != OK:
            continue
        shutil.copytree(row_file.parent, out, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(ROW_FILE, "checkpoints"))
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
    row_file, marker = path / ROW_FILE, path / "run_key"
    if row_file.is_file():
        row = json.loads(row_file.read_text())
        if row.get("run_key") == key and not (retry_failed and row.get("status") != OK):
            return True
    resumable = (not row_file.is_file() and marker.is_file()
                 and marker.read_text().strip() == key)
    if path.is_dir() and not resumable:
        shutil.rmtree(path)
    return False


def describe(exp: Experiment) -> dict[str, Any]:
    """What ``experiment.json`` records of an experiment."""
    return {"name": exp.name, "description": exp.description, "dataset": exp.data.to_dict(),
            "preset": exp.preset, "config": exp.config.to_dict(), "seeds": list(exp.seeds),
            "adaptive_seeds": ({"min": exp.adaptive.min, "max": exp.adaptive.max}
                               if exp.adaptive else None),
            "baseline": exp.baseline.id, "variants": [v.id for v in exp.variants],
            "profile_size": exp.profile_size, "metric": exp.metric,
            "equivalence": exp.margins()}
