"""Statistics of an ablation: a summary over seeds, paired tests, an honest rank.

One row per variant, computed from the runs table (one row per (variant, seed) run). With the
default ``alpha=0.05`` every interval below is a 95% interval.

- **Runs.** A run counts when its ``status`` is ``"ok"`` and its metric is a number. Every other
  run of the variant is counted in ``n_failed`` and left out of all statistics; ``n_seeds`` is
  the number of runs that count.
- **Mean, sd.** ``<metric>_mean`` is the mean over seeds, ``<metric>_std`` the sample standard
  deviation (ddof=1; NaN with one seed).
- **CI.** ``ci_low``/``ci_high`` is the t-interval of the mean over seeds,
  mean ± t(1-alpha/2, n-1) · sd/sqrt(n) (``scipy.stats.t.interval``); NaN with one seed, and
  the mean itself when sd is 0.
- **Delta.** Seeds are paired: a variant's run with seed k is compared with the baseline's run
  with seed k, over the ``n_paired`` seeds both completed. ``delta`` is the mean of the paired
  differences (variant - baseline); ``delta_ci_low``/``delta_ci_high`` its t-interval.
- **p.** ``p_value`` is the two-sided paired t-test over the same seeds
  (``scipy.stats.ttest_rel``); NaN with fewer than 2 paired seeds and for the baseline.
  ``p_holm`` applies Holm's correction across the non-baseline variants that have a p-value
  (``statsmodels.stats.multitest.multipletests(method="holm")``).
- **Significant.** ``"yes"`` when Holm rejects "no difference" at ``alpha`` (``p_holm`` <=
  ``alpha``), ``"no"`` otherwise, ``"n/a (k shared seeds)"`` with fewer than 2 paired seeds,
  ``"baseline"`` for the baseline.
- **Zero variance.** When all paired differences are equal the t statistic is 0/0 or ±inf and
  ``ttest_rel`` gives no usable p. Identical results on every seed give p = 1 and an interval
  [0, 0] (not significant). A constant non-zero difference d gives p = 0 and an interval [d, d]
  (significant): the limit of the test as the spread of the differences shrinks to zero. The
  ``note`` column flags both; a constant difference usually means the seed did not change the
  runs, so check that seeds are really varied before trusting it. Pairwise tests use the same
  rule.
- **Rank.** Every pair of variants is compared with the same paired t-test over the seeds both
  completed, Holm-corrected across all pairs tested. A is significantly better than B when Holm
  rejects and A's mean paired difference points the better way (higher, or lower for
  ``val_loss``). ``rank`` = 1 + the number of variants significantly better than this one, so
  variants that the data cannot separate share a rank. A pair with fewer than 2 shared seeds is
  not tested, so with one seed per variant every variant has rank 1. Variants without a counted
  run have no rank.
- **Best.** ``best`` is True for the variant with the best mean and every variant not
  significantly worse than it in the pairwise tests.
- **Complexity.** ``gmacs_thop`` (1e9 multiply-accumulates counted by thop at the runs' input
  size; GFLOPs = 2 x GMACs) and ``params_m`` (millions) are properties of the architecture and
  must agree across a variant's runs; ``gmacs_delta`` and ``params_delta`` are variant - baseline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from ..convergence import is_converged
from ..metrics import METRICS

STATUSES = ("ok", "failed")


def _counted(runs: pd.DataFrame, metric: str) -> pd.Series:
    """Mask of the runs that enter the statistics: status ok and a finite metric."""
    values = pd.to_numeric(runs[metric], errors="coerce")
    return (runs["status"] == "ok") & np.isfinite(values.astype(float))


def _validate(runs: pd.DataFrame, metric: str, alpha: float) -> None:
    """Refuse a runs table the statistics cannot be computed from, naming what is wrong."""
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not allowed; allowed: {', '.join(METRICS.names())}")
    missing = [c for c in ("variant", "seed", "status", metric) if c not in runs.columns]
    if missing:
        raise ValueError(f"the runs table lacks column(s) {', '.join(missing)}; "
                         f"columns present: {', '.join(map(str, runs.columns))}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r} is not allowed; allowed: 0 < alpha < 1")
    bad = sorted(set(runs["status"]) - set(STATUSES), key=str)
    if bad:
        raise ValueError(f"status value(s) {', '.join(map(repr, bad))} are not allowed; "
                         f"allowed: {', '.join(STATUSES)}")
    counted = runs[_counted(runs, metric)]
    dup = counted[counted.duplicated(["variant", "seed"], keep=False)]
    if len(dup):
        pairs = sorted({f"{v} seed {s}" for v, s in zip(dup["variant"], dup["seed"])})
        raise ValueError(f"several ok runs for {', '.join(pairs)}; pairing needs one per seed")


def _by_seed(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Counted metric values as a seeds x variants table (NaN where a run does not count)."""
    counted = runs[_counted(runs, metric)]
    table = counted.pivot(index="seed", columns="variant", values=metric).astype(float)
    return table.reindex(columns=pd.unique(runs["variant"]))


def _mean_ci(x: np.ndarray, alpha: float) -> tuple[float, float]:
    """t-interval of the mean of ``x``; NaN with fewer than 2 values, the mean when sd is 0."""
    if len(x) < 2:
        return np.nan, np.nan
    mean = float(np.mean(x))
    if np.all(x == x[0]):
        return mean, mean
    low, high = stats.t.interval(1 - alpha, len(x) - 1, loc=mean, scale=stats.sem(x))
    return float(low), float(high)


def _paired(x: pd.Series, y: pd.Series, alpha: float) -> dict:
    """Paired comparison of x - y over the seeds where both have a value (see module docs)."""
    shared = x.notna() & y.notna()
    a, b = x[shared].to_numpy(float), y[shared].to_numpy(float)
    d = a - b
    out = {"n_paired": len(d), "delta": float(d.mean()) if len(d) else np.nan,
           "delta_ci_low": np.nan, "delta_ci_high": np.nan, "p_value": np.nan, "note": ""}
    if len(d) < 2:
        return out
    if np.all(d == d[0]):
        identical = d[0] == 0
        out.update(delta_ci_low=d[0], delta_ci_high=d[0], p_value=1.0 if identical else 0.0,
                   note="identical on every seed: p set to 1" if identical
                   else "constant difference on every seed: p set to 0")
        return out
    test = stats.ttest_rel(a, b)
    ci = test.confidence_interval(confidence_level=1 - alpha)
    out.update(delta_ci_low=float(ci.low), delta_ci_high=float(ci.high),
               p_value=float(test.pvalue))
    return out


def _holm(p: pd.Series, alpha: float) -> tuple[pd.Series, pd.Series]:
    """Holm-corrected p-values and rejections for the finite entries of ``p`` (NaN elsewhere)."""
    p_holm = pd.Series(np.nan, index=p.index)
    reject = pd.Series(False, index=p.index)
    tested = p.notna()
    if tested.any():
        rej, corrected, _, _ = multipletests(p[tested].to_numpy(float), alpha=alpha,
                                             method="holm")
        p_holm[tested] = corrected
        reject[tested] = rej
    return p_holm, reject


def pairwise_tests(runs: pd.DataFrame, metric: str = "dice", alpha: float = 0.05) -> pd.DataFrame:
    """Paired t-tests between every pair of variants, Holm-corrected across all pairs tested.

    One row per pair (``a``, ``b``) in first-appearance order: ``n_paired`` shared seeds,
    ``delta`` = mean of a - b with its interval, ``p_value``, ``p_holm``, ``note``, and
    ``winner``: the significantly better variant, or ``""``. The basis of ``rank`` and ``best``.
    """
    runs = runs.reset_index(drop=True)
    _validate(runs, metric, alpha)
    table = _by_seed(runs, metric)
    names = list(table.columns)
    rows = [{"a": a, "b": b, **_paired(table[a], table[b], alpha)}
            for i, a in enumerate(names) for b in names[i + 1:]]
    pairs = pd.DataFrame(rows, columns=["a", "b", "n_paired", "delta", "delta_ci_low",
                                        "delta_ci_high", "p_value", "note"])
    pairs["p_holm"], reject = _holm(pairs["p_value"], alpha)
    a_better = pairs["delta"] > 0 if METRICS.get(metric).better == "max" else pairs["delta"] < 0
    pairs["winner"] = np.where(reject, np.where(a_better, pairs["a"], pairs["b"]), "")
    return pairs


def _architecture_value(group: pd.DataFrame, column: str) -> float:
    """The one value of a complexity column over a variant's runs (NaN when absent)."""
    if column not in group.columns:
        return np.nan
    values = pd.to_numeric(group[column], errors="coerce").dropna().unique()
    if len(values) > 1 and not np.allclose(values, values[0], rtol=1e-9, atol=0):
        raise ValueError(f"variant {group['variant'].iloc[0]!r} has different {column} values "
                         f"across runs ({', '.join(map(str, values))}); expected one")
    return float(values[0]) if len(values) else np.nan


def _texts(runs: pd.DataFrame, column: str) -> str:
    """The distinct non-empty values of a text column, joined by '; '."""
    if column not in runs.columns:
        return ""
    values = runs[column].dropna().astype(str).str.strip()
    return "; ".join(v for v in pd.unique(values) if v)


def _n_converged(runs: pd.DataFrame) -> float:
    """How many of ``runs`` met the convergence criterion; NaN when the table does not say."""
    if "converged" not in runs.columns:
        return np.nan
    return float(sum(is_converged(v) for v in runs["converged"]))


def unconverged(summary: pd.DataFrame) -> list[str]:
    """``"<variant> (k of n runs)"`` for each variant with a counted run that did not converge."""
    if "n_converged" not in summary.columns:
        return []
    out = []
    for r in summary.itertuples(index=False):
        if pd.notna(r.n_converged) and r.n_converged < r.n_seeds:
            out.append(f"{r.variant} ({r.n_seeds - int(r.n_converged)} of {r.n_seeds} runs)")
    return out


def convergence_warning(summary: pd.DataFrame) -> str:
    """A plain warning naming the variants whose runs had not converged, or ``""``."""
    names = unconverged(summary)
    if not names:
        return ""
    return ("Warning: still improving at the end of the budget: " + ", ".join(names) +
            ". For these, this comparison measures training speed, not architecture "
            "(criterion: ablate.convergence; train longer or check the learning curves).")


def summarize(runs: pd.DataFrame, baseline: str, metric: str = "dice",
              alpha: float = 0.05) -> pd.DataFrame:
    """One row per variant (baseline first, then first appearance) with the statistics above.

    The metric, baseline, alpha, the direction of the metric and the runs' metric definition,
    counter units and input size travel in ``summary.attrs`` for the formatters.
    """
    runs = runs.reset_index(drop=True)
    _validate(runs, metric, alpha)
    variants = list(pd.unique(runs["variant"]))
    if baseline not in variants:
        raise ValueError(f"baseline={baseline!r} is not a variant of the runs table; "
                         f"allowed: {', '.join(map(str, variants))}")
    if not (runs.loc[_counted(runs, metric), "variant"] == baseline).any():
        raise ValueError(f"baseline={baseline!r} has no ok run with a {metric} value")
    order = [baseline] + [v for v in variants if v != baseline]
    table = _by_seed(runs, metric)
    counted = _counted(runs, metric)
    pairs = pairwise_tests(runs, metric, alpha)

    rows = []
    for variant in order:
        group = runs[runs["variant"] == variant]
        x = table[variant].dropna().to_numpy(float)
        low, high = _mean_ci(x, alpha)
        row = {
            "variant": variant,
            "is_baseline": variant == baseline,
            "n_seeds": len(x),
            "n_failed": int((~counted[group.index]).sum()),
            f"{metric}_mean": float(np.mean(x)) if len(x) else np.nan,
            f"{metric}_std": float(np.std(x, ddof=1)) if len(x) > 1 else np.nan,
            "ci_low": low,
            "ci_high": high,
            "n_converged": _n_converged(group[counted[group.index]]),
        }
        if variant == baseline:
            row |= {"n_paired": len(x), "delta": np.nan, "delta_ci_low": np.nan,
                    "delta_ci_high": np.nan, "p_value": np.nan, "note": ""}
        else:
            row |= _paired(table[variant], table[baseline], alpha)
        params = _architecture_value(group, "params_m")
        if np.isnan(params):
            params = _architecture_value(group, "params") / 1e6
        row |= {"gmacs_thop": _architecture_value(group, "gmacs_thop"), "params_m": params}
        rows.append(row)
    summary = pd.DataFrame(rows)

    summary["p_holm"], reject = _holm(summary["p_value"].where(~summary["is_baseline"]), alpha)
    summary["significant"] = [
        "baseline" if base else (("yes" if rej else "no") if n >= 2 else
                                 f"n/a ({n} shared seed{'' if n == 1 else 's'})")
        for base, rej, n in zip(summary["is_baseline"], reject, summary["n_paired"])]

    beaten = pairs.loc[pairs["winner"] != ""]
    losers = np.where(beaten["winner"] == beaten["a"], beaten["b"], beaten["a"])
    n_better = pd.Series(losers).value_counts()
    has_runs = summary["n_seeds"] > 0
    summary["rank"] = pd.array([1 + int(n_better.get(v, 0)) if ok else pd.NA
                                for v, ok in zip(summary["variant"], has_runs)], dtype="Int64")

    means = summary[f"{metric}_mean"]
    best = means.idxmax() if METRICS.get(metric).better == "max" else means.idxmin()
    top = summary.loc[best, "variant"]
    worse_than_top = set(losers[beaten["winner"].to_numpy() == top])
    summary["best"] = has_runs & ~summary["variant"].isin(worse_than_top)

    b = summary.loc[summary["is_baseline"]].iloc[0]
    summary["gmacs_delta"] = summary["gmacs_thop"] - b["gmacs_thop"]
    summary["params_delta"] = summary["params_m"] - b["params_m"]
    columns = ["variant", "is_baseline", "n_seeds", "n_converged", "n_failed", f"{metric}_mean",
               f"{metric}_std", "ci_low", "ci_high", "n_paired", "delta", "delta_ci_low",
               "delta_ci_high", "p_value", "p_holm", "significant", "note", "rank", "best",
               "gmacs_thop", "gmacs_delta", "params_m", "params_delta"]
    summary = summary[columns]
    summary.attrs = {
        "metric": metric, "baseline": baseline, "alpha": alpha,
        "better": METRICS.get(metric).better,
        "metric_definition": _texts(runs, "metric_definition"),
        "counter_units": _texts(runs, "counter_units"),
        "profile_input": _texts(runs, "profile_input") or _texts(runs, "image_size"),
    }
    return summary

