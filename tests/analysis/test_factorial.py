"""Tests of ablate.analysis.factorial: effects and intervals recomputed by hand from cell and
seed means (a balanced grid with a seed block), grids told from ladders, clear refusals."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ablate.analysis.factorial import (
    factorial_effects,
    format_factorial,
    grid_factors,
    write_factorial,
)

FUSION = ["concat", "add"]
UPSAMPLE = ["bilinear", "nearest", "transpose"]
SEEDS = 4


def make_runs(levels: dict[str, list[str]], effect, seeds: int = SEEDS,
              seed: int = 0) -> pd.DataFrame:
    """One ok run per grid cell and seed: ``effect(cell)`` + a seed shift + noise."""
    rng = np.random.default_rng(seed)
    shift = rng.normal(0, 0.01, seeds)
    rows = []
    for combo in itertools.product(*levels.values()):
        cell = dict(zip(levels, combo))
        for s in range(seeds):
            rows.append(dict(variant="-".join(combo), seed=s, status="ok", pool="M",
                             dice=effect(cell) + shift[s] + rng.normal(0, 0.004), **cell))
    return pd.DataFrame(rows)


def two_way(cell: dict[str, str]) -> float:
    up = {"bilinear": 0.0, "nearest": -0.005, "transpose": -0.02}[cell["upsample"]]
    add = 0.04 if cell["fusion"] == "add" else 0.0
    both = -0.01 if (cell["fusion"], cell["upsample"]) == ("add", "transpose") else 0.0
    return 0.87 + up + add + both


def test_effects_and_intervals_match_cell_and_seed_means():
    runs = make_runs({"fusion": FUSION, "upsample": UPSAMPLE}, two_way)
    table = factorial_effects(runs, "concat-bilinear", ["fusion", "upsample"]).set_index("effect")
    y = runs.pivot_table(index=["fusion", "upsample"], columns="seed", values="dice")
    cell = y.mean(axis=1)
    # Additive fit of cell + seed on balanced data: cell mean + seed mean - grand mean.
    fitted = cell.to_numpy()[:, None] + y.mean(axis=0).to_numpy()[None, :] - y.to_numpy().mean()
    df = (len(cell) - 1) * (SEEDS - 1)
    sigma2 = ((y.to_numpy() - fitted) ** 2).sum() / df
    t = stats.t.ppf(0.975, df)

    def check(name: str, weights: dict[tuple[str, str], float]) -> None:
        estimate = sum(w * cell[c] for c, w in weights.items())
        se = math.sqrt(sigma2 * sum(w * w for w in weights.values()) / SEEDS)
        row = table.loc[name]
        assert row["estimate"] == pytest.approx(estimate, abs=1e-12)
        assert row["ci_low"] == pytest.approx(estimate - t * se, abs=1e-10)
        assert row["ci_high"] == pytest.approx(estimate + t * se, abs=1e-10)
        assert row["p_value"] == pytest.approx(2 * stats.t.sf(abs(estimate / se), df), rel=1e-8)

    third = 1 / 3
    check("fusion: add vs concat", {("add", u): third for u in UPSAMPLE}
          | {("concat", u): -third for u in UPSAMPLE})
    check("upsample: transpose vs bilinear", {("concat", "transpose"): 0.5,
                                              ("add", "transpose"): 0.5,
                                              ("concat", "bilinear"): -0.5,
                                              ("add", "bilinear"): -0.5})
    check("fusion x upsample: add (vs concat) with transpose (vs bilinear)",
          {("add", "transpose"): 1, ("concat", "transpose"): -1, ("add", "bilinear"): -1,
           ("concat", "bilinear"): 1})
    assert len(table) == 1 + 2 + 2  # one fusion, two upsample, two interaction contrasts
    assert table.loc["fusion: add vs concat", "estimate"] == pytest.approx(0.04 - 0.01 / 3,
                                                                           abs=0.005)
    assert set(table["term"]) == {"fusion", "upsample", "fusion x upsample"}
    # The interaction's F-test: the additive model's extra residual over the interaction's df.
    f_mean = y.groupby(level="fusion").mean().mean(axis=1)
    u_mean = y.groupby(level="upsample").mean().mean(axis=1)
    additive = (np.array([f_mean[f] + u_mean[u] for f, u in y.index])[:, None]
                + y.mean(axis=0).to_numpy()[None, :] - 2 * y.to_numpy().mean())
    extra = ((y.to_numpy() - additive) ** 2).sum() - sigma2 * df
    f_stat = extra / (1 * 2) / sigma2
    assert table["term_p"].iloc[-1] == pytest.approx(stats.f.sf(f_stat, 2, df), rel=1e-8)


def test_three_knobs_main_effects_are_the_marginal_differences():
    levels = {"fusion": FUSION, "upsample": ["bilinear", "nearest"], "block": ["conv", "dsconv"]}
    runs = make_runs(levels, lambda c: 0.8 + 0.03 * (c["fusion"] == "add")
                     - 0.01 * (c["block"] == "dsconv"), seed=3)
    table = factorial_effects(runs, "concat-bilinear-conv", list(levels)).set_index("effect")
    for knob, a, a0 in (("fusion", "add", "concat"), ("block", "dsconv", "conv")):
        marginal = runs.groupby(knob)["dice"].mean()
        assert table.loc[f"{knob}: {a} vs {a0}", "estimate"] == pytest.approx(
            marginal[a] - marginal[a0], abs=1e-12)
    assert len(table) == 3 + 3  # three main effects, three pairs of two-level knobs


def test_grids_are_told_from_ladders():
    grid = make_runs({"fusion": FUSION, "upsample": UPSAMPLE}, two_way)
    assert grid_factors(grid) == ["fusion", "upsample"]
    ladder = grid[grid["variant"].isin(["concat-bilinear", "add-bilinear", "add-nearest"])]
    assert grid_factors(ladder) == []  # 3 of the 4 cells of fusion x {bilinear, nearest}
    one_knob = grid[grid["upsample"] == "bilinear"]
    assert grid_factors(one_knob) == []


def test_refusals_name_what_is_wrong():
    runs = make_runs({"fusion": FUSION, "upsample": UPSAMPLE}, two_way)
    with pytest.raises(ValueError, match="no residual degree of freedom.*at least 2 seeds"):
        factorial_effects(runs[runs["seed"] == 0], "concat-bilinear", ["fusion", "upsample"])
    failed_cell = runs.assign(status=np.where(runs["variant"] == "add-nearest", "failed", "ok"))
    with pytest.raises(ValueError, match="cover 5 of the grid's 6 cells"):
        factorial_effects(failed_cell, "concat-bilinear", ["fusion", "upsample"])
    with pytest.raises(ValueError, match=r"factors=\['fusion'\] is not allowed"):
        factorial_effects(runs, "concat-bilinear", ["fusion"])
    with pytest.raises(ValueError, match="baseline='x'"):
        factorial_effects(runs, "x", ["fusion", "upsample"])


def test_tables_in_three_formats(tmp_path):
    runs = make_runs({"fusion": FUSION, "upsample": UPSAMPLE}, two_way)
    table = factorial_effects(runs, "concat-bilinear", ["fusion", "upsample"])
    paths = write_factorial(table, tmp_path)
    assert [p.name for p in paths] == ["factorial.md", "factorial.csv", "factorial.tex"]
    md = paths[0].read_text(encoding="utf-8")
    assert "fusion: add vs concat" in md and "seed as a block" in md and "5 contrasts" in md
    tex = paths[2].read_text(encoding="utf-8")
    assert tex.startswith(r"\begin{tabular}") and "95\\%" in tex
    back = pd.read_csv(paths[1])
    np.testing.assert_allclose(back["estimate"], table["estimate"], rtol=1e-15)
    with pytest.raises(ValueError, match="fmt='html'"):
        format_factorial(table, "html")
