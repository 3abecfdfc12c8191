"""Statistics of an ablation: a summary over seeds, paired tests, an honest rank.

One row per variant, computed from the runs table (one row per (variant, seed) run). With the
default ``alpha=0.05`` every interval below is a 95% interval.

- **Runs.** A run counts when its ``status`` is ``"ok"`` and its metric is a number. Every other
  run of the variant (``failed``, ``pruned``: ``ablate.results.STATUSES``) is counted in
  ``n_failed`` and left out of all statistics; ``n_seeds`` is
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
  (``ablate.analysis.verdicts.holm``, the numbers of statsmodels' ``multipletests``).
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
- **Verdict.** ``verdict`` is *better*, *worse*, *equivalent* or *undecided*
  (``ablate.analysis.verdicts``): the paired t-test above, and with an equivalence ``margin``
  TOST (two one-sided paired t-tests against ±margin), each Holm-corrected across the variants
  compared with the baseline. ``tost_p``/``tost_p_holm`` are TOST's p before and after Holm
  (NaN without a margin); ``verdict_test`` names the test that decided.
- **Looks.** With adaptive seeds (``looks``: the seed counts at which the tests are read, e.g.
  3..10) the tests are read after the first n seeds (lowest seed numbers) for each n in turn,
  ``p_value`` and ``tost_p`` are the look-corrected p-values (K looks: min(1, K x the smallest
  p so far)) and a comparison's verdict is the first it reached; ``n_looks`` counts the looks
  read until then. Pairwise tests multiply their p by K. One look (a seed list) changes nothing.
- **Rank.** Every pair of variants is compared with the same paired t-test over the seeds both
  completed, Holm-corrected across all pairs tested. A is significantly better than B when Holm
  rejects and A's mean paired difference points the better way (higher, or lower for
  ``val_loss``). ``rank`` = 1 + the number of variants significantly better than this one, so
  variants that the data cannot separate share a rank. A pair with fewer than 2 shared seeds is
  not tested, so with one seed per variant every variant has rank 1. Variants without a counted
  run have no rank.
- **Best.** ``best`` is True for the variant with the best mean and every variant not
  significantly worse than it in the pairwise tests.
- **Pareto.** ``pareto_<cost>`` for each cost of :data:`PARETO_COSTS` (``gmacs``, ``latency``:
  ``ablate.results.COSTS``) class each variant against GMACs and against ``latency_ms`` (median
  of its runs' latencies) as *optimal*, *possibly optimal* or
  *dominated* (``ablate.analysis.pareto``), "better with confidence" being a pairwise win.
- **Complexity.** ``gmacs_thop`` (1e9 multiply-accumulates counted by thop at the runs' input
  size; GFLOPs = 2 x GMACs) and ``params_m`` (millions) are properties of the architecture and
  must agree across a variant's runs; ``gmacs_delta`` and ``params_delta`` are variant - baseline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..common.checks import oriented
from ..evaluation.metrics import DEFAULT_METRIC, METRICS
from ..results import COSTS, OK, row_statuses
from ..training.convergence import is_converged
from .pareto import pareto_classes
from .tables import format_p
from .verdicts import (
    check_looks,
    check_margin,
    decide,
    first_decided,
    holm,
    look_corrected,
    paired_tests,
)

#: The costs a summary holds (``ablate.results.COSTS``), and those it draws Pareto fronts of.
SUMMARY_COSTS = ("gmacs", "latency", "params")
PARETO_COSTS = ("gmacs", "latency")

#: Every column of a summary, in order, with its definition (``<metric>`` stands for the
#: metric's name). The report's definitions section prints this table.
COLUMNS: dict[str, str] = {
    "variant": "the variant id",
    "is_baseline": "True for the baseline the others are compared with",
    "n_seeds": "runs that count: status ok and a finite metric",
    "n_converged": "counted runs that met the convergence criterion (ablate.training.convergence)",
    "n_failed": "runs of the variant that do not count",
    "<metric>_mean": "mean over the counted runs",
    "<metric>_std": "sample standard deviation over the counted runs (ddof=1)",
    "ci_low": "lower end of the t-interval of the mean over seeds",
    "ci_high": "upper end of the t-interval of the mean over seeds",
    "n_paired": "seeds both this variant and the baseline counted",
    "delta": "mean paired difference, variant - baseline, over those seeds",
    "delta_ci_low": "lower end of the paired difference's t-interval",
    "delta_ci_high": "upper end of the paired difference's t-interval",
    "p_value": "two-sided paired t-test of delta = 0 (look-corrected with adaptive seeds)",
    "p_holm": "p_value Holm-corrected across the variants compared with the baseline",
    "significant": "yes when p_holm <= alpha; n/a with fewer than 2 paired seeds",
    "note": "why a p was set by the zero-variance rule, if it was",
    "margin": "the stated margin of practical equivalence for the metric (NaN: none)",
    "tost_p": "TOST p: the larger p of the two one-sided paired t-tests against -margin "
              "and +margin (look-corrected with adaptive seeds)",
    "tost_p_holm": "tost_p Holm-corrected across the variants compared with the baseline",
    "verdict": "better, worse, equivalent (TOST inside the margin) or undecided "
               "(ablate.analysis.verdicts)",
    "verdict_test": "the test that decided the verdict (and the look, with adaptive seeds)",
    "n_looks": "looks read until the verdict was reached (1 with a seed list)",
    "rank": "1 + the number of variants significantly better in the pairwise paired tests",
    "best": "the best mean or not significantly worse than it",
    "gmacs_thop": "1e9 multiply-accumulates per image at the profiled size (thop)",
    "gmacs_delta": "gmacs_thop - the baseline's",
    "params_m": "parameters in millions",
    "params_delta": "params_m - the baseline's",
    "latency_ms": "median over the counted runs of their median inference ms per image "
                  "(batch 1, profiled size)",
    "pareto_gmacs": "optimal, possibly optimal or dominated in the metric vs GMACs "
                    "(ablate.analysis.pareto)",
    "pareto_latency": "optimal, possibly optimal or dominated in the metric vs latency_ms",
}


def _counted(runs: pd.DataFrame, metric: str) -> pd.Series:
    """Mask of the runs that enter the statistics: status ok and a finite metric."""
    values = pd.to_numeric(runs[metric], errors="coerce")
    return (runs["status"] == OK) & np.isfinite(values.astype(float))


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
    bad = sorted(set(runs["status"]) - set(row_statuses()), key=str)
    if bad:
        raise ValueError(f"status value(s) {', '.join(map(repr, bad))} are not allowed; "
                         f"allowed: {', '.join(row_statuses())}")
    counted = runs[_counted(runs, metric)]
    dup = counted[counted.duplicated(["variant", "seed"], keep=False)]
    if len(dup):
        pairs = sorted({f"{v} seed {s}" for v, s in zip(dup["variant"], dup["seed"])})
        raise ValueError(f"several ok runs for {', '.join(pairs)}; pairing needs one per seed")


def _by_seed(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Counted metric values as a seeds x variants table, every seed of the runs in increasing
    order (NaN where a run does not count)."""
    counted = runs[_counted(runs, metric)]
    table = counted.pivot(index="seed", columns="variant", values=metric).astype(float)
    return table.reindex(index=sorted(pd.unique(runs["seed"])),
                         columns=pd.unique(runs["variant"]))


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
    p_holm = pd.Series(holm(p.to_numpy(float)), index=p.index)
    return p_holm, p_holm <= alpha


def pairwise_tests(runs: pd.DataFrame, metric: str = DEFAULT_METRIC, alpha: float = 0.05,
                   n_looks: int = 1) -> pd.DataFrame:
    """Paired t-tests between every pair of variants, Holm-corrected across all pairs tested.

    One row per pair (``a``, ``b``) in first-appearance order: ``n_paired`` shared seeds,
    ``delta`` = mean of a - b with its interval, ``p_value``, ``p_holm``, ``note``, and
    ``winner``: the significantly better variant, or ``""``. The basis of ``rank``, ``best``
    and the Pareto classes. With ``n_looks`` K > 1 (adaptive seeds: the seeds a pair shares
    were chosen by looking) each p is multiplied by K before Holm: valid, since the final data
    are those of one of the K looks (``ablate.analysis.verdicts``).
    """
    runs = runs.reset_index(drop=True)
    _validate(runs, metric, alpha)
    table = _by_seed(runs, metric)
    names = list(table.columns)
    rows = [{"a": a, "b": b, **_paired(table[a], table[b], alpha)}
            for i, a in enumerate(names) for b in names[i + 1:]]
    pairs = pd.DataFrame(rows, columns=["a", "b", "n_paired", "delta", "delta_ci_low",
                                        "delta_ci_high", "p_value", "note"])
    pairs["p_value"] = np.minimum(1.0, n_looks * pairs["p_value"].astype(float))
    pairs["p_holm"], reject = _holm(pairs["p_value"], alpha)
    a_better = pairs["delta"] > 0 if METRICS.get(metric).better == "max" else pairs["delta"] < 0
    pairs["winner"] = np.where(reject, np.where(a_better, pairs["a"], pairs["b"]), "")
    return pairs


def _looks_read(n_seeds: int, looks: tuple[int, ...] | None) -> list[int]:
    """The seed counts at which tests are read, given ``n_seeds`` seeds run so far: every look
    the data reach (all seeds when there is no schedule, or none is reached yet)."""
    read = [n for n in looks if n <= n_seeds] if looks else []
    return read or [n_seeds]


def verdicts(runs: pd.DataFrame, baseline: str, metric: str = DEFAULT_METRIC, alpha: float = 0.05,
             margin: float | None = None, looks: tuple[int, ...] | None = None) -> pd.DataFrame:
    """The verdict on each variant against ``baseline``, one row per other variant.

    Columns ``p_value``, ``p_holm``, ``tost_p``, ``tost_p_holm`` (at the last look read),
    ``verdict``, ``verdict_test`` and ``n_looks`` as in the module docs. ``looks`` None is one
    look at every seed; otherwise K = len(looks) looks at the first n seeds (lowest numbers).
    A baseline without a counted run leaves every comparison undecided.
    """
    runs = runs.reset_index(drop=True)
    _validate(runs, metric, alpha)
    margin = check_margin(margin, metric)
    looks = check_looks(looks) if looks is not None else None
    table = _by_seed(runs, metric)
    if baseline not in table.columns:
        raise ValueError(f"baseline={baseline!r} is not a variant of the runs table; "
                         f"allowed: {', '.join(map(str, table.columns))}")
    others = [v for v in table.columns if v != baseline]
    read = _looks_read(len(table), looks)
    n_looks = len(looks) if looks else 1
    shape = (len(others), len(read))
    p, p_tost, delta = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    for j, n in enumerate(read):
        first = table.iloc[:n]
        for i, v in enumerate(others):
            d = (first[v] - first[baseline]).dropna().to_numpy(float)
            p[i, j], p_tost[i, j] = paired_tests(d, margin)
            delta[i, j] = d.mean() if len(d) else np.nan
    corrected = {}
    for name, raw in (("p", p), ("tost", p_tost)):
        tested = np.logical_or.accumulate(~np.isnan(raw), axis=-1)
        fixed = np.where(tested, look_corrected(raw, n_looks), np.nan)
        corrected[name] = (fixed, holm(fixed))
    by_look = decide(delta, corrected["p"][1], corrected["tost"][1], alpha,
                     METRICS.get(metric).better)
    verdict, look = first_decided(by_look) if others else (np.array([]), np.array([], int))
    out = pd.DataFrame({"variant": others,
                        "p_value": corrected["p"][0][:, -1], "p_holm": corrected["p"][1][:, -1],
                        "tost_p": corrected["tost"][0][:, -1],
                        "tost_p_holm": corrected["tost"][1][:, -1],
                        "verdict": verdict, "n_looks": look + 1})
    out["verdict_test"] = [_test_name(r, margin, alpha, n_looks, read)
                           for r in out.itertuples(index=False)]
    return out


def _test_name(r, margin: float | None, alpha: float, n_looks: int, read: list[int]) -> str:
    """Which test decided a verdict, with TOST's p for equivalence (and at which look, with
    adaptive seeds); ``""`` for undecided."""
    if r.verdict == "undecided":
        return ""
    name = "paired t"
    if r.verdict == "equivalent":
        name = f"TOST ±{margin:g}, p {format_p(r.tost_p_holm, '—')}"
        if pd.notna(r.p_holm) and r.p_holm <= alpha:
            name += "; the paired t-test also rejects"
    if n_looks > 1:
        name += f"; look {r.n_looks}/{n_looks}, {read[r.n_looks - 1]} seeds"
    return name


def _architecture_value(group: pd.DataFrame, column: str) -> float:
    """The one value of a complexity column over a variant's runs (NaN when absent)."""
    if column not in group.columns:
        return np.nan
    values = pd.to_numeric(group[column], errors="coerce").dropna().unique()
    if len(values) > 1 and not np.allclose(values, values[0], rtol=1e-9, atol=0):
        raise ValueError(f"variant {group['variant'].iloc[0]!r} has different {column} values "
                         f"across runs ({', '.join(map(str, values))}); expected one")
    return float(values[0]) if len(values) else np.nan


def _median(runs: pd.DataFrame, column: str) -> float:
    """Median of a numeric column over ``runs`` (NaN when absent or empty)."""
    if column not in runs.columns:
        return np.nan
    values = pd.to_numeric(runs[column], errors="coerce").dropna()
    return float(values.median()) if len(values) else np.nan


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
            "(criterion: ablate.training.convergence; train longer or check the learning curves).")


def summarize(runs: pd.DataFrame, baseline: str, metric: str = DEFAULT_METRIC,
              alpha: float = 0.05, margin: float | None = None,
              looks: tuple[int, ...] | None = None) -> pd.DataFrame:
    """One row per variant (baseline first, then first appearance) with the statistics above.

    ``margin``: the equivalence margin of ``metric`` (None: equivalence is not tested);
    ``looks``: the seed counts of an adaptive-seeds schedule (None: one look, every seed).
    The metric, baseline, alpha, margin, looks, the direction of the metric and the runs'
    metric definition, counter units and input size travel in ``summary.attrs``.
    """
    runs = runs.reset_index(drop=True)
    _validate(runs, metric, alpha)
    margin = check_margin(margin, metric)
    looks = check_looks(looks) if looks is not None else None
    variants = list(pd.unique(runs["variant"]))
    if baseline not in variants:
        raise ValueError(f"baseline={baseline!r} is not a variant of the runs table; "
                         f"allowed: {', '.join(map(str, variants))}")
    if not (runs.loc[_counted(runs, metric), "variant"] == baseline).any():
        raise ValueError(f"baseline={baseline!r} has no ok run with a {metric} value")
    order = [baseline] + [v for v in variants if v != baseline]
    table = _by_seed(runs, metric)
    counted = _counted(runs, metric)
    pairs = pairwise_tests(runs, metric, alpha, len(looks) if looks else 1)

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
        cols = {c: COSTS.get(c).column for c in SUMMARY_COSTS}
        params_m = _architecture_value(group, cols["params"])
        if np.isnan(params_m):  # a table with the parameter count only
            params_m = _architecture_value(group, "params") / 1e6
        row |= {cols["gmacs"]: _architecture_value(group, cols["gmacs"]),
                cols["params"]: params_m,
                cols["latency"]: _median(group[counted[group.index]], cols["latency"])}
        rows.append(row)
    summary = pd.DataFrame(rows)

    decided = verdicts(runs, baseline, metric, alpha, margin, looks).set_index("variant")
    for column in ("p_value", "p_holm", "tost_p", "tost_p_holm"):
        summary[column] = summary["variant"].map(decided[column])
    summary["n_looks"] = summary["variant"].map(decided["n_looks"]).astype("Int64")
    for column in ("verdict", "verdict_test"):
        summary[column] = summary["variant"].map(decided[column]).astype(object).fillna("")
    summary.loc[summary["is_baseline"], "verdict"] = "baseline"
    summary["margin"] = np.nan if margin is None else margin
    reject = summary["p_holm"] <= alpha
    summary["significant"] = [
        "baseline" if base else (("yes" if rej else "no") if n >= 2 else
                                 f"n/a ({n} shared seed{'' if n == 1 else 's'})")
        for base, rej, n in zip(summary["is_baseline"], reject, summary["n_paired"])]
    few = ~summary["is_baseline"] & (summary["n_paired"] < 2)
    summary.loc[few, "verdict_test"] = [f"{n} shared seed{'' if n == 1 else 's'}: no test"
                                        for n in summary.loc[few, "n_paired"]]

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

    score = oriented(METRICS.get(metric).better) * means  # higher is better
    wins = np.zeros((len(summary), len(summary)), dtype=bool)
    where = {v: i for i, v in enumerate(summary["variant"])}
    for winner, loser in zip(beaten["winner"], losers):
        wins[where[winner], where[loser]] = True
    for name in PARETO_COSTS:
        cost = COSTS.get(name)  # lower is better for pareto_classes
        summary[f"pareto_{name}"] = pareto_classes(-oriented(cost.better) * summary[cost.column],
                                                   score, wins)

    b = summary.loc[summary["is_baseline"]].iloc[0]
    summary["gmacs_delta"] = summary["gmacs_thop"] - b["gmacs_thop"]
    summary["params_delta"] = summary["params_m"] - b["params_m"]
    summary = summary[[c.replace("<metric>", metric) for c in COLUMNS]]
    summary.attrs = {
        "metric": metric, "baseline": baseline, "alpha": alpha, "margin": margin,
        "looks": looks,
        "better": METRICS.get(metric).better,
        "metric_definition": _texts(runs, "metric_definition"),
        "counter_units": _texts(runs, "counter_units"),
        "profile_input": _texts(runs, "profile_input") or _texts(runs, "image_size"),
    }
    return summary

