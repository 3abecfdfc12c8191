"""The convergence criterion on synthetic histories whose answer is known."""

import math

import numpy as np
import pytest

from ablate.training.convergence import LOSS_TOLERANCE, MIN_WINDOW, TOLERANCE, judge, window_start


def _history(dice, loss=None):
    loss = loss if loss is not None else [1.0 - 0.5 * d for d in dice]
    return [{"epoch": i + 1, "dice": d, "train_loss": loss_value}
            for i, (d, loss_value) in enumerate(zip(dice, loss))]


def _saturating(epochs, top=0.9, rate=0.6):
    e = np.arange(1, epochs + 1)
    return top * (1 - np.exp(-rate * e))


def test_a_saturated_run_converged():
    dice = _saturating(15)
    verdict = judge(_history(dice, loss=1 - dice))
    assert verdict.converged and verdict.reason == ""
    assert 0 <= verdict.conv_gain < TOLERANCE and verdict.conv_loss_drop < LOSS_TOLERANCE
    assert verdict.best_epoch == 15
    # 95% of the final value (0.8999...) is first reached where 0.9 (1 - e^-0.6e) >= 0.855
    expected = math.ceil(-math.log(1 - 0.95 * dice[-1] / 0.9) / 0.6)
    assert verdict.epoch_95 == expected


def test_a_run_still_rising_has_not_converged():
    dice = np.linspace(0.3, 0.6, 12)
    verdict = judge(_history(dice))
    assert not verdict.converged and "dice still improving" in verdict.reason
    # a straight line: the projected gain over the window is exactly its rise over the window
    start = window_start(12) - 1
    assert verdict.conv_gain == pytest.approx(dice[-1] - dice[start])


def test_a_noisy_plateau_converged():
    rng = np.random.default_rng(0)
    dice = np.minimum(0.85, _saturating(15, top=0.9)) + rng.normal(0, 0.008, 15)
    loss = 0.2 + 0.8 * np.exp(-0.6 * np.arange(1, 16)) + rng.normal(0, 0.002, 15)
    verdict = judge(_history(dice, loss))
    assert verdict.converged, verdict.reason
    # the last-minus-first difference is noise the line is not fooled by
    assert abs(verdict.conv_gain) < TOLERANCE


def test_a_flat_metric_with_a_falling_loss_has_not_converged():
    verdict = judge(_history([0.5] * 12, loss=np.linspace(1.0, 0.4, 12)))
    assert not verdict.converged and "training loss still falling" in verdict.reason


def test_a_run_that_got_worse_has_stopped_improving():
    dice = np.concatenate([_saturating(8), np.linspace(0.88, 0.8, 4)])
    assert judge(_history(dice, loss=[0.1] * 12)).converged


def test_lower_is_better_metric():
    loss = np.linspace(1.0, 0.2, 12)
    history = [{"epoch": i + 1, "val_loss": v, "train_loss": 0.1} for i, v in enumerate(loss)]
    verdict = judge(history, "val_loss", better="min")
    assert not verdict.converged and verdict.conv_gain > 0  # falling loss = still improving
    assert verdict.best_epoch == 12 and verdict.epoch_95 == 12


def test_too_short_a_history_is_not_judged():
    verdict = judge(_history([0.1, 0.5, 0.9]))
    assert not verdict.converged and "too few epochs" in verdict.reason
    assert verdict.best_epoch == 3 and math.isnan(verdict.conv_gain)
    assert not judge([]).converged


def test_non_finite_values_never_converge():
    dice = list(_saturating(12))
    dice[-1] = math.nan
    assert not judge(_history(dice, loss=[0.1] * 12)).converged


@pytest.mark.parametrize("epochs, first", [(6, 4), (9, 7), (12, 9), (15, 11), (30, 21)])
def test_the_window_is_the_last_third(epochs, first):
    assert window_start(epochs) == first
    assert epochs - window_start(epochs) + 1 >= MIN_WINDOW


def test_the_loss_share_is_of_the_runs_own_descent():
    """A cross-entropy loss that keeps shrinking slowly on a flat metric has converged; the
    same absolute drop in a run that barely descended has not."""
    dice = [0.69, 0.76, 0.80, 0.84, 0.85, 0.86, 0.86, 0.862]
    loss = [0.95, 0.57, 0.41, 0.32, 0.28, 0.25, 0.235, 0.228]  # a measured quick run
    verdict = judge(_history(dice, loss))
    assert verdict.converged, verdict.reason
    # drop over the window / (first loss - window mean), the line fitted by hand
    x, y = np.arange(6, 9), np.array(loss[5:])
    slope = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
    assert verdict.conv_loss_drop == pytest.approx(-slope * 2 / (0.95 - y.mean()))
    flat_start = judge(_history(dice, [0.30, 0.29, 0.29, 0.28, 0.28, 0.25, 0.235, 0.228]))
    assert not flat_start.converged and "training loss still falling" in flat_start.reason
