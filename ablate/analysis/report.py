"""The report of an experiment, rebuilt from its stored runs table alone (no training).

``write_report`` summarizes the runs (see ``ablate.tables`` for the statistics), writes
``summary.{md,csv,tex}`` and the figures (``plots/``) into the experiment folder, then
``report.md`` linking to them with relative paths, so the folder can be moved or published.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from ..common.checks import better_word
from ..evaluation.metrics import DEFAULT_METRIC, METRICS
from ..results import COSTS, OK
from .costs import cost_section
from .factorial import COLUMNS as FACTORIAL_COLUMNS
from .factorial import factorial_effects, format_factorial, grid_factors, write_factorial
from .plots import (
    plot_curves,
    plot_interactions,
    plot_metric_ci,
    plot_metric_vs_cost,
    plot_samples,
)
from .stats import COLUMNS, SUMMARY_COSTS, convergence_warning, summarize
from .tables import format_p, format_summary, write_tables

_SETUP = (("Dataset", "dataset"), ("Image size", "image_size"), ("Budget", "budget"),
          ("Epochs", "epochs"),
          ("Preset", "preset"), ("Loss", "loss"), ("Device", "device"), ("PyTorch", "torch"),
          ("Git commit", "git_commit"))


def _values(runs: pd.DataFrame, column: str) -> str:
    """The distinct non-empty values of a column as text; flags disagreement between runs."""
    if column not in runs.columns:
        return "not recorded"
    values = [str(v) for v in pd.unique(runs[column].dropna()) if str(v).strip()]
    if not values:
        return "not recorded"
    return values[0] if len(values) == 1 else f"{', '.join(values)} (differs between runs)"


def _setup(runs: pd.DataFrame, baseline: str, metric: str) -> list[str]:
    seeds = sorted(pd.unique(runs["seed"]))
    ok = int((runs["status"] == OK).sum())
    lines = [f"- Experiment: {_values(runs, 'experiment')}",
             f"- Baseline: `{baseline}`; metric: {METRICS.get(metric).label} (`{metric}`, "
             f"{better_word(METRICS.get(metric).better)} is better)",
             f"- Variants: {runs['variant'].nunique()}; seeds: {', '.join(map(str, seeds))}; "
             f"runs: {len(runs)} ({ok} ok, {len(runs) - ok} failed)"]
    lines += [f"- {label}: {_values(runs, column)}" for label, column in _SETUP]
    return lines


def _how_to_read(summary: pd.DataFrame) -> str:
    alpha = summary.attrs["alpha"]
    level = f"{100 * (1 - alpha):g}%"
    label = METRICS.get(summary.attrs["metric"]).label
    return (
        f"Each row is one architecture variant trained with several seeds. GMACs are 1e9 "
        f"multiply-accumulates counted by thop for one image at the stated input size "
        f"(GFLOPs = 2 x GMACs); the bracket after GMACs and params is the change from the "
        f"baseline. {label} is given as mean ± sample sd over the seeds that completed, and the "
        f"{level} CI is the t-interval of that mean: it shows how far another set of seeds "
        f"could move it. Δ vs baseline pairs runs with the same seed and averages the "
        f"differences, with its own {level} t-interval; p is the paired t-test over those "
        f"seeds, Holm-corrected across all variants compared with the baseline. A variant "
        f"whose Holm-corrected p is above {alpha:g} is not shown to differ from the "
        f"baseline, however its mean compares. Rank is 1 + the number of variants "
        f"significantly better than it (paired t-tests between every pair, Holm-corrected "
        f"across all pairs), so variants the data cannot separate share a rank; with one seed "
        f"nothing can be tested and every variant has rank 1. Starred, bold rows are the best "
        f"mean and every variant not significantly worse than it: the candidates this "
        f"experiment cannot tell apart. The verdict turns the tests into one word: better or "
        f"worse (the difference is shown), equivalent (the difference is shown to lie inside "
        f"the stated margin of practical equivalence, by TOST) or undecided (neither: the "
        f"seeds cannot tell \"no difference\" from \"too few seeds\"; without a margin, "
        f"equivalence is never tested). The Pareto columns say whether a variant is on the "
        f"front of the means against GMACs or latency (optimal), could be given its interval "
        f"(possibly optimal), or is beaten with confidence by one that costs no more "
        f"(dominated). Converged counts the runs whose {label} and training "
        f"loss had flattened over the last third of the budget (the window shaded in the "
        f"training curves); a variant whose runs were still improving is compared on how fast "
        f"it learns, not on what it can reach."
    )


def _link(path: Path, exp_dir: Path) -> str:
    return path.relative_to(exp_dir).as_posix()


def _plots(exp_dir: Path, runs: pd.DataFrame, summary: pd.DataFrame, metric: str) -> list[str]:
    """Draw every figure the data allows; Markdown lines embedding them (or saying why not)."""
    out = exp_dir / "plots"
    label = METRICS.get(metric).label
    has_mean = summary[f"{metric}_mean"].notna()
    costs = [COSTS.get(name) for name in SUMMARY_COSTS]
    figures = [
        *((f"{label} vs {c.label}", (has_mean & summary[c.column].notna()).any(),
           lambda c=c: plot_metric_vs_cost(summary, c.name, out),
           f"no `{c.column}` in the runs table") for c in costs),
        (f"{label} per variant with {100 * (1 - summary.attrs['alpha']):g}% CI", True,
         lambda: plot_metric_ci(summary, out), ""),
        ("Training curves", True,
         lambda: plot_curves(exp_dir, runs, out, metric),
         "no history.csv found"),
        ("Sample predictions (first seed with a picture)", True,
         lambda: plot_samples(exp_dir, runs, out), "no samples.png found"),
    ]
    lines = []
    for title, possible, draw, why_not in figures:
        paths = draw() if possible else []
        lines += [f"### {title}", ""]
        if paths:
            png, svg = (_link(p, exp_dir) for p in paths)
            lines += [f"![{title}]({png})", "", f"([SVG]({svg}))", ""]
        else:
            lines += [f"Not drawn: {why_not}.", ""]
    return lines


def _cell(text: object, limit: int = 300) -> str:
    """One line of text safe inside a Markdown table cell."""
    text = re.sub(r"\s+", " ", str(text)).strip().replace("|", r"\|")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _failed(runs: pd.DataFrame, metric: str) -> list[str]:
    failed = runs[(runs["status"] != OK) | runs[metric].isna()]
    if failed.empty:
        return ["None: every run completed."]
    errors = failed["error"] if "error" in failed.columns else pd.Series("", index=failed.index)
    rows = [[_cell(v), s, _cell(st), _cell(e) or f"(no error recorded; {metric} missing)"]
            for v, s, st, e in zip(failed["variant"], failed["seed"], failed["status"], errors)]
    return [tabulate(rows, ["Variant", "Seed", "Status", "Error"], tablefmt="pipe",
                     disable_numparse=True),
            "", "Failed runs are left out of every statistic and counted in the Seeds column."]


def _other_verdicts(runs: pd.DataFrame, baseline: str, metric: str,
                    equivalence: Mapping[str, float],
                    looks: Sequence[int] | None) -> list[str]:
    """The verdicts on each other metric that has an equivalence margin."""
    lines = []
    for other, margin in equivalence.items():
        if other == metric:
            continue
        label = METRICS.get(other).label
        lines += [f"### Verdicts on {label} (margin ±{margin:g})", ""]
        try:
            s = summarize(runs, baseline, other, margin=margin, looks=looks)
        except ValueError as exc:
            lines += [f"Not computed: {exc}.", ""]
            continue
        rows = [[f"`{r.variant}`", f"{r.delta:+.4f} [{r.delta_ci_low:+.4f}, "
                 f"{r.delta_ci_high:+.4f}]", format_p(r.p_holm, "—"),
                 format_p(r.tost_p_holm, "—"), r.verdict]
                for r in s[~s["is_baseline"]].itertuples(index=False)]
        lines += [tabulate(rows, ["Variant", f"Δ {label} [CI]", "p (Holm)", "TOST p (Holm)",
                                  "Verdict"], tablefmt="pipe", disable_numparse=True), "",
                  f"Same tests as the table above, on {label} (`{other}`, "
                  f"{better_word(METRICS.get(other).better)} is better).", ""]
    return lines


def runs_saved(runs: pd.DataFrame, looks: Sequence[int]) -> tuple[int, int]:
    """(runs made, runs a fixed design at the largest look would make) for adaptive seeds."""
    return len(runs), runs["variant"].nunique() * looks[-1]


def _adaptive(runs: pd.DataFrame, summary: pd.DataFrame, looks: Sequence[int]) -> list[str]:
    """How the adaptive seeds went: seeds per comparison, when each was decided, runs saved."""
    alpha = summary.attrs["alpha"]
    made, fixed = runs_saved(runs, looks)
    counts = runs["variant"].value_counts()
    rows = []
    for r in summary.itertuples(index=False):
        when = ("—" if r.is_baseline else
                "not decided" if r.verdict == "undecided" else
                f"after {looks[int(r.n_looks) - 1]} seeds (look {r.n_looks} of {len(looks)})")
        rows.append([f"`{r.variant}`", str(counts.get(r.variant, 0)), r.verdict, when])
    return [
        "## Adaptive seeds", "",
        f"Every variant ran the first {looks[0]} seeds; then, one seed at a time, the baseline "
        f"and each comparison still undecided got the next seed, up to {looks[-1]} seeds. The "
        f"tests are read at each of the {len(looks)} looks, each p multiplied by "
        f"{len(looks)} (Bonferroni over the looks, ablate.analysis.verdicts), so for each "
        f"comparison P(better or worse | no true difference) <= {alpha:g} and "
        f"P(equivalent | true difference outside the margin) <= {alpha:g}, and Holm keeps "
        f"both across comparisons.", "",
        tabulate(rows, ["Variant", "Runs", "Verdict", "Decided"], tablefmt="pipe",
                 disable_numparse=True), "",
        f"**Runs: {made} of the {fixed} that {looks[-1]} seeds for every variant would take; "
        f"adaptivity saved {fixed - made} runs ({100 * (fixed - made) / fixed:.0f}%).**", ""]


def _factorial(exp_dir: Path, runs: pd.DataFrame, baseline: str, metric: str,
               alpha: float) -> list[str]:
    """Main effects and interactions when the variants cross knobs in a grid; [] otherwise."""
    factors = grid_factors(runs)
    if not factors:
        return []
    lines = ["## Factorial effects", "",
             f"The variants cross {' x '.join(factors)} in a full grid, so each knob's effect "
             "is estimated over every level of the others, and the interactions say whether "
             "one knob's effect depends on another (ablate.analysis.factorial).", ""]
    try:
        table = factorial_effects(runs, baseline, factors, metric, alpha)
    except ValueError as exc:
        return lines + [f"Not estimated: {exc}.", ""]
    paths = write_factorial(table, exp_dir)
    figure = plot_interactions(runs, factors, baseline, exp_dir / "plots", metric, alpha)
    png, svg = (_link(p, exp_dir) for p in figure)
    return lines + [format_factorial(table, "markdown"),
                    "Tables: " + ", ".join(f"[{p.name}]({_link(p, exp_dir)})" for p in paths),
                    "", f"![Interaction plot]({png})", "", f"([SVG]({svg}))", ""]


def _definitions(runs: pd.DataFrame, metric: str, factorial: bool) -> list[str]:
    lines = []
    for label, column in (("Metric definition", "metric_definition"),
                          ("Counter units", "counter_units")):
        lines += [f"**{label}** (from the runs' `{column}`):", ""]
        values = pd.unique(runs[column]) if column in runs.columns else []
        values = [str(v).strip() for v in values if pd.notna(v) and str(v).strip()]
        lines += [f"> {_cell(v, 2000)}" for v in values] or ["> not recorded"]
        lines.append("")
    lines += ["**Summary columns** (summary.csv; ablate.analysis.stats):", ""]
    lines += [f"- `{name.replace('<metric>', metric)}`: {text}" for name, text in COLUMNS.items()]
    if factorial:
        lines += ["", "**Factorial columns** (factorial.csv; ablate.analysis.factorial):", ""]
        lines += [f"- `{name}`: {text}" for name, text in FACTORIAL_COLUMNS.items()]
    return lines + [""]


def write_report(exp_dir: Path | str, runs: pd.DataFrame, baseline: str,
                 metric: str = DEFAULT_METRIC,
                 title: str | None = None, equivalence: Mapping[str, float] | None = None,
                 looks: Sequence[int] | None = None) -> Path:
    """Summarize ``runs``; write tables, figures and ``report.md`` into ``exp_dir``; return it.

    The report holds the setup read from the runs, the summary table, how to read it, the
    verdicts on other metrics with an ``equivalence`` margin, how adaptive seeds went (with
    ``looks``, the seed counts of the schedule), the factorial effects of a grid, the figures
    (relative links), the failed runs with their errors and every definition.
    """
    exp_dir = Path(exp_dir)
    equivalence = dict(equivalence or {})
    looks = tuple(looks) if looks else None
    summary = summarize(runs, baseline, metric, margin=equivalence.get(metric), looks=looks)
    tables = write_tables(summary, exp_dir)
    if title is None:
        title = f"Ablation report: {_values(runs, 'experiment')}"
    warning = convergence_warning(summary)
    lines = [f"# {title}", "", *([f"> **{warning}**", ""] if warning else []),
             "## Setup", "", *_setup(runs, baseline, metric), "",
             "## Results", "", format_summary(summary, "markdown"),
             "Tables: " + ", ".join(f"[{p.name}]({_link(p, exp_dir)})" for p in tables), "",
             "### How to read this table", "", _how_to_read(summary), "",
             *_other_verdicts(runs, baseline, metric, equivalence, looks),
             *(_adaptive(runs, summary, looks) if looks else []),
             *_factorial(exp_dir, runs, baseline, metric, summary.attrs["alpha"]),
             *cost_section(exp_dir, runs, baseline),
             "## Figures", "", *_plots(exp_dir, runs, summary, metric),
             "## Failed runs", "", *_failed(runs, metric), "",
             "## Definitions", "", *_definitions(runs, metric, bool(grid_factors(runs)))]
    path = exp_dir / "report.md"
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return path
