"""Statistics of the measurements: one result row per measurement (median, min-max and a
distribution-free 95% interval of the median over rounds), and the verdicts that read a ratio's
interval against a goal, withheld when the A/A noise floor shows identical code differing."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from scipy import stats

#: The columns of a result row, in the order of the csv (``device`` is filled in last).
COLUMNS = ("device", "section", "variant", "metric", "unit", "median", "min", "max", "ci_low",
           "ci_high", "n", "note")
CI_LEVEL = 0.95
CI_MIN_ROUNDS = 6             # fewer rounds cannot give a 95% interval for a median


def median_ci(values: Sequence[float]) -> tuple[float | str, float | str]:
    """Distribution-free ``CI_LEVEL`` interval of the median (order statistics); blanks when
    there are fewer than ``CI_MIN_ROUNDS`` values."""
    if len(values) < CI_MIN_ROUNDS:
        return "", ""
    ci = stats.quantile_test(values, p=0.5).confidence_interval(CI_LEVEL)
    return float(ci.low), float(ci.high)


def result_row(section: str, variant: str, metric: str, unit: str, values: Sequence[float] = (),
               note: str = "") -> dict:
    """One measurement as a row of ``COLUMNS`` (all but ``device``): its values summarized,
    blanks when there are none (not measured; ``note`` says why)."""
    values = list(values)
    summary = ({"median": statistics.median(values), "min": min(values), "max": max(values)}
               if values else {"median": "", "min": "", "max": ""})
    low, high = median_ci(values)
    return {"section": section, "variant": variant, "metric": metric, "unit": unit, **summary,
            "ci_low": low, "ci_high": high, "n": len(values) or "", "note": note}


def bound_verdict(extra: dict, step_ms: float | str, goal: float) -> str:
    """Whether the time the harness adds per step (``extra``, microseconds, with its interval)
    settles ``goal`` on a step of ``step_ms``: its upper bound as a share of the step."""
    if extra["ci_low"] == "" or step_ms == "":
        return f"not resolved: fewer than {CI_MIN_ROUNDS} rounds"
    high, low = max(extra["ci_high"], 0.0) / (1e3 * step_ms), extra["ci_low"] / (1e3 * step_ms)
    if high <= goal - 1:
        return f"met: at most {high:.2%} of a {step_ms:.3g} ms step (upper 95% bound)"
    if low > goal - 1:
        return f"missed: at least {low:.2%} of a {step_ms:.3g} ms step (lower 95% bound)"
    return f"not resolved: up to {high:.2%} of a {step_ms:.3g} ms step"


def verdict(row: dict | None, goal: float, floor: dict | None = None) -> str:
    """Whether a time ratio's confidence interval settles ``ratio <= goal``; not when the A/A
    ``floor`` shows that identical code differs here (its interval excludes 1)."""
    if row is None or row["ci_low"] == "":
        return f"not resolved: fewer than {CI_MIN_ROUNDS} rounds"
    steady = floor is None or floor["ci_low"] == "" or floor["ci_low"] <= 1 <= floor["ci_high"]
    if not steady:
        return (f"not resolved: identical code differs here (A/A {floor['median']:.3f}, 95% CI "
                "excludes 1)")
    if row["ci_high"] <= goal:
        return f"met: the 95% CI lies at or below {goal}"
    if row["ci_low"] > goal:
        return f"missed: the 95% CI lies above {goal}"
    return f"not resolved: the 95% CI spans {goal}"


def faster(row: dict) -> str:
    """Whether a speed-up row (time without / with) shows its switch measurably faster: the
    95% CI of the median above 1 (faster), below 1 (slower), or spanning 1."""
    if row["median"] == "":
        return "not measured"
    if row["ci_low"] == "":
        return f"not resolved: fewer than {CI_MIN_ROUNDS} rounds"
    if row["ci_low"] > 1:
        return "faster"
    if row["ci_high"] < 1:
        return "slower"
    return "no measurable difference"
