"""TensorBoard: event files under ``results/<experiment>/tensorboard/``, one directory per run.

A cell's run is named by its run folder, ``<variant>/seed<k>``: its parameters as text, one
scalar per value per epoch, its final numbers with the knobs in the HParams dashboard, the sample
grid as an image. A variant's
seed aggregates are the HParams run ``<variant>/seeds``; the study's summary and report are text in
``_study``. TensorBoard has no run state: a resumed or redone cell writes a new event file in the
same directory that starts with TensorBoard's own restart marker (``purge_step=0``), so the
reader drops the killed attempt's events. Aggregate directories are rewritten on every report.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from ..common.markdown import table
from .sinks import Cell, Sink, TrackerRun, register_sink

FOLDER = "tensorboard"
STUDY = "_study"


@register_sink("tensorboard", requires=("tensorboard",),
               help="event files, one directory per run: "
                    "`results/<experiment>/tensorboard/<variant>/seed<k>`")
class TensorBoardSink(Sink):
    """The ``tensorboard`` sink (module docstring)."""

    def __init__(self, exp_dir: Path, experiment: str) -> None:
        super().__init__(exp_dir, experiment)
        self.root = self.exp_dir / FOLDER

    def where(self) -> str:
        return f"TensorBoard event files in {self.root} (tensorboard --logdir {self.root})"

    def start(self, cell: Cell) -> TrackerRun:
        from torch.utils.tensorboard import SummaryWriter

        folder = self.root / cell.folder
        redo = folder.is_dir() and any(folder.iterdir())
        writer = SummaryWriter(str(folder), purge_step=0 if redo else None)
        writer.add_text("params", _markdown(cell.params), 0)
        writer.add_text("attempt", str(cell.attempt), 0)
        writer.flush()
        return _Run(writer, str(folder.relative_to(self.root)), cell)

    def mark_killed(self, run_id: str, cell: Cell) -> None:
        """Nothing to mark: the next attempt's restart marker drops the killed events."""

    def publish_variant(self, variant: str, knobs: Mapping[str, str],
                        values: Mapping[str, float], tags: Mapping[str, str]) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        folder = self.root / variant / "seeds"
        shutil.rmtree(folder, ignore_errors=True)
        with SummaryWriter(str(folder)) as writer:
            metrics = {f"seeds/{k}": v for k, v in values.items()}
            for summary in hparams({**knobs, **tags}, metrics):
                writer.file_writer.add_summary(summary)
            for k, v in metrics.items():
                writer.add_scalar(k, v, 0)
            writer.add_text("summary", _markdown(tags), 0)

    def publish_study(self, summary: pd.DataFrame, report: Path, files: Iterable[Path]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        folder = self.root / STUDY
        shutil.rmtree(folder, ignore_errors=True)
        with SummaryWriter(str(folder)) as writer:
            writer.add_text("report", report.read_text(encoding="utf-8"), 0)
            writer.add_text("summary", _table(summary), 0)


class _Run(TrackerRun):
    def __init__(self, writer, run_id: str, cell: Cell) -> None:
        self.writer, self.id, self.cell = writer, run_id, cell

    def log_epoch(self, epoch: int, values: Mapping[str, float]) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, epoch)
        self.writer.flush()

    def finish(self, status: str, values: Mapping[str, float], tags: Mapping[str, str],
               files: Iterable[Path]) -> None:
        from torch.utils.tensorboard.summary import hparams

        step = int(values.get("epochs_run", 0))
        finals = {f"final/{k}": v for k, v in values.items()}
        knobs = {k: v for k, v in self.cell.params.items() if k.startswith("knob.")}
        for summary in hparams({**knobs, "seed": self.cell.seed}, finals):
            self.writer.file_writer.add_summary(summary)
        for k, v in finals.items():
            self.writer.add_scalar(k, v, step)
        self.writer.add_text("status", status, step)
        self.writer.add_text("row", _markdown(tags), step)
        for path in files:
            if path.suffix == ".png":
                self.writer.add_image(path.stem, _image(path), step, dataformats="HWC")
        self.writer.close()


def _markdown(mapping: Mapping[str, object]) -> str:
    return table(("key", "value"), [(k, v) for k, v in mapping.items()])


def _table(frame: pd.DataFrame) -> str:
    return table(frame.columns, frame.astype(str).itertuples(index=False))


def _image(path: Path):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))
