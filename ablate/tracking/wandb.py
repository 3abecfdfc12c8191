"""Weights & Biases: offline run files under ``results/<experiment>/wandb/`` unless the user
set ``WANDB_MODE`` (``wandb sync`` uploads them later); the project is the experiment's name
unless ``WANDB_PROJECT`` is set.

Each cell attempt is a run in its variant's group (W&B's grouping of seeds); the group's aggregate
is one more run (job type ``seeds``) and the study one run (job type ``study``) with the summary
as a table and the report as a file. Run ids are derived from the experiment, variant, seed, run
key and attempt, so the aggregates are resumed and updated on every report, never duplicated, and a
killed attempt is resumed once to be finished with a non-zero exit code (failed).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from .sinks import FINISHED, Cell, Sink, TrackerRun, register_sink


def run_id(*parts: object) -> str:
    """A stable W&B run id from ``parts`` (letters and digits only, as W&B requires)."""
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()[:16]


@register_sink("wandb", requires=("wandb",),
               help="offline run files in `results/<experiment>/wandb/` (unless `WANDB_MODE` "
                    "is set), one group per variant")
class WandbSink(Sink):
    """The ``wandb`` sink (module docstring)."""

    def __init__(self, exp_dir: Path, experiment: str) -> None:
        super().__init__(exp_dir, experiment)
        self.mode = os.environ.get("WANDB_MODE", "offline")
        self.project = os.environ.get("WANDB_PROJECT", experiment)

    def where(self) -> str:
        return f"W&B project {self.project!r} ({self.mode}; files in {self.exp_dir / 'wandb'})"

    def _init(self, **kwargs):
        import wandb

        self.exp_dir.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(silent=True, console="off", x_disable_stats=True)
        return wandb.init(project=self.project, dir=str(self.exp_dir), mode=self.mode,
                          reinit="create_new", resume="allow", settings=settings, **kwargs)

    def start(self, cell: Cell) -> TrackerRun:
        ident = run_id(self.experiment, cell.variant, cell.seed, cell.run_key, cell.attempt)
        run = self._init(id=ident, name=cell.name, group=cell.variant, job_type="cell",
                         config=dict(cell.params))
        return _Run(run, ident)

    def mark_killed(self, run_id: str, cell: Cell) -> None:
        run = self._init(id=run_id, name=cell.name, group=cell.variant, job_type="cell")
        run.summary["ablate_status"] = "killed"
        run.finish(exit_code=1)

    def publish_variant(self, variant: str, knobs: Mapping[str, str],
                        values: Mapping[str, float], tags: Mapping[str, str]) -> None:
        run = self._init(id=run_id(self.experiment, variant, "seeds"), name=f"{variant} (seeds)",
                         group=variant, job_type="seeds", config=dict(knobs))
        run.summary.update({**values, **tags})
        run.finish()

    def publish_study(self, summary: pd.DataFrame, report: Path, files: Iterable[Path]) -> None:
        import wandb

        run = self._init(id=run_id(self.experiment, "study"), name=f"{self.experiment} (study)",
                         job_type="study")
        run.summary["summary"] = wandb.Table(dataframe=summary.astype(str))
        for path in (report, *files):
            run.save(str(path), base_path=str(path.parent), policy="now")
        run.finish()


class _Run(TrackerRun):
    def __init__(self, run, ident: str) -> None:
        self.run, self.id = run, ident

    def log_epoch(self, epoch: int, values: Mapping[str, float]) -> None:
        self.run.log(dict(values), step=epoch)

    def finish(self, status: str, values: Mapping[str, float], tags: Mapping[str, str],
               files: Iterable[Path]) -> None:
        import wandb

        self.run.summary.update({**{f"final/{k}": v for k, v in values.items()}, **tags})
        for path in files:
            if path.suffix == ".png":
                self.run.summary[path.stem] = wandb.Image(str(path))
            else:
                self.run.save(str(path), base_path=str(path.parent), policy="now")
        self.run.finish(exit_code=0 if status == FINISHED else 1)
