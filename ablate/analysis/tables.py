"""Summary tables in Markdown, LaTeX and CSV, laid out like the experiment logs.

A summary (``ablate.analysis.stats.summarize``) becomes one table per format; the conventions
(counter, unit, input size, how the metric is defined and averaged) are written under each table.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tabulate import tabulate

from ..common.checks import better_word
from ..evaluation.metrics import METRICS
from ..results import COSTS

FORMATS = ("markdown", "latex", "csv")

_SYMBOLS = {
    "markdown": {"pm": "±", "na": "—", "delta": "Δ", "star": "★", "dagger": "†"},
    "latex": {"pm": r"$\pm$", "na": "--", "delta": r"$\Delta$", "star": r"$\star$",
              "dagger": r"$^\dagger$"},
}
_LATEX_SPECIALS = {c: "\\" + c for c in "&%$#_{}"} | {
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
    "<": r"$<$", ">": r"$>$"}



def metric_of(summary: pd.DataFrame) -> str:
    """The metric a summary was built on: from its attrs, else from its ``<metric>_mean`` column."""
    if summary.attrs.get("metric") in METRICS:
        return summary.attrs["metric"]
    found = [m for m in METRICS.names() if f"{m}_mean" in summary.columns]
    if len(found) != 1:
        raise ValueError("cannot tell the summary's metric: expected one <metric>_mean column "
                         f"with metric in {', '.join(METRICS.names())}")
    return found[0]


def _has_note(note: object) -> bool:
    return isinstance(note, str) and bool(note)


def _num(value: float, digits: int, sign: bool = False, na: str = "—") -> str:
    if pd.isna(value):
        return na
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def format_p(value: float, na: str) -> str:
    """A p-value to three decimals, ``<0.001`` below that, ``na`` when missing."""
    if pd.isna(value):
        return na
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def input_size(summary: pd.DataFrame) -> str:
    """The profiled input size as text ("224x224" for a square size given as one number)."""
    size = str(summary.attrs.get("profile_input") or "the input size of the runs")
    return f"{size}x{size} (one image)" if size.isdigit() else f"{size} (one image)"


def conventions(summary: pd.DataFrame) -> str:
    """One paragraph stating the units and statistical conventions of a summary table."""
    metric = metric_of(summary)
    alpha = summary.attrs.get("alpha", 0.05)
    level = f"{100 * (1 - alpha):g}%"
    size = input_size(summary)
    definition = summary.attrs.get("metric_definition") or "see the runs' metric_definition"
    direction = better_word(METRICS.get(metric).better)
    text = (
        f"GMACs = 1e9 multiply-accumulates counted by thop at input size {size} "
        f"(GFLOPs = 2 x GMACs); Params in millions. {METRICS.get(metric).label} as defined by the "
        f"runs: {definition} "
        f"({direction} is better). Seeds = runs that completed (failed runs are counted, not "
        f"used). Mean ± sd (ddof=1) over the seeds that completed; "
        f"CI = {level} t-interval of the mean over seeds. Δ = mean paired difference vs the "
        f"baseline over shared seeds, with its {level} t-interval; p = paired t-test "
        f"(scipy.stats.ttest_rel), Holm-corrected across the variants compared with the "
        f"baseline. {verdict_rule(summary)} Rank = 1 + number of variants "
        f"significantly better (pairwise paired t-tests, Holm across all pairs); ties share a "
        f"rank. ★/bold = best mean and every variant not significantly worse than it. "
        f"Pareto (GMACs, latency): optimal = on the front of the means; possibly optimal = off "
        f"it, but no variant that costs the same or less is significantly better (pairwise "
        f"tests); dominated = one is. Latency = median over runs of each run's median ms per "
        f"image at batch 1 (treated as known, like GMACs: its spread is not modelled). "
        f"Converged = runs that met the convergence criterion (ablate.training.convergence: "
        f"the metric and the training loss flat over the last third of the budget)."
    )
    if "note" in summary and summary["note"].map(_has_note).any():
        text += (" † = zero-variance paired difference (identical on every seed: p = 1; "
                 "constant non-zero difference: p = 0).")
    return text


def verdict_rule(summary: pd.DataFrame) -> str:
    """How the Verdict column was decided: the tests, the margin and the looks."""
    alpha = summary.attrs.get("alpha", 0.05)
    margin = summary.attrs.get("margin")
    looks = summary.attrs.get("looks")
    text = (f"Verdict: better/worse = Holm-corrected paired t p <= {alpha:g}, by the sign of "
            "Δ; ")
    if margin is None:
        text += ("no equivalence margin was stated, so equivalence is not tested and "
                 "undecided means no difference was shown. ")
    else:
        text += (f"equivalent = TOST (two one-sided paired t-tests against ±{margin:g}, the "
                 f"stated margin), Holm-corrected p <= {alpha:g}: the difference lies inside "
                 "the margin (this wins over better/worse); undecided = neither. ")
    if looks:
        text += (f"Adaptive seeds: the tests were read after {looks[0]}, ..., {looks[-1]} "
                 f"seeds ({len(looks)} looks); each p is look-corrected (min(1, "
                 f"{len(looks)} x the smallest p so far), Bonferroni over the looks) and a "
                 "comparison kept the first verdict it reached; pairwise tests multiply p "
                 f"by {len(looks)}.")
    return text.rstrip()


def _verdict_cell(r: dict, symbols: dict[str, str], esc) -> str:
    """The verdict word with the test that decided it, or TOST's p when undecided."""
    word, test = str(r["verdict"]), r["verdict_test"]
    if word == "undecided" and pd.notna(r["tost_p_holm"]):
        test = f"TOST p {format_p(r['tost_p_holm'], symbols['na'])}"
    text = f"{word} ({test})" if isinstance(test, str) and test else word
    return esc(text).replace("±", symbols["pm"])


def _cells(summary: pd.DataFrame, fmt: str) -> tuple[list[str], list[list[str]]]:
    """Header and body cells of the display table, with the symbols of ``fmt``."""
    s = _SYMBOLS[fmt]
    metric = metric_of(summary)
    alpha = summary.attrs.get("alpha", 0.05)
    level = f"{100 * (1 - alpha):g}%"
    label = METRICS.get(metric).label
    esc = latex_escape if fmt == "latex" else (lambda t: t)
    bold = (lambda t: rf"\textbf{{{t}}}") if fmt == "latex" else (lambda t: f"**{t}**")
    gmacs, params = COSTS.get("gmacs"), COSTS.get("params")
    header = [esc("Variant"), "Seeds", "Converged", esc(gmacs.label), esc(params.label),
              f"{esc(label)} mean {s['pm']} sd", esc(f"{level} CI"),
              f"{s['delta']} vs baseline [CI]", esc("p (Holm)"), "Verdict", "Rank",
              esc("Pareto (GMACs)"), esc("Pareto (latency)")]
    body = []
    for r in summary.itertuples(index=False):
        r = r._asdict()
        base = r["is_baseline"]
        name = esc(str(r["variant"])) + (" (baseline)" if base else "")
        mean = _num(r[f"{metric}_mean"], 4, na=s["na"])
        if r["n_seeds"] > 1:
            mean += f" {s['pm']} {_num(r[f'{metric}_std'], 4)}"
        if r["best"]:
            name, mean = f"{s['star']} {bold(name)}", bold(mean)
        seeds = str(r["n_seeds"]) + (f" (+{r['n_failed']} failed)" if r["n_failed"] else "")
        converged = (s["na"] if pd.isna(r.get("n_converged"))
                     else f"{int(r['n_converged'])}/{r['n_seeds']}")
        cost_cells = []
        for cost, change in ((gmacs, "gmacs_delta"), (params, "params_delta")):
            cell = _num(r[cost.column], 3, na=s["na"])
            if not base and pd.notna(r[change]):
                cell += f" ({_num(r[change], 3, sign=True)})"
            cost_cells.append(cell)
        ci = (s["na"] if pd.isna(r["ci_low"])
              else f"[{_num(r['ci_low'], 4)}, {_num(r['ci_high'], 4)}]")
        if base or pd.isna(r["delta"]):
            delta = s["na"]
        else:
            delta = _num(r["delta"], 4, sign=True)
            if pd.notna(r["delta_ci_low"]):
                delta += (f" [{_num(r['delta_ci_low'], 4, sign=True)}, "
                          f"{_num(r['delta_ci_high'], 4, sign=True)}]")
        p = esc(format_p(r["p_holm"], s["na"])) + (s["dagger"] if _has_note(r["note"]) else "")
        rank = s["na"] if pd.isna(r["rank"]) else str(r["rank"])
        body.append([name, seeds, converged, *cost_cells, mean, ci, delta, p,
                     _verdict_cell(r, s, esc), rank,
                     esc(r["pareto_gmacs"] or s["na"]), esc(r["pareto_latency"] or s["na"])])
    return header, body


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped, for a table cell or note."""
    return "".join(_LATEX_SPECIALS.get(c, c) for c in text)


def format_summary(summary: pd.DataFrame, fmt: str = "markdown") -> str:
    """The summary as a Markdown or LaTeX table with a conventions note, or as full-precision CSV.

    Markdown and LaTeX follow the layout of the experiment logs (variant, GMACs, params, metric,
    rank) plus the seeds, intervals and tests that make a ranking meaningful; best rows are
    bold and starred. CSV is every column of ``summary`` at full precision, for machines.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt={fmt!r} is not allowed; allowed: {', '.join(FORMATS)}")
    if fmt == "csv":
        return summary.to_csv(index=False)
    header, body = _cells(summary, fmt)
    align = ("left", "right", "right", "right", "right", "right", "right", "right", "right",
             "left", "right", "left", "left")
    if fmt == "markdown":
        table = tabulate(body, header, tablefmt="pipe", disable_numparse=True, colalign=align)
        return f"{table}\n\n{conventions(summary)}\n"
    table = tabulate(body, header, tablefmt="latex_raw", disable_numparse=True, colalign=align)
    note = latex_escape(conventions(summary))
    for plain, latex in (("±", r"$\pm$"), ("Δ", r"$\Delta$"), ("★", r"$\star$"),
                         ("†", r"$^\dagger$")):
        note = note.replace(plain, latex)
    return f"{table}\n\\par\\smallskip{{\\footnotesize {note}}}\n"


def write_tables(summary: pd.DataFrame, out_dir: Path | str) -> list[Path]:
    """Write ``summary.md``, ``summary.csv`` and ``summary.tex`` into ``out_dir``; return paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt, name in (("markdown", "summary.md"), ("csv", "summary.csv"),
                      ("latex", "summary.tex")):
        path = out_dir / name
        path.write_text(format_summary(summary, fmt), encoding="utf-8")
        paths.append(path)
    return paths
