"""Exactly one finished tracker run per cell, whatever happens to the process.

Each run folder keeps ``tracking.json`` beside its row: for each experiment and sink, the tracker
run that holds the cell (its id, run key, attempt and state). A cell's attempt opens a run and
records it as ``running`` before training; each epoch is logged as ``history.csv`` gains it (so
the epochs a resumed attempt did not train itself are logged too); after the row is written the
run is finished and recorded as ``finished``. Then:

- a cell reused as it is (its row is current) is not logged again; one copied from another
  experiment is logged once as a cell of this one (its row says ``reused_from``), never again;
- an attempt killed mid-run leaves a ``running`` record: the next attempt, or the next
  ``ablate report``, marks that run killed and logs the cell in a new run, so each cell ends with
  one finished run (and its killed attempts marked as such);
- a cell that finished before a sink was asked for is logged from its files once.

A sink that raises is reported on the log and skipped for the rest of the attempt; its record
stays ``running``, so the next report retries it. Tracking never fails a run.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..common.env import environment, resolve_device
from ..common.files import write_text
from ..common.plugins import column as plugins_column
from ..config import TrainConfig
from ..models.variant import Variant
from ..results import OK, PRUNED, ROW_FILE, read_row, seed_folder, text_columns
from .sinks import FAILED, FINISHED, KILLED, Cell, Sink, TrackerRun, open_sinks

RECORD = "tracking.json"
RUNNING, DONE = "running", "finished"

#: Files of a run folder given to the trackers as artifacts, where present.
ARTIFACTS = ("history.csv", "samples.png", ROW_FILE)

#: history.csv columns that are not values to plot.
_NOT_LOGGED = ("epoch", "in_window")


class Tracking:
    """The sinks of one experiment folder, and the per-cell bookkeeping that keeps them exact.

    Falsy when no sink is asked for, so callers can skip it. A sink that cannot be opened (its
    server unreachable, say) raises here, before anything trains.
    """

    def __init__(self, names: Iterable[str], exp_dir: Path, experiment: str,
                 log: Callable[[str], None] | None = None) -> None:
        self.names = tuple(names)
        self.sinks: list[Sink] = open_sinks(self.names, Path(exp_dir), experiment)
        self.experiment = experiment
        self.log = log or tqdm.write

    def __bool__(self) -> bool:
        return bool(self.sinks)

    def begin(self, out: Path, variant: Variant, seed: int, key: str,
              config: TrainConfig) -> CellRuns:
        """Open this attempt's run in every sink (marking a killed earlier attempt first)."""
        runs = CellRuns(self, Path(out), variant, seed, key, config)
        runs.begin(list(self.sinks))
        return runs

    def ensure(self, out: Path, variant: Variant, seed: int, key: str,
               config: TrainConfig) -> None:
        """Log a finished cell (its row is current) in every sink that does not hold it
        finished yet: a cell run before the sink was asked for, or whose finish was cut off."""
        out = Path(out)
        if not (out / ROW_FILE).is_file():
            return
        record = read_record(out)
        todo = [s for s in self.sinks
                if not (record.get(self.entry(s), {}).get("state") == DONE
                        and record[self.entry(s)].get("run_key") == key)]
        if not todo:
            return
        runs = CellRuns(self, out, variant, seed, key, config)
        runs.begin(todo)
        runs.end(read_row(out))

    def entry(self, sink: Sink) -> str:
        """The key of ``sink``'s entry in a cell's record: ``<experiment>/<sink name>``. A cell
        copied from another experiment brings that experiment's entries, which say nothing of
        this experiment's trackers: the copy is logged here once, as a cell of this study."""
        return f"{self.experiment}/{self.names[self.sinks.index(sink)]}"

    def attempt(self, who: str, what: str, fn: Callable, *args, after: str = "") -> Any:
        """``fn(*args)``, or, when it raises, one log line naming ``who`` could not do ``what``
        and why (then ``after``) and False: a tracker never fails a run or a report."""
        try:
            result = fn(*args)
        except Exception as exc:
            self.log(f"tracking: {who} could not {what} ({type(exc).__name__}: {exc}){after}")
            return False
        return True if result is None else result

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


class CellRuns:
    """One attempt of one cell across the sinks (``Tracking.begin``)."""

    def __init__(self, tracking: Tracking, out: Path, variant: Variant, seed: int, key: str,
                 config: TrainConfig) -> None:
        self.tracking, self.out, self.key = tracking, out, key
        self.variant, self.seed, self.config = variant, seed, config
        self.runs: dict[str, tuple[Sink, TrackerRun]] = {}
        self.logged = 0  # the last epoch given to the trackers

    def begin(self, sinks: list[Sink]) -> None:
        record = read_record(self.out)
        params = cell_params(self.variant, self.config, self.key)
        for sink in sinks:
            name = self.tracking.entry(sink)
            held = record.get(name, {})
            attempt = held.get("attempt", 0) + 1 if held.get("run_key") == self.key else 1
            cell = Cell(self.tracking.experiment, self.variant.id, self.seed, self.key, attempt,
                        params, f"{self.variant.id}/{seed_folder(self.seed)}")
            if held.get("state") == RUNNING:
                self._guard(sink, "mark killed", sink.mark_killed, held["id"], cell)
            run = self._guard(sink, "start", sink.start, cell)
            if run is False:
                continue
            self.runs[name] = (sink, run)
            record[name] = {"id": run.id, "run_key": self.key, "attempt": attempt,
                            "state": RUNNING}
        write_record(self.out, record)

    def epoch(self) -> None:
        """Log every epoch of ``history.csv`` not logged yet."""
        for row in read_history(self.out):
            epoch = int(row["epoch"])
            if epoch <= self.logged:
                continue
            values = {k: v for k, v in row.items() if k not in _NOT_LOGGED}
            for name, (sink, run) in list(self.runs.items()):
                if self._guard(sink, "log epoch", run.log_epoch, epoch, values) is False:
                    del self.runs[name]
            self.logged = epoch

    def end(self, row: Mapping[str, Any]) -> None:
        """Log what is left of the history and finish each run with the row; record it."""
        self.epoch()
        status = {OK: FINISHED, PRUNED: KILLED}.get(row.get("status"), FAILED)
        values, tags = final_values(row)
        files = [self.out / f for f in ARTIFACTS if (self.out / f).is_file()]
        record = read_record(self.out)
        for name, (sink, run) in self.runs.items():
            if self._guard(sink, "finish", run.finish, status, values, tags, files) is not False:
                record[name]["state"] = DONE
        write_record(self.out, record)

    def _guard(self, sink: Sink, what: str, fn: Callable, *args) -> Any:
        """``Tracking.attempt`` for this cell: a failed call is retried by the next report."""
        return self.tracking.attempt(self.tracking.entry(sink),
                                     f"{what} for {self.variant.id} seed {self.seed}", fn, *args,
                                     after="; `ablate report` retries it")


def cell_params(variant: Variant, config: TrainConfig, key: str) -> dict[str, str]:
    """A cell's parameters as trackers store them (text): its knobs (``knob.*``), resolved
    training config (``train.*``), run key, environment (``env.*``) and plugins."""
    params = {f"knob.{k}": v for k, v in variant.columns().items()}
    params.update({f"train.{k}": v for k, v in config.to_dict().items()})
    params.update({f"env.{k}": v for k, v in environment(resolve_device(config.device)).items()})
    params.update(run_key=key, variant=variant.id, plugins=plugins_column())
    return {k: "" if v is None else str(v) for k, v in params.items()}


def final_values(row: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """A row's numbers (metrics, convergence, profile, timings) and its text columns."""
    text = set(text_columns())
    values, tags = {}, {}
    for k, v in row.items():
        if k in text:
            if v not in (None, "") and not (isinstance(v, float) and math.isnan(v)):
                tags[k] = str(v)
        elif isinstance(v, bool):
            values[k] = float(v)
        elif isinstance(v, (int, float)) and math.isfinite(v):
            values[k] = float(v)
    return values, tags


def read_history(out: Path) -> list[dict[str, float]]:
    """The run's ``history.csv`` as numbers (empty before the first epoch)."""
    path = out / "history.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in r.items() if v not in ("", None)}
                for r in csv.DictReader(f)]


def read_record(out: Path) -> dict[str, dict[str, Any]]:
    path = out / RECORD
    return json.loads(path.read_text()) if path.is_file() else {}


def write_record(out: Path, record: Mapping[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / RECORD, json.dumps(record, indent=2, sort_keys=True))
