"""Tests of ablate.tables: every statistic is recomputed here by an independent route."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ablate.analysis.stats import pairwise_tests, summarize
from ablate.analysis.tables import FORMATS, format_summary, write_tables

T_975_DF2 = 4.302653  # t quantile for a two-sided 95% interval with 2 degrees of freedom
DEFINITION = "Dice = 2TP/(2TP+FP+FN) over all validation pixels (micro)"


def make_runs(dice: dict[str, list[float | None]], gmacs: dict[str, float] | None = None,
              params: dict[str, float] | None = None, metric: str = "dice") -> pd.DataFrame:
    """A runs table with every schema column: one row per (variant, seed); None = failed run."""
    rows = []
    for i, (variant, values) in enumerate(dice.items()):
        for seed, value in enumerate(values):
            ok = value is not None
            row = dict(
                experiment="unit", variant=variant, seed=seed, status="ok" if ok else "failed",
                error="" if ok else "CUDA out of memory", encoder="r18", pool="MAA",
                widths="128,64,32,32", skips="e2,e3", fusion="cat", block="ds",
                upsample="bil", pretrained="", dataset="toy", image_size=224, epochs=15,
                preset="tiny", loss="dice", dice=np.nan, iou=np.nan, pixel_acc=np.nan,
                boundary_iou=np.nan, dice_per_image=np.nan, val_loss=np.nan,
                params=int(round((params or {}).get(variant, 22.5 + i) * 1e6)),
                params_m=(params or {}).get(variant, 22.5 + i),
                macs_exact=int((gmacs or {}).get(variant, 3.8 - 0.1 * i) * 1e9),
                gmacs_thop=(gmacs or {}).get(variant, 3.8 - 0.1 * i),
                gmacs_fvcore=np.nan, gflops_torch=np.nan, train_time_s=10.0,
                train_images_per_s=100.0, latency_ms=5.0, peak_mem_mb=500.0, device="cpu",
                torch="2.5.0", git_commit="abc1234", metric_definition=DEFINITION,
                counter_units="GMACs = 1e9 multiply-accumulates (thop), 1x3x224x224")
            if ok:
                row[metric] = value
            rows.append(row)
    return pd.DataFrame(rows)


def row(summary: pd.DataFrame, variant: str) -> pd.Series:
    return summary.set_index("variant").loc[variant]


def sd(x: list[float]) -> float:
    m = sum(x) / len(x)
    return math.sqrt(sum((v - m) ** 2 for v in x) / (len(x) - 1))


def p_two_sided_df2(t: float) -> float:
    """Closed form of the two-sided p of Student's t with 2 df: 1 - |t| / sqrt(2 + t^2)."""
    return 1 - abs(t) / math.sqrt(2 + t * t)


BASE = [0.90, 0.91, 0.93]
A = [0.92, 0.94, 0.95]
C = [0.905, 0.90, 0.94]
D = [0.88, 0.905, 0.92]


def test_mean_sd_and_ci_match_hand_computation():
    s = summarize(make_runs({"base": BASE, "A": A}), "base")
    for name, x in (("base", BASE), ("A", A)):
        mean = sum(x) / 3
        half = T_975_DF2 * sd(x) / math.sqrt(3)
        r = row(s, name)
        assert r["n_seeds"] == 3 and r["n_failed"] == 0
        assert r["dice_mean"] == pytest.approx(mean, abs=1e-12)
        assert r["dice_std"] == pytest.approx(sd(x), abs=1e-12)
        assert r["ci_low"] == pytest.approx(mean - half, abs=1e-8)
        assert r["ci_high"] == pytest.approx(mean + half, abs=1e-8)


def test_paired_delta_interval_and_p_match_hand_computation():
    s = summarize(make_runs({"base": BASE, "A": A}), "base")
    d = [a - b for a, b in zip(A, BASE)]
    mean_d = sum(d) / 3
    t = mean_d / (sd(d) / math.sqrt(3))
    r = row(s, "A")
    assert r["n_paired"] == 3
    assert r["delta"] == pytest.approx(mean_d, abs=1e-12)
    assert r["delta_ci_low"] == pytest.approx(mean_d - T_975_DF2 * sd(d) / math.sqrt(3), abs=1e-8)
    assert r["delta_ci_high"] == pytest.approx(mean_d + T_975_DF2 * sd(d) / math.sqrt(3), abs=1e-8)
    assert r["p_value"] == pytest.approx(p_two_sided_df2(t), rel=1e-9)
    assert r["p_holm"] == pytest.approx(r["p_value"], rel=1e-12)  # a family of one
    b = row(s, "base")
    assert bool(b["is_baseline"]) and b["significant"] == "baseline"
    assert np.isnan(b["p_value"]) and np.isnan(b["p_holm"]) and np.isnan(b["delta"])


def test_holm_matches_hand_applied_procedure():
    s = summarize(make_runs({"base": BASE, "A": A, "C": C, "D": D}), "base")
    raw = {}
    for name, x in (("A", A), ("C", C), ("D", D)):
        d = [a - b for a, b in zip(x, BASE)]
        raw[name] = p_two_sided_df2((sum(d) / 3) / (sd(d) / math.sqrt(3)))
    order = sorted(raw, key=raw.get)
    holm, running = {}, 0.0
    for k, name in enumerate(order):
        running = max(running, (3 - k) * raw[name])
        holm[name] = min(1.0, running)
    for name in raw:
        r = row(s, name)
        assert r["p_value"] == pytest.approx(raw[name], rel=1e-9)
        assert r["p_holm"] == pytest.approx(holm[name], rel=1e-9)
        assert r["significant"] == ("yes" if holm[name] <= 0.05 else "no")
    assert len(set(holm.values())) > 1  # the correction was not trivially 1 everywhere


def test_failed_runs_are_excluded_from_statistics_but_counted():
    runs = make_runs({"base": [0.90, 0.91, 0.93, 0.92], "A": [0.92, None, 0.95, 0.93]})
    runs.loc[(runs["variant"] == "base") & (runs["seed"] == 3), "dice"] = np.nan  # ok, no value
    s = summarize(runs, "base")
    a, b = row(s, "A"), row(s, "base")
    assert (a["n_seeds"], a["n_failed"]) == (3, 1)
    assert (b["n_seeds"], b["n_failed"]) == (3, 1)
    assert a["dice_mean"] == pytest.approx((0.92 + 0.95 + 0.93) / 3, abs=1e-12)
    assert a["n_paired"] == 2  # seeds 0 and 2: the only ones both completed
    assert a["delta"] == pytest.approx(((0.92 - 0.90) + (0.95 - 0.93)) / 2, abs=1e-12)


def test_small_noisy_difference_is_not_significant_and_large_consistent_one_is():
    base = [0.900, 0.915, 0.905, 0.920, 0.910]
    small = [b + e for b, e in zip(base, [0.012, -0.010, 0.008, -0.006, 0.006])]
    large = [b + e for b, e in zip(base, [0.030, 0.031, 0.029, 0.030, 0.032])]
    s = summarize(make_runs({"base": base, "small": small, "large": large}), "base")
    assert row(s, "small")["delta"] == pytest.approx(0.002, abs=1e-12)
    assert row(s, "small")["significant"] == "no"
    assert row(s, "large")["significant"] == "yes"
    assert row(s, "small")["rank"] == row(s, "base")["rank"] == 2
    assert row(s, "large")["rank"] == 1


def test_one_seed_per_variant_cannot_be_ranked_apart():
    # The experiment log's pooling table: one run each, 0.002 Dice apart.
    s = summarize(make_runs({"before": [0.9084], "MAM": [0.9077], "MAA": [0.9104],
                             "AAM": [0.9016]}), "before")
    others = s[~s["is_baseline"]]
    assert (others["significant"] == "n/a (1 shared seed)").all()
    assert others["p_value"].isna().all() and s["ci_low"].isna().all()
    assert s["dice_std"].isna().all()
    assert (s["rank"] == 1).all() and s["best"].all()
    assert (others["verdict"] == "undecided").all()
    assert "undecided (1 shared seed: no test)" in format_summary(s)
    # Nothing can be dominated with confidence: off the front of the means is only possible.
    assert set(s["pareto_gmacs"]) <= {"optimal", "possibly optimal"}


def test_ties_share_a_rank_and_best_marks_the_inseparable():
    base = [0.90, 0.91, 0.92, 0.905, 0.915]
    tie = [b + e for b, e in zip(base, [0.001, -0.001, 0.002, -0.002, 0.0005])]
    worse = [b - e for b, e in zip(base, [0.050, 0.051, 0.049, 0.052, 0.050])]
    s = summarize(make_runs({"base": base, "tie": tie, "worse": worse}), "base")
    assert list(s["rank"]) == [1, 1, 3]
    assert list(s["best"]) == [True, True, False]


def test_rank_counts_only_significant_wins():
    mid = [0.90, 0.91, 0.92, 0.905, 0.915, 0.895]
    top = [m + e for m, e in zip(mid, [0.010, 0.0102, 0.0099, 0.0101, 0.0098, 0.0100])]
    base = [m + e for m, e in zip(mid, [0.015, -0.006, 0.018, -0.004, 0.012, -0.005])]
    runs = make_runs({"base": base, "mid": mid, "top": top})
    pairs = pairwise_tests(runs).set_index(["a", "b"])
    assert pairs.loc[("mid", "top"), "winner"] == "top"
    assert pairs.loc[("base", "mid"), "winner"] == pairs.loc[("base", "top"), "winner"] == ""
    s = summarize(runs, "base")
    assert dict(zip(s["variant"], s["rank"])) == {"base": 1, "mid": 2, "top": 1}
    assert dict(zip(s["variant"], s["best"])) == {"base": True, "mid": False, "top": True}


def test_zero_variance_differences_are_handled_explicitly():
    base = [0.5, 0.75, 0.625]  # binary fractions: the shifted copy has an exactly constant gap
    s = summarize(make_runs({"base": base, "same": list(base),
                             "shift": [b + 0.125 for b in base]}), "base")
    same, shift = row(s, "same"), row(s, "shift")
    assert same["p_value"] == 1.0 and same["significant"] == "no"
    assert (same["delta_ci_low"], same["delta_ci_high"]) == (0.0, 0.0)
    assert "identical" in same["note"]
    assert shift["p_value"] == 0.0 and shift["significant"] == "yes"
    assert (shift["delta_ci_low"], shift["delta_ci_high"]) == (0.125, 0.125)
    assert "constant" in shift["note"]
    assert "†" in format_summary(s, "markdown")


def test_constant_runs_have_a_degenerate_interval_not_nan():
    s = summarize(make_runs({"base": [0.8, 0.8, 0.8], "A": [0.7, 0.9, 0.8]}), "base")
    b = row(s, "base")
    assert b["ci_low"] == b["ci_high"] == b["dice_mean"] == pytest.approx(0.8, abs=1e-12)


def test_complexity_columns_and_deltas():
    runs = make_runs({"base": BASE, "A": A}, gmacs={"base": 7.924, "A": 7.474},
                     params={"base": 22.738, "A": 22.511})
    a = row(summarize(runs, "base"), "A")
    assert a["gmacs_thop"] == pytest.approx(7.474)
    assert a["gmacs_delta"] == pytest.approx(7.474 - 7.924)
    assert a["params_delta"] == pytest.approx(22.511 - 22.738)
    runs.loc[runs.index[-1], "gmacs_thop"] = 9.0
    with pytest.raises(ValueError, match="'A' has different gmacs_thop"):
        summarize(runs, "base")


def test_a_baseline_alone_is_summarized_without_comparisons():
    s = summarize(make_runs({"base": BASE}), "base", margin=0.01, looks=(2, 3))
    assert list(s["verdict"]) == ["baseline"] and s["p_value"].isna().all()
    assert list(s["pareto_gmacs"]) == ["optimal"]


def test_order_is_baseline_first_then_first_appearance():
    s = summarize(make_runs({"z": A, "base": BASE, "a": C}), "base")
    assert list(s["variant"]) == ["base", "z", "a"]


def test_lower_is_better_metric_flips_the_direction():
    runs = make_runs({"base": [0.30, 0.31, 0.29, 0.30], "A": [0.20, 0.22, 0.19, 0.21]},
                     metric="val_loss")
    s = summarize(runs, "base", metric="val_loss")
    assert "val_loss_mean" in s.columns
    assert dict(zip(s["variant"], s["rank"])) == {"base": 2, "A": 1}
    assert dict(zip(s["variant"], s["best"])) == {"base": False, "A": True}


def test_bad_inputs_raise_naming_the_value_and_the_allowed_ones():
    runs = make_runs({"base": BASE, "A": A})
    with pytest.raises(ValueError, match=r"baseline='nope'.*allowed: base, A"):
        summarize(runs, "nope")
    with pytest.raises(ValueError, match=r"metric='f1'.*allowed: dice, iou"):
        summarize(runs, "base", metric="f1")
    with pytest.raises(ValueError, match=r"alpha=1.5"):
        summarize(runs, "base", alpha=1.5)
    with pytest.raises(ValueError, match=r"fmt='html'.*allowed: markdown, latex, csv"):
        format_summary(summarize(runs, "base"), "html")
    bad = runs.copy()
    bad.loc[0, "status"] = "skipped"  # a search trial's status, never a run's
    with pytest.raises(ValueError, match=r"'skipped'.*allowed: ok, failed, pruned"):
        summarize(bad, "base")
    with pytest.raises(ValueError, match="several ok runs for A seed 0"):
        summarize(pd.concat([runs, runs[runs["variant"] == "A"].head(1)]), "base")
    failed_base = make_runs({"base": [None, None], "A": [0.9, 0.91]})
    with pytest.raises(ValueError, match="baseline='base' has no ok run"):
        summarize(failed_base, "base")
    with pytest.raises(ValueError, match="lacks column.*dice"):
        summarize(runs.drop(columns="dice"), "base")


def test_markdown_marks_best_rows_and_states_conventions():
    base = [0.90, 0.91, 0.92, 0.905, 0.915]
    tie = [b + e for b, e in zip(base, [0.001, -0.001, 0.002, -0.002, 0.0005])]
    worse = [b - e for b, e in zip(base, [0.050, 0.051, 0.049, 0.052, 0.050])]
    s = summarize(make_runs({"base": base, "tie": tie, "worse": worse}), "base")
    text = format_summary(s, "markdown")
    lines = text.splitlines()
    header = lines[0]
    for column in ("Variant", "GMACs (thop)", "Params (M)", "Dice mean ± sd", "95% CI",
                   "Δ vs baseline [CI]", "p (Holm)", "Verdict", "Rank", "Pareto (GMACs)",
                   "Pareto (latency)"):
        assert column in header
    by_variant = {name: next(line for line in lines if f" {name}" in line or f"**{name}" in line)
                  for name in ("tie", "worse")}
    assert "★ **tie**" in by_variant["tie"]
    assert f"**{row(s, 'tie')['dice_mean']:.4f} ± {row(s, 'tie')['dice_std']:.4f}**" in text
    assert "★" not in by_variant["worse"] and "**" not in by_variant["worse"]
    assert f"{row(s, 'worse')['dice_mean']:.4f}" in by_variant["worse"]
    assert "★ **base (baseline)**" in text
    assert "GMACs = 1e9 multiply-accumulates counted by thop at input size 224x224" in text
    assert DEFINITION in text and "Holm" in text


def test_latex_is_a_tabular_with_escaped_ids_and_bold_best_rows():
    s = summarize(make_runs({"base_x": BASE, "A": A}), "base_x")
    tex = format_summary(s, "latex")
    assert tex.startswith(r"\begin{tabular}") and r"\end{tabular}" in tex
    assert r"\textbf{" in tex and r"base\_x" in tex and "base_x" not in tex
    assert tex.count("{") == tex.count("}")
    body = tex.split(r"\end{tabular}")[0]
    rows = [line for line in body.splitlines() if line.rstrip().endswith(r"\\")]
    assert len(rows) == 3 and all(r.count("&") == 12 for r in rows)


def test_csv_round_trips_at_full_precision(tmp_path):
    s = summarize(make_runs({"base": BASE, "A": A, "C": C}), "base")
    paths = write_tables(s, tmp_path / "out")
    assert [p.name for p in paths] == ["summary.md", "summary.csv", "summary.tex"]
    assert all(p.stat().st_size > 0 for p in paths)
    back = pd.read_csv(paths[1])
    assert list(back.columns) == list(s.columns)
    for column in ("dice_mean", "dice_std", "ci_low", "delta", "p_value", "p_holm"):
        np.testing.assert_allclose(back[column], s[column], rtol=1e-15, equal_nan=True)
    assert paths[0].read_text(encoding="utf-8") == format_summary(s, "markdown")
    assert set(FORMATS) == {"markdown", "latex", "csv"}
