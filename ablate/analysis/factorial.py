"""Main effects and two-way interactions of knobs crossed in a grid, from one linear model.

A ladder that changes one knob at a time (seed 002's experiments) measures each change at one
setting of the others; it cannot say whether a knob's effect depends on another knob. When the
variants cross two or more knobs in a full grid (``grid_factors``), the model

    metric ~ (C(k1) + C(k2) + ...)**2 + C(seed)

(ordinary least squares, ``statsmodels``) has every main effect and every two-way interaction,
with the seed as a block: each seed may shift all variants alike, the same pairing the paired
tests use. Each knob is coded against the baseline's level. Reported effects are linear
contrasts of the fitted cell means (``statsmodels`` ``t_test``: estimate, t-interval, p):

- **main effect** of knob k at level a: the fitted mean at a minus the one at the baseline's
  level, averaged over every combination of the other knobs' levels;
- **interaction** of k and j at (a, b): the effect of a (against k's baseline level) when j is
  at b, minus the same effect when j is at its baseline level, averaged over the remaining
  knobs. Zero means the effects add up (parallel lines in the interaction plot).

``term_p`` is the F-test of a whole term (all levels of a knob, or of a pair; ``anova_lm``
type 2). Nothing here is corrected for multiplicity: the table states how many contrasts it
holds. With three or more knobs, interactions of three knobs are assumed absent.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.api as sm
import statsmodels.formula.api as smf
from tabulate import tabulate

from ..evaluation.metrics import DEFAULT_METRIC, METRICS
from ..models.variant import KNOBS
from ..results import OK
from .tables import FORMATS, format_p, latex_escape

#: The columns of a factorial table, with their definitions (printed in the report).
COLUMNS: dict[str, str] = {
    "term": "the knob, or the pair of knobs (an interaction), the contrast belongs to",
    "effect": "which levels the contrast compares, each against the baseline's level",
    "estimate": "the contrast of fitted cell means, in the metric's units",
    "ci_low": "lower end of the contrast's t-interval",
    "ci_high": "upper end of the contrast's t-interval",
    "p_value": "two-sided t-test of the contrast = 0 (not corrected for multiplicity)",
    "term_p": "F-test of the whole term (anova_lm type 2)",
}


def grid_factors(runs: pd.DataFrame) -> list[str]:
    """The knobs the variants cross in a full grid (two or more, each with two or more levels,
    every combination present once), in ``KNOBS`` order; ``[]`` when they do not."""
    knobs = [k for k in KNOBS.names() if k in runs.columns]
    variants = runs.drop_duplicates("variant")[knobs].astype(str)
    varying = [k for k in knobs if variants[k].nunique() > 1]
    if len(varying) < 2:
        return []
    cells = variants[varying].drop_duplicates()
    if len(cells) != len(variants):
        return []  # some variants differ only in knobs outside the grid
    full = int(np.prod([variants[k].nunique() for k in varying]))
    return varying if len(cells) == full else []


def _term(factors: Sequence[str]) -> str:
    return " x ".join(factors)


def factorial_effects(runs: pd.DataFrame, baseline: str, factors: Sequence[str],
                      metric: str = DEFAULT_METRIC, alpha: float = 0.05) -> pd.DataFrame:
    """Main effects and two-way interactions of ``factors`` with intervals (see the module).

    Uses the ok runs with a metric value. One row per contrast (``COLUMNS``); ``attrs`` holds
    the metric, alpha, the baseline levels, the formula, the runs used and the residual
    degrees of freedom. Raises ``ValueError`` when the model has no residual degree of freedom
    (one seed per variant) or the data do not cover the grid.
    """
    if len(factors) < 2:
        raise ValueError(f"factors={list(factors)!r} is not allowed; allowed: two or more knobs "
                         "crossed in a grid")
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not allowed; allowed: {', '.join(METRICS.names())}")
    missing = [c for c in ("variant", "seed", "status", metric, *factors) if c not in runs]
    if missing:
        raise ValueError(f"the runs table lacks column(s) {', '.join(missing)}")
    if baseline not in set(runs["variant"]):
        raise ValueError(f"baseline={baseline!r} is not a variant of the runs table")
    values = pd.to_numeric(runs[metric], errors="coerce")
    data = runs[(runs["status"] == OK) & values.notna()].copy()
    data["y"] = values[data.index].astype(float)
    data["seed"] = data["seed"].astype(str)
    for k in factors:
        data[k] = data[k].astype(str)
    base = runs[runs["variant"] == baseline].iloc[0]
    reference = {k: str(base[k]) for k in factors}
    levels = {k: [reference[k]] + sorted(set(runs[k].astype(str)) - {reference[k]})
              for k in factors}

    size = int(np.prod([len(v) for v in levels.values()]))
    covered = data.groupby(list(factors)).ngroups
    if covered < size:
        raise ValueError(f"the ok runs cover {covered} of the grid's {size} cells")
    coded = " + ".join(f"C({k}, Treatment(reference={reference[k]!r}))" for k in factors)
    formula = f"y ~ ({coded})**2" + (" + C(seed)" if data["seed"].nunique() > 1 else "")
    fit = smf.ols(formula, data).fit()
    if fit.df_resid < 1:
        raise ValueError(f"no residual degree of freedom ({len(data)} runs for "
                         f"{len(fit.params)} coefficients): the grid needs at least 2 seeds")
    # The model's row of each cell, its seed columns zeroed: every contrast below has weights
    # summing to zero, so the intercept cancels and the seed block stays out.
    exog = pd.DataFrame(fit.model.exog, columns=fit.model.exog_names, index=data.index)
    exog[[c for c in exog.columns if c.startswith("C(seed)")]] = 0.0
    cells = exog.groupby([data[k] for k in factors]).first()

    def at(keep: dict[str, str]) -> np.ndarray:
        """The model row averaged over every combination of the knobs not in ``keep``."""
        rest = [k for k in factors if k not in keep]
        combos = [{**keep, **dict(zip(rest, c))}
                  for c in itertools.product(*(levels[k] for k in rest))]
        return np.mean([cells.loc[tuple(c[k] for k in factors)].to_numpy(float)
                        for c in combos], axis=0)

    rows, contrasts = [], []
    for k in factors:
        for a in levels[k][1:]:
            rows.append((k, f"{k}: {a} vs {reference[k]}"))
            contrasts.append(at({k: a}) - at({k: reference[k]}))
    for k, j in itertools.combinations(factors, 2):
        for a, b in itertools.product(levels[k][1:], levels[j][1:]):
            rows.append((_term((k, j)), f"{k} x {j}: {a} (vs {reference[k]}) with {b} "
                                         f"(vs {reference[j]})"))
            k0, j0 = reference[k], reference[j]
            contrasts.append(at({k: a, j: b}) - at({k: k0, j: b})
                             - at({k: a, j: j0}) + at({k: k0, j: j0}))
    test = fit.t_test(np.vstack(contrasts))
    ci = np.asarray(test.conf_int(alpha=alpha))
    anova = sm.stats.anova_lm(fit, typ=2)
    term_p = {}
    for name in anova.index:
        knobs = tuple(k for k in factors if f"C({k}," in name)
        if knobs:
            term_p[_term(knobs)] = float(anova.loc[name, "PR(>F)"])
    table = pd.DataFrame({
        "term": [t for t, _ in rows], "effect": [e for _, e in rows],
        "estimate": np.asarray(test.effect, float).ravel(), "ci_low": ci[:, 0],
        "ci_high": ci[:, 1], "p_value": np.asarray(test.pvalue, float).ravel()})
    table["term_p"] = table["term"].map(term_p)
    table.attrs = {"metric": metric, "alpha": alpha, "reference": reference,
                   "formula": formula, "n_runs": len(data), "df_resid": float(fit.df_resid),
                   "factors": list(factors)}
    return table[list(COLUMNS)]


def format_factorial(table: pd.DataFrame, fmt: str = "markdown") -> str:
    """The effects as a Markdown or LaTeX table with a note on the model, or as CSV."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt={fmt!r} is not allowed; allowed: {', '.join(FORMATS)}")
    if fmt == "csv":
        return table.to_csv(index=False)
    a = table.attrs
    level = f"{100 * (1 - a['alpha']):g}%"
    label = METRICS.get(a["metric"]).label
    esc = latex_escape if fmt == "latex" else (lambda t: t)
    na = "--" if fmt == "latex" else "—"
    body = [[esc(r.effect), f"{r.estimate:+.4f}", f"[{r.ci_low:+.4f}, {r.ci_high:+.4f}]",
             esc(format_p(r.p_value, na)), esc(format_p(r.term_p, na))]
            for r in table.itertuples(index=False)]
    header = [esc("Effect"), esc(f"Δ {label}") if fmt == "markdown" else rf"$\Delta$ {label}",
              esc(f"{level} CI"), "p", esc("Term p (F)")]
    note = (f"OLS {a['formula']} on {a['n_runs']} runs ({a['df_resid']:g} residual df; seed as "
            f"a block). Main effect = fitted mean at the level minus at the baseline level "
            f"({', '.join(f'{k} {v}' for k, v in a['reference'].items())}), averaged over the "
            f"other knobs; interaction = how much that effect changes when the other knob "
            f"leaves its baseline level (0: the effects add up). CI = {level} t-interval, p = "
            f"t-test of the contrast, Term p = F-test of the whole term (type 2); "
            f"{len(table)} contrasts, not corrected for multiplicity.")
    tablefmt = "pipe" if fmt == "markdown" else "latex_raw"
    text = tabulate(body, header, tablefmt=tablefmt, disable_numparse=True,
                    colalign=("left", "right", "right", "right", "right"))
    if fmt == "markdown":
        return f"{text}\n\n{note}\n"
    return f"{text}\n\\par\\smallskip{{\\footnotesize {latex_escape(note)}}}\n"


def write_factorial(table: pd.DataFrame, out_dir: Path | str) -> list[Path]:
    """Write ``factorial.md``, ``factorial.csv`` and ``factorial.tex``; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt, suffix in (("markdown", "md"), ("csv", "csv"), ("latex", "tex")):
        path = out_dir / f"factorial.{suffix}"
        path.write_text(format_factorial(table, fmt), encoding="utf-8")
        paths.append(path)
    return paths
