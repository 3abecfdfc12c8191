"""ablate: does this architectural change really help, and what does it cost?

variant -> model -> train -> evaluate -> save -> profile -> row -> table / plot.

Tables and reports (scipy, statsmodels, matplotlib) are imported on first use of their names,
so that training, workers and the command line start without them.
"""

import importlib

from .common.registry import Registry
from .config import PRESETS, TrainConfig, load_config
from .data import DATASETS, DataSpec, load_dataset
from .evaluation.evaluate import evaluate
from .evaluation.metrics import MetricAccumulator, scores
from .experiment import Experiment, load_experiment
from .models.model import SegmentationModel, build_model
from .models.profile import Profile, profile_model
from .models.variant import KNOBS, Variant, list_knobs
from .runner import run_experiment, run_one
from .training.loop import RunResult, train
from .training.losses import LOSSES

__all__ = [
    "DATASETS", "KNOBS", "LOSSES", "PRESETS",
    "DataSpec", "Experiment", "MetricAccumulator", "Profile", "Registry", "RunResult",
    "SegmentationModel", "TrainConfig", "Variant",
    "build_model", "evaluate", "factorial_effects", "format_summary", "list_knobs",
    "load_config", "load_dataset", "load_experiment", "load_runs", "profile_model",
    "run_experiment", "run_one", "scores", "summarize", "train", "verdicts", "write_report",
]
__version__ = "0.1.0"

_LAZY = {"format_summary": "analysis.tables", "summarize": "analysis.stats",
         "verdicts": "analysis.stats", "factorial_effects": "analysis.factorial",
         "load_runs": "results", "write_report": "analysis.report"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
