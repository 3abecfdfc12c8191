"""Tests for ablate.bench.stats: the median interval is recomputed here independently, and the
verdicts are read against hand-made intervals."""

from __future__ import annotations

import math

import pytest
import torch

from ablate.bench.stats import bound_verdict, median_ci, verdict


@pytest.mark.parametrize("n", [6, 9, 10, 25, 40])
def test_median_interval_is_the_order_statistics_of_the_binomial(n):
    """Independent check: the widest-coverage-at-least-95% pair of order statistics (x_(k),
    x_(n+1-k)) for the median, with k from the Binomial(n, 1/2) tail."""
    values = [float(v) for v in torch.randn(n, generator=torch.Generator().manual_seed(n))]
    k = max(j for j in range(1, n // 2 + 1)
            if 1 - 2 * sum(math.comb(n, i) for i in range(j)) / 2 ** n >= 0.95)
    ordered = sorted(values)
    assert median_ci(values) == pytest.approx((ordered[k - 1], ordered[n - k]))


def test_median_interval_needs_six_rounds():
    assert median_ci([1.0, 1.1, 0.9, 1.0, 1.2]) == ("", "")


@pytest.mark.parametrize("low, high, expected", [
    (0.95, 1.02, "met"), (1.031, 1.1, "missed"), (0.99, 1.05, "not resolved: the 95% CI spans"),
    ("", "", "not resolved: fewer than"),
])
def test_verdict_reads_the_interval_against_the_goal(low, high, expected):
    assert verdict({"ci_low": low, "ci_high": high}, 1.03).startswith(expected)
    steady = {"median": 1.0, "ci_low": 0.98, "ci_high": 1.01}  # an A/A floor around 1
    assert verdict({"ci_low": low, "ci_high": high}, 1.03, steady).startswith(expected)


def test_verdict_is_withheld_when_identical_code_differs():
    floor = {"median": 1.051, "ci_low": 1.02, "ci_high": 1.09}
    result = verdict({"ci_low": 0.945, "ci_high": 1.026}, 1.03, floor)
    assert result == "not resolved: identical code differs here (A/A 1.051, 95% CI excludes 1)"


@pytest.mark.parametrize("low, high, step_ms, expected", [
    (-20.0, 250.0, 10.0, "met: at most 2.50% of a 10 ms step"),
    (-20.0, -5.0, 10.0, "met: at most 0.00% of a 10 ms step"),
    (310.0, 400.0, 10.0, "missed: at least 3.10% of a 10 ms step"),
    (100.0, 400.0, 10.0, "not resolved: up to 4.00% of a 10 ms step"),
    ("", "", 10.0, "not resolved: fewer than"),
])
def test_bound_verdict_divides_the_added_time_by_the_step(low, high, step_ms, expected):
    extra = {"ci_low": low, "ci_high": high}  # microseconds per step
    assert bound_verdict(extra, step_ms, 1.03).startswith(expected)
