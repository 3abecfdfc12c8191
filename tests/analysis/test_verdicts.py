"""Tests of ablate.analysis.verdicts: each test against an independent computation, and the
look-corrected sequential method's error rates and savings by simulation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import ttost_paired

from ablate.analysis.stats import verdicts
from ablate.analysis.verdicts import (
    check_looks,
    check_margin,
    decide,
    first_decided,
    holm,
    look_corrected,
    paired_tests,
)

LOOKS = tuple(range(3, 11))  # seeds: {min: 3, max: 10}
ALPHA = 0.05


def test_difference_and_tost_p_match_scipy_statsmodels_and_the_t_formula():
    base = np.array([0.90, 0.91, 0.93, 0.92, 0.915])
    variant = base + np.array([0.004, -0.002, 0.003, 0.001, 0.0])
    d = variant - base
    p_diff, p_tost = paired_tests(d, margin=0.01)
    assert p_diff == pytest.approx(stats.ttest_rel(variant, base).pvalue, rel=1e-12)
    p_sm, _, _ = ttost_paired(variant, base, -0.01, 0.01)
    assert p_tost == pytest.approx(p_sm, rel=1e-10)
    se = d.std(ddof=1) / math.sqrt(len(d))
    by_hand = max(stats.t.sf((d.mean() + 0.01) / se, len(d) - 1),
                  stats.t.cdf((d.mean() - 0.01) / se, len(d) - 1))
    assert p_tost == pytest.approx(by_hand, rel=1e-10)
    assert np.isnan(paired_tests(d)[1])  # no margin, no TOST
    assert all(np.isnan(paired_tests(d[:1], 0.01)))  # one difference: no test


def test_tests_are_vectorised_over_leading_axes():
    rng = np.random.default_rng(0)
    d = rng.normal(0.002, 0.01, (4, 6))
    p_diff, p_tost = paired_tests(d, 0.01)
    for i in range(4):
        one = paired_tests(d[i], 0.01)
        assert p_diff[i] == pytest.approx(float(one[0]), rel=1e-12)
        assert p_tost[i] == pytest.approx(float(one[1]), rel=1e-12)


def test_zero_variance_rule():
    assert paired_tests(np.zeros(3), 0.01) == (1.0, 0.0)         # identical: inside any margin
    assert paired_tests(np.full(3, 0.125), 0.25) == (0.0, 0.0)   # constant, inside the margin
    assert paired_tests(np.full(3, 0.5), 0.25) == (0.0, 1.0)     # constant, outside it


def test_look_correction_is_k_times_the_running_minimum():
    p = np.array([[0.2, 0.004, 0.3, np.nan]])
    assert look_corrected(p, 8).tolist() == [[1.0, 0.032, 0.032, 0.032]]
    assert look_corrected(np.array([0.03]), 1).tolist() == [0.03]


@pytest.mark.slow
def test_holm_matches_statsmodels_column_by_column_leaving_nan_out():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 0.1, (5, 3))
    p[1, 0] = p[3, 2] = np.nan
    p[4, 1] = p[2, 1]  # a tie
    adjusted = holm(p)
    for j in range(3):
        tested = ~np.isnan(p[:, j])
        expected = multipletests(p[tested, j], method="holm")[1]
        np.testing.assert_allclose(adjusted[tested, j], expected, rtol=1e-12)
        assert np.isnan(adjusted[~tested, j]).all()
    assert holm(np.array([0.01, np.nan, 0.04])).tolist()[::2] == [0.02, 0.04]
    assert holm(np.array([])).shape == (0,) and holm(np.zeros((0, 3))).shape == (0, 3)


def test_verdict_words_directions_and_precedence():
    delta = np.array([0.02, -0.02, 0.001, 0.001, 0.004])
    p_diff = np.array([0.01, 0.01, 0.9, 0.9, 0.01])
    p_tost = np.array([0.9, 0.9, 0.01, 0.2, 0.01])
    assert decide(delta, p_diff, p_tost, ALPHA, "max").tolist() == [
        "better", "worse", "equivalent", "undecided", "equivalent"]
    assert decide(delta, p_diff, p_tost, ALPHA, "min").tolist()[:2] == ["worse", "better"]
    v = np.array([["undecided", "better", "better"], ["undecided"] * 3])
    verdict, look = first_decided(v)
    assert verdict.tolist() == ["better", "undecided"] and look.tolist() == [1, 2]


def test_bad_margins_and_looks_are_refused():
    assert check_margin(None) is None and check_margin(0.01) == 0.01
    for bad in (0, -0.1, math.nan, True, "0.01"):
        with pytest.raises(ValueError, match="margin of dice=.*allowed: a number > 0"):
            check_margin(bad, "dice")
    for bad in ((), (1, 2), (3, 3), (4, 3)):
        with pytest.raises(ValueError, match="allowed: increasing seed counts >= 2"):
            check_looks(bad)


def simulate(effect: float, margin: float | None, studies: int, seed: int):
    """Studies of one comparison read at ``LOOKS`` as adaptive seeds reads them: the verdict
    and the seeds each used. Runs share a seed effect (paired), noise sd 1 per run."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(0, 1, (studies, LOOKS[-1]))
    base = shared + rng.normal(0, 1, shared.shape)
    variant = shared + effect + rng.normal(0, 1, shared.shape)
    d = variant - base
    tests = [paired_tests(d[:, :n], margin) for n in LOOKS]
    p_diff = look_corrected(np.stack([t[0] for t in tests], -1), len(LOOKS))
    p_tost = look_corrected(np.stack([t[1] for t in tests], -1), len(LOOKS))
    delta = np.stack([d[:, :n].mean(-1) for n in LOOKS], -1)
    verdict, look = first_decided(decide(delta, p_diff, p_tost, ALPHA, "max"))
    return verdict, np.asarray(LOOKS)[look]


def bound(rate: float, studies: int) -> float:
    """``rate`` plus three simulation standard errors."""
    return rate + 3 * math.sqrt(rate * (1 - rate) / studies)


def test_aa_false_positive_rate_stays_at_or_below_alpha():
    studies = 4000
    for margin in (None, 1.0):
        verdict, _ = simulate(0.0, margin, studies, seed=14)
        false = np.isin(verdict, ["better", "worse"]).mean()
        assert false <= bound(ALPHA, studies), (margin, false)
    # Without the correction the same looks are far above alpha: the simulation can fail.
    rng = np.random.default_rng(15)
    d = rng.normal(0, 1, (studies, LOOKS[-1]))
    naive = np.stack([paired_tests(d[:, :n])[0] for n in LOOKS], -1).min(-1) <= ALPHA
    assert naive.mean() > 2 * ALPHA


def test_equivalence_is_claimed_at_most_alpha_when_the_difference_is_the_margin():
    studies = 4000
    margin = 1.0
    verdict, _ = simulate(margin, margin, studies, seed=16)
    assert (verdict == "equivalent").mean() <= bound(ALPHA, studies)


def test_a_real_effect_is_decided_with_fewer_runs_than_always_running_max():
    studies = 4000
    verdict, seeds = simulate(2.0, None, studies, seed=17)  # 1.4 sd of the paired difference
    assert (verdict == "better").mean() > 0.8 and (verdict == "worse").mean() == 0
    assert seeds.mean() < 0.8 * LOOKS[-1]  # about 7.3 of 10 seeds: a quarter of the runs saved
    verdict, seeds = simulate(3.0, None, studies, seed=18)
    assert (verdict == "better").mean() > 0.99 and seeds.mean() < 0.6 * LOOKS[-1]
    verdict, seeds = simulate(0.0, 2.0, studies, seed=19)  # no difference, margin 1.4 sd
    assert (verdict == "equivalent").mean() > 0.75 and seeds.mean() < 0.8 * LOOKS[-1]


def test_the_runs_table_path_reaches_the_simulations_verdicts():
    """``verdicts`` (what reports and ``planned_runs`` use) decides as the simulation does."""
    rng = np.random.default_rng(20)
    for effect in (0.0, 0.5, 2.0, 4.0):
        shared = rng.normal(0, 1, LOOKS[-1])
        base = shared + rng.normal(0, 1, LOOKS[-1])
        variant = shared + effect + rng.normal(0, 1, LOOKS[-1])
        runs = pd.DataFrame([dict(variant=v, seed=s, status="ok", dice=float(x))
                             for v, xs in (("base", base), ("var", variant))
                             for s, x in enumerate(xs)])
        row = verdicts(runs, "base", margin=1.0, looks=LOOKS).iloc[0]
        d = (variant - base)[None, :]
        tests = [paired_tests(d[:, :n], 1.0) for n in LOOKS]
        p_diff = look_corrected(np.stack([t[0] for t in tests], -1), len(LOOKS))
        p_tost = look_corrected(np.stack([t[1] for t in tests], -1), len(LOOKS))
        delta = np.stack([d[:, :n].mean(-1) for n in LOOKS], -1)
        verdict, look = first_decided(decide(delta, p_diff, p_tost, ALPHA, "max"))
        assert (row["verdict"], row["n_looks"]) == (verdict[0], look[0] + 1)
        assert row["p_value"] == pytest.approx(p_diff[0, -1], rel=1e-12)
