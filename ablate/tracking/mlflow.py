"""MLflow: a SQLite database in the experiment folder unless ``MLFLOW_TRACKING_URI`` names
another store, one MLflow experiment per ablate experiment (or search study).

Each cell attempt is a run nested (``mlflow.parentRunId``) under its variant's aggregate run,
whose metrics are the seed aggregates; the study run holds the summary and report as artifacts.
A killed attempt is set to ``KILLED`` when the cell is next touched. Runs are found again by
their ``ablate.*`` tags, so a rebuilt report updates them in place.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from .sinks import FAILED, FINISHED, KILLED, Cell, Sink, TrackerRun, lock, register_sink

#: How ablate's run states read in MLflow.
STATUS = {FINISHED: "FINISHED", FAILED: "FAILED", KILLED: "KILLED"}
DB = "mlflow.db"
ARTIFACTS = "mlflow-artifacts"
_BATCH = 100       # MLflow takes at most 100 params or tags per log_batch
_TEXT_LIMIT = 5000  # and values up to a few thousand characters


def tracking_uri(exp_dir: Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<exp_dir>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(exp_dir / DB).resolve()}"


@register_sink("mlflow", requires=("mlflow",),
               help="runs nested under one aggregate run per variant, and a study run; "
                    "`results/<experiment>/mlflow.db` unless `MLFLOW_TRACKING_URI` is set")
class MLflowSink(Sink):
    """The ``mlflow`` sink (module docstring)."""

    def __init__(self, exp_dir: Path, experiment: str) -> None:
        super().__init__(exp_dir, experiment)
        for name in ("alembic", "mlflow"):
            logging.getLogger(name).setLevel(logging.WARNING)
        from mlflow import MlflowClient

        self.uri = tracking_uri(self.exp_dir)
        self.client = MlflowClient(tracking_uri=self.uri)
        self.experiment_id = self._experiment()

    def _experiment(self) -> str:
        with lock(self.exp_dir):
            found = self.client.get_experiment_by_name(self.experiment)
            if found is not None:
                return found.experiment_id
            local = "MLFLOW_TRACKING_URI" not in os.environ
            location = (self.exp_dir / ARTIFACTS).resolve().as_uri() if local else None
            return self.client.create_experiment(self.experiment, artifact_location=location)

    def where(self) -> str:
        return f"MLflow {self.uri}, experiment {self.experiment!r}"

    def _find(self, **tags: str) -> str | None:
        query = " AND ".join(f"tags.`ablate.{k}` = '{v}'" for k, v in tags.items())
        found = self.client.search_runs([self.experiment_id], filter_string=query, max_results=1,
                                        order_by=["attributes.start_time ASC"])
        return found[0].info.run_id if found else None

    def _get_or_create(self, name: str, **tags: str) -> str:
        """The one run with these ``ablate.*`` tags (created under the folder's lock)."""
        with lock(self.exp_dir):
            run_id = self._find(**tags)
            if run_id is None:
                run_id = self.client.create_run(
                    self.experiment_id, run_name=name,
                    tags={f"ablate.{k}": v for k, v in tags.items()}).info.run_id
        return run_id

    def start(self, cell: Cell) -> TrackerRun:
        parent = self._get_or_create(f"{cell.variant} (seeds)", role="variant",
                                     variant=cell.variant)
        tags = {"mlflow.parentRunId": parent, "ablate.role": "cell",
                "ablate.variant": cell.variant, "ablate.seed": str(cell.seed),
                "ablate.run_key": cell.run_key, "ablate.attempt": str(cell.attempt)}
        run_id = self.client.create_run(self.experiment_id, run_name=cell.name,
                                        tags=tags).info.run_id
        self._log(run_id, params=cell.params)
        return _Run(self, run_id)

    def mark_killed(self, run_id: str, cell: Cell) -> None:
        self.client.set_tag(run_id, "ablate.status", "killed")
        self.client.set_terminated(run_id, status="KILLED")

    def publish_variant(self, variant: str, knobs: Mapping[str, str],
                        values: Mapping[str, float], tags: Mapping[str, str]) -> None:
        run_id = self._get_or_create(f"{variant} (seeds)", role="variant", variant=variant)
        self._log(run_id, values=values, tags={f"summary.{k}": v for k, v in tags.items()})
        existing = self.client.get_run(run_id).data.params
        self._log(run_id, params={k: v for k, v in knobs.items() if k not in existing})
        self.client.set_terminated(run_id, status="FINISHED")

    def publish_study(self, summary: pd.DataFrame, report: Path, files: Iterable[Path]) -> None:
        run_id = self._get_or_create(f"{self.experiment} (study)", role="study")
        for path in (report, *files):
            self.client.log_artifact(run_id, str(path))
        self._log(run_id, tags={"ablate.metric": str(summary.attrs.get("metric", "")),
                                "ablate.variants": str(len(summary))})
        self.client.set_terminated(run_id, status="FINISHED")

    def _log(self, run_id: str, values: Mapping[str, float] | None = None, step: int = 0,
             params: Mapping[str, str] | None = None,
             tags: Mapping[str, str] | None = None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in (values or {}).items()]
        params_ = [Param(k, str(v)[:_TEXT_LIMIT]) for k, v in (params or {}).items()]
        tags_ = [RunTag(k, str(v)[:_TEXT_LIMIT]) for k, v in (tags or {}).items()]
        for i in range(0, max(len(metrics), len(params_), len(tags_)), _BATCH):
            self.client.log_batch(run_id, metrics=metrics[i:i + _BATCH],
                                  params=params_[i:i + _BATCH], tags=tags_[i:i + _BATCH])


class _Run(TrackerRun):
    def __init__(self, sink: MLflowSink, run_id: str) -> None:
        self.sink, self.id = sink, run_id

    def log_epoch(self, epoch: int, values: Mapping[str, float]) -> None:
        self.sink._log(self.id, values=values, step=epoch)

    def finish(self, status: str, values: Mapping[str, float], tags: Mapping[str, str],
               files: Iterable[Path]) -> None:
        history = {"epoch", "train_loss", "lr", "time_s"}
        finals = {f"final.{k}": v for k, v in values.items() if k not in history}
        self.sink._log(self.id, values=finals,
                       tags={f"ablate.{k}": v for k, v in tags.items()})
        for path in files:
            self.sink.client.log_artifact(self.id, str(path))
        self.sink.client.set_terminated(self.id, status=STATUS[status])
