"""The verdict on a variant against the baseline: better, worse, equivalent or undecided.

A comparison is read from the paired differences d = variant - baseline over shared seeds.

- **Difference.** The two-sided paired t-test of mean(d) = 0 (``scipy.stats.ttest_1samp`` on d,
  which is ``ttest_rel``). Rejected: *better* or *worse*, by the sign of mean(d) and the metric's
  direction.
- **Equivalence.** With a margin m > 0 of practical equivalence, TOST (two one-sided paired
  t-tests): H0 mean(d) <= -m against mean(d) > -m, and H0 mean(d) >= m against mean(d) < m; its
  p is the larger of the two. Rejected: *equivalent*, the difference lies inside ±m. It takes
  precedence over better/worse, since a difference shown to be smaller than the margin is, by
  the user's own definition, of no practical importance.
- **Undecided**: neither test rejects; more seeds may decide it.

**Looks.** The tests may be read at several seed counts (``looks``, e.g. 3, 4, ..., 10 for
adaptive seeds). Reading a test at K looks and stopping at the first rejection inflates its
error rate, so each look's p is multiplied by K (Bonferroni over the looks, a fixed schedule):
the look-corrected p after look k is min(1, K * the smallest p of looks 1..k). By the union
bound, P(look-corrected p <= a) <= a under H0 for every a at once, whatever the dependence
between looks, whichever look the study stops at and whatever the other comparisons do. It is a
valid p-value, so Holm's correction across comparisons applies to it unchanged, and it only
falls as looks are added, so a decided comparison stays decided. The guarantee for the
difference: P(better or worse | no difference) <= alpha; for equivalence:
P(equivalent | |true difference| >= m) <= alpha. The price is caution: with K looks the last
look tests at alpha / K rather than alpha. With one look (a seed list), nothing changes.

**Zero variance.** When every difference is equal the t statistic is 0/0 or ±inf: identical
results give a difference p of 1, a constant non-zero one a p of 0 (the limit as the spread
shrinks), and TOST p is 0 inside the margin and 1 on or outside it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats

from ..common.checks import positive_number

VERDICTS = ("better", "worse", "equivalent", "undecided")


def check_margin(margin: float | None, metric: str = "metric") -> float | None:
    """A margin of practical equivalence: ``None`` (not stated) or a finite number > 0."""
    if margin is None:
        return None
    return positive_number(f"equivalence margin of {metric}", margin,
                           "a number > 0, in the metric's units")


def check_looks(looks: Sequence[int]) -> tuple[int, ...]:
    """Seed counts at which tests are read: increasing integers >= 2."""
    looks = tuple(looks)
    if not looks or any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2
                        for n in looks) or any(b <= a for a, b in zip(looks, looks[1:])):
        raise ValueError(f"looks={looks!r} is not allowed; allowed: increasing seed counts "
                         ">= 2 (a paired test needs two seeds)")
    return tuple(int(n) for n in looks)


def paired_tests(d: np.ndarray, margin: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Difference p and TOST p of paired differences ``d`` along the last axis (see the module).

    NaN where fewer than 2 differences are given; the TOST p is NaN without a margin.
    """
    d = np.asarray(d, dtype=float)
    n = d.shape[-1]
    shape = d.shape[:-1]
    if n < 2:
        return np.full(shape, np.nan), np.full(shape, np.nan)
    mean = d.mean(axis=-1)
    constant = np.all(d == d[..., :1], axis=-1)
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 t on constant rows, replaced below
        p_diff = np.asarray(stats.ttest_1samp(d, 0.0, axis=-1).pvalue, dtype=float)
        if margin is None:
            p_tost = np.full(shape, np.nan)
        else:
            above = stats.ttest_1samp(d, -margin, axis=-1, alternative="greater").pvalue
            below = stats.ttest_1samp(d, margin, axis=-1, alternative="less").pvalue
            p_tost = np.maximum(np.asarray(above, float), np.asarray(below, float))
    p_diff = np.where(constant, np.where(mean == 0, 1.0, 0.0), p_diff)
    if margin is not None:
        p_tost = np.where(constant, np.where(np.abs(mean) < margin, 0.0, 1.0), p_tost)
    return p_diff, p_tost


def look_corrected(p_by_look: np.ndarray, n_looks: int) -> np.ndarray:
    """min(1, K * running minimum over looks) along the last axis; K = ``n_looks`` (the number
    of looks the design allows, not the number read so far). NaN (no test) counts as 1."""
    p = np.where(np.isnan(p_by_look), 1.0, np.asarray(p_by_look, dtype=float))
    return np.minimum(1.0, n_looks * np.minimum.accumulate(p, axis=-1))


def holm(p: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values along the first axis (each column one family); NaN entries are
    left out of their family and stay NaN.

    The same numbers as ``statsmodels.stats.multitest.multipletests(method="holm")`` (the tests
    check it), computed here because that function runs ``gc.collect()`` on every call, about
    half a second with torch loaded, and the looks of adaptive seeds need one call per look.
    """
    p = np.asarray(p, dtype=float)
    flat = p.reshape(p.shape[0], int(np.prod(p.shape[1:])))
    out = np.full(flat.shape, np.nan)
    for j in range(flat.shape[1]):
        tested = np.flatnonzero(~np.isnan(flat[:, j]))
        order = tested[np.argsort(flat[tested, j], kind="stable")]
        m = len(order)
        steps = (m - np.arange(m)) * flat[order, j]
        out[order, j] = np.minimum(1.0, np.maximum.accumulate(steps))
    return out.reshape(p.shape)


def decide(delta: np.ndarray, p_diff: np.ndarray, p_tost: np.ndarray, alpha: float,
           better: str) -> np.ndarray:
    """The verdict word for each comparison from its (corrected) p-values (see the module)."""
    delta = np.asarray(delta, dtype=float)
    up = delta > 0 if better == "max" else delta < 0
    differs = np.nan_to_num(np.asarray(p_diff, float), nan=1.0) <= alpha
    equivalent = np.nan_to_num(np.asarray(p_tost, float), nan=1.0) <= alpha
    return np.where(equivalent, "equivalent",
                    np.where(differs, np.where(up, "better", "worse"), "undecided"))


def first_decided(verdicts_by_look: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first verdict other than undecided along the last axis, and its look index (0-based;
    the last look when none decides)."""
    v = np.asarray(verdicts_by_look)
    decided = v != "undecided"
    look = np.where(decided.any(axis=-1), decided.argmax(axis=-1), v.shape[-1] - 1)
    return np.take_along_axis(v, look[..., None], axis=-1)[..., 0], look
