"""Experiment trackers as optional sinks: TensorBoard, MLflow and W&B (``docs/tracking.md``).

The CSV/Parquet tables stay the source of truth; a sink copies each run (parameters, epochs,
final row, artifacts), each variant's seed aggregates and each study's report into a tracker,
exactly once per cell (``ablate.tracking.cell``), and publishes the aggregates
(``ablate.tracking.study``). ``tracking: [...]`` in an experiment or search file, or
``--track NAME``, asks for them; none by default. This package's root holds only the registry
and the sinks (the experiment file validates against it); the bookkeeping imports the rest.
"""

from . import mlflow, tensorboard, wandb  # noqa: F401  (register the built-in sinks)
from .sinks import SINKS, Cell, Sink, TrackerRun, check_sinks, register_sink

__all__ = ["SINKS", "Cell", "Sink", "TrackerRun", "check_sinks", "register_sink"]
