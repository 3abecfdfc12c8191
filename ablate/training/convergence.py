"""Has a run converged? One stated criterion, applied to every run's per-epoch history.

A comparison of runs that are still improving measures training speed, not architecture. A run
is judged on the **window**: the last third of its budget (the last ``ceil(E / 3)`` epochs of
``E``), at least :data:`MIN_WINDOW` epochs.

- **Metric flat.** The least-squares line through the compared validation metric over the
  window projects a change over the window (slope x its span in epochs): ``conv_gain``, in the
  metric's better direction (positive = still improving). It must be below ``tolerance``
  (default :data:`TOLERANCE`, absolute, e.g. 0.01 Dice). A line, not the last value minus the
  first, so that epoch-to-epoch noise on a plateau does not decide the verdict.
- **Training loss flat.** The same projected drop of the training loss over the window, as a
  share of the run's whole descent (first epoch's loss minus the window's mean): ``conv_loss_drop``
  (positive = still falling). It must be below ``loss_tolerance`` (default
  :data:`LOSS_TOLERANCE`). A share of the run's own descent, not of the loss's level: a
  cross-entropy term keeps shrinking slowly as predictions grow confident, whatever its scale,
  while a run that is still learning does a third or more of its descent in the last third.

``converged`` is true when both hold; a history shorter than ``2 * MIN_WINDOW`` epochs is not
judged (``converged`` false, reason given). A run that got worse over the window (``conv_gain``
< 0) has stopped improving and counts as converged. Two more facts help a reader: ``epoch_95``,
the first epoch whose metric reached 95% of the final value (within 5% of it for a metric where
lower is better), and ``best_epoch``, the epoch of the best value (ties: the first).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..common.checks import check_better, oriented
from ..evaluation.metrics import DEFAULT_METRIC, METRICS

TOLERANCE = 0.01          # projected metric gain over the window, absolute
LOSS_TOLERANCE = 0.10     # projected training-loss drop over the window, share of the descent
MIN_WINDOW = 3            # epochs in the window at the least

#: Result-row columns this module fills, in order.
COLUMNS = ("converged", "conv_gain", "conv_loss_drop", "epoch_95", "best_epoch")


@dataclass(frozen=True)
class Convergence:
    """The verdict on one run and the numbers behind it (see the module docstring)."""

    converged: bool
    conv_gain: float        # projected metric change over the window, better direction > 0
    conv_loss_drop: float   # projected training-loss drop over the window / its mean
    epoch_95: float         # first epoch at 95% of the final value (NaN without history)
    best_epoch: float       # epoch of the best value (NaN without history)
    reason: str = ""        # why not converged ("" when converged)

    def row(self) -> dict[str, float | bool]:
        """The result-row columns (:data:`COLUMNS`)."""
        d = asdict(self)
        return {c: d[c] for c in COLUMNS}


def is_converged(value: object) -> bool:
    """A runs-table ``converged`` cell as a bool (CSV reads back ``True``, ``"True"`` or 1)."""
    return value is True or str(value).strip().lower() in ("true", "1", "1.0")


def window_start(epochs: int) -> int:
    """The first epoch (1-based) of the window of a budget of ``epochs`` epochs."""
    return epochs - max(MIN_WINDOW, math.ceil(epochs / 3)) + 1


def judge(history: Sequence[Mapping[str, float]], metric: str = DEFAULT_METRIC,
          better: str | None = None, tolerance: float = TOLERANCE,
          loss_tolerance: float = LOSS_TOLERANCE) -> Convergence:
    """Judge a run from its history (one mapping per epoch with ``epoch``, ``train_loss`` and
    ``metric``), the whole budget having been run. ``better`` (``max`` or ``min``) defaults to
    the direction ``metric`` is registered with in ``METRICS``."""
    better = METRICS.get(metric).better if better is None else check_better(better)
    values = np.array([float(h[metric]) for h in history], dtype=float)
    losses = np.array([float(h["train_loss"]) for h in history], dtype=float)
    epochs = np.array([float(h["epoch"]) for h in history], dtype=float)
    if len(values) == 0:
        return Convergence(False, math.nan, math.nan, math.nan, math.nan, "no epochs run")
    sign = oriented(better)
    best = int(np.argmax(sign * values))
    final = values[-1]
    reached = sign * values >= sign * final - 0.05 * abs(final)
    epoch_95, best_epoch = float(epochs[int(np.argmax(reached))]), float(epochs[best])
    if len(values) < 2 * MIN_WINDOW:
        return Convergence(False, math.nan, math.nan, epoch_95, best_epoch,
                           f"too few epochs to judge ({len(values)} < {2 * MIN_WINDOW})")
    start = window_start(len(values)) - 1
    x = epochs[start:]
    gain = sign * _projected_change(x, values[start:])
    window_loss = losses[start:]
    drop = -_projected_change(x, window_loss)
    descent = float(losses[0] - np.mean(window_loss))
    loss_drop = drop / descent if descent > 0 else (math.inf if drop > 0 else 0.0)
    reasons = []
    if not gain < tolerance:
        reasons.append(f"{metric} still improving: +{gain:.4f} over the last "
                       f"{len(x)} epochs (tolerance {tolerance:g})")
    if not loss_drop < loss_tolerance:
        reasons.append(f"training loss still falling: {100 * loss_drop:.1f}% of its descent in "
                       f"the last {len(x)} epochs (tolerance {100 * loss_tolerance:g}%)")
    return Convergence(not reasons, float(gain), float(loss_drop), epoch_95, best_epoch,
                       "; ".join(reasons))


def _projected_change(x: np.ndarray, y: np.ndarray) -> float:
    """Slope of the least-squares line through (x, y), times the span of x."""
    if not np.all(np.isfinite(y)):
        return math.inf
    slope = np.polyfit(x, y, 1)[0]
    return float(slope * (x[-1] - x[0]))
