"""A search's tables and report: ``trials.csv``, parameter importances, ``report.md``.

``trials_table`` lists every trial of a study with its status (see ``ablate.scale.search``),
run-row columns and parameters; ``write_search_report`` writes it with ``importances.csv``,
``pareto.png`` and ``report.md``, whose summary, figures and failed runs are the ablation
report (``ablate.analysis.report``) of the ok and failed trials.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState
from tabulate import tabulate

from ..analysis.report import write_report
from ..analysis.stats import PARETO_COSTS, summarize
from ..common.checks import better_word, oriented
from ..common.files import write_text
from ..results import (
    COSTS,
    FAILED,
    LOST,
    OK,
    PRUNED,
    RUNNING,
    SKIPPED,
    WAITING,
    columns,
    write_runs,
)
from ..training.convergence import is_converged
from .ledger import LOST_ATTR, RETRY_HISTORY
from .search_spec import OBJECTIVES, SearchSpec
from .storage import Store, redact


def trials_table(study: optuna.Study, spec: SearchSpec) -> pd.DataFrame:
    """One row per trial: ``trial``, ``trial_state``, the run-row columns, ``retry_of``, and
    ``param_<name>`` per searched parameter.

    A RUNNING or WAITING trial is ``running`` or ``waiting`` and a trial failed as lost
    (``ablate.scale.ledger``) ``lost``, whatever row its worker stored before dying; a lost
    trial names its retry once the retry has been taken (not while it waits)."""
    trials = study.get_trials(deepcopy=False)
    retried_as = {}
    for t in trials:
        history = t.system_attrs.get(RETRY_HISTORY) or []
        if history:
            retried_as[history[-1]] = t
    names = list(dict.fromkeys(k for t in trials for k in t.distributions))
    rows = []
    for t in trials:
        row = {"trial": t.number, "trial_state": t.state.name,
               **{c: t.user_attrs.get(c) for c in columns()}}
        history = t.system_attrs.get(RETRY_HISTORY) or []
        row["retry_of"] = history[-1] if history else None
        row.update({f"param_{n}": t.params.get(n) for n in names})
        unended = {TrialState.RUNNING: RUNNING, TrialState.WAITING: WAITING}.get(t.state)
        lost = t.state.is_finished() and (row["status"] is None or t.state == TrialState.FAIL and (
            LOST_ATTR in t.system_attrs or row["status"] != FAILED))
        if unended or lost:
            row["status"] = unended or LOST
            row["error"] = None
            if lost:
                again = retried_as.get(t.number)
                row["error"] = (t.system_attrs.get(LOST_ATTR, "its worker stopped sending "
                                                              "heartbeats")
                                + (f"; retried as trial {again.number}" if again is not None
                                   and again.state != TrialState.WAITING else ""))
            if len(t.params) == len(spec.space):
                try:
                    row["variant"] = spec.variant(t.params).id
                except ValueError:
                    pass
        rows.append(row)
    header = ["trial", "trial_state", *columns(), "retry_of", *(f"param_{n}" for n in names)]
    return pd.DataFrame(rows, columns=header)


def epochs_saved(trials: pd.DataFrame) -> int:
    """Training epochs the pruner saved: asked epochs minus epochs run, over pruned trials."""
    pruned = trials[trials["status"] == PRUNED]
    return int((pd.to_numeric(pruned["epochs"]) - pd.to_numeric(pruned["epochs_run"])).sum())


def param_importances(study: optuna.Study, spec: SearchSpec) -> pd.DataFrame:
    """Optuna's parameter importances (its default evaluator) per objective, over complete trials.

    ``attrs["notes"]`` keeps Optuna's warnings (e.g. too few trials: importances all equal).
    """
    rows, notes = [], []
    for i, (name, better) in enumerate(zip(spec.objectives, spec.betters)):
        sign = -oriented(better)  # the evaluator looks for low targets
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            scores = optuna.importance.get_param_importances(
                study, target=lambda t, i=i, sign=sign: sign * t.values[i])
        notes += [str(w.message) for w in caught
                  if "computes the importances of params to achieve low" not in str(w.message)]
        rows += [{"objective": name, "param": p, "importance": v} for p, v in scores.items()]
    table = pd.DataFrame(rows, columns=["objective", "param", "importance"])
    table.attrs["notes"] = list(dict.fromkeys(notes))
    return table


def write_search_report(spec: SearchSpec, store: Store,
                        results_dir: str | Path = "results") -> Path:
    """Write ``trials.csv``/``.parquet``, ``importances.csv``, ``pareto.png`` and ``report.md``.

    The summary, figures and failed-runs sections come from
    ``ablate.analysis.report.write_report`` on the ok and failed trials; a search section
    (objectives, counts, epochs saved by pruning, Pareto front or best trial, importances) is
    put before them.
    """
    exp_dir = Path(results_dir) / spec.name
    exp_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.load_study(study_name=spec.name, storage=store.optuna)
    table = trials_table(study, spec)
    write_runs(exp_dir, table, "trials")
    (exp_dir / "search.json").write_text(json.dumps(
        {"study": spec.name, "storage": redact(store.url), **spec.identity(),
         "trials": spec.trials, "max_trials": spec.max_trials}, indent=2))

    counts = table["status"].value_counts()
    skipped = table[table["status"] == SKIPPED]["error"].fillna("")
    lines = ["## Search", "",
             f"- Study: `{spec.name}` in `{redact(store.url)}`; sampler {spec.sampler[0]}, "
             f"pruner {spec.pruner[0]}",
             "- Objectives: " + ", ".join(
                 f"{OBJECTIVES.get(o).label} (`{OBJECTIVES.get(o).column}`, "
                 f"{better_word(OBJECTIVES.get(o).better)} is better)" for o in spec.objectives)
             + f"; costs at {spec.profile_size}x{spec.profile_size}",
             f"- Trials: {int(counts.get(OK, 0))} complete of {spec.trials} asked; "
             f"{int(counts.get(PRUNED, 0))} pruned ({epochs_saved(table)} epochs saved by "
             f"pruning), {int(counts.get(SKIPPED, 0))} skipped "
             f"({int(skipped.str.startswith('over budget').sum())} over budget, "
             f"{int(skipped.str.startswith('duplicate').sum())} duplicates, "
             f"{int(skipped.str.startswith('invalid').sum())} invalid), "
             f"{int(counts.get(FAILED, 0))} failed, {int(counts.get(LOST, 0))} lost with "
             "their worker (retried)"]
    lines.append(_convergence_line(table))
    if spec.budget_gmacs is not None:
        lines.append(f"- Budget: GMACs (thop) <= {spec.budget_gmacs:g}, checked on a throw-away "
                     "copy of each variant before any training")
    lines += ["- Every trial, with its parameters and why it ended: [trials.csv](trials.csv)", ""]

    runs = table[table["status"].isin([OK, FAILED])][list(columns())]
    runs = runs.reset_index(drop=True)
    ok = runs[runs["status"] == OK]
    title = f"Search report: {spec.name}" + (f": {spec.description}" if spec.description else "")
    path = exp_dir / "report.md"
    if ok.empty:
        lines += _front(study, spec, None) + _importances(study, spec, exp_dir)
        path.write_text("\n".join([f"# {title}", "", *lines,
                                   "No complete trial yet: nothing to summarize."]) + "\n")
        return path
    first = OBJECTIVES.get(spec.metric)
    baseline = spec.baseline.id if (ok["variant"] == spec.baseline.id).any() else \
        ok.sort_values(first.column, ascending=first.better == "min")["variant"].iloc[0]
    lines += _front(study, spec, summarize(runs, baseline, spec.metric))
    lines += _importances(study, spec, exp_dir)
    write_report(exp_dir, runs, baseline, spec.metric, title=title)
    figure = exp_dir / "plots" / f"{spec.metric}_vs_{PARETO_COSTS[0]}.png"
    if figure.is_file():
        shutil.copyfile(figure, exp_dir / "pareto.png")
        lines += ["### Pareto plot", "", f"![{first.label} vs "
                  f"{COSTS.get(PARETO_COSTS[0]).label}, Pareto front](pareto.png)", ""]
    reference = f"`{baseline}`" + ("" if baseline == spec.baseline.id else
                                   ", the best trial: the baseline did not complete")
    lines += ["### How the summary below was made", "",
              f"Each complete or failed trial is one variant trained with seed {spec.seed}; the "
              "summary, figures and failed runs below are the ablation report of those runs "
              f"(reference: {reference}). With one seed per variant no interval or test "
              "applies. Pruned, skipped and lost trials are left out; trials.csv lists them.",
              ""]
    report = path.read_text().splitlines()
    path.write_text("\n".join([report[0], "", *lines, *report[1:]]).rstrip() + "\n")
    return path


def _convergence_line(table: pd.DataFrame) -> str:
    """How many complete trials converged, naming those still improving
    (ablate.training.convergence)."""
    ok = table[table["status"] == OK]
    if "converged" not in ok.columns or ok.empty:
        return "- Convergence: not recorded"
    still = ok[~ok["converged"].map(is_converged)]
    line = f"- Convergence: {len(ok) - len(still)} of {len(ok)} complete trials converged"
    if still.empty:
        return line
    names = ", ".join(f"trial {n} (`{v}`)" for n, v in zip(still["trial"], still["variant"]))
    return (f"{line}; **still improving: {names}** — for these the ranking measures training "
            "speed, not architecture")


def _front(study: optuna.Study, spec: SearchSpec, summary: pd.DataFrame | None) -> list[str]:
    """The Pareto front (or best trial); with a cost objective that has Pareto classes
    (``ablate.analysis.pareto``), each trial's class, or "one seed" where its variant has one
    run and so no interval to place it with."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not complete:
        return []
    best = study.best_trials if len(spec.objectives) > 1 else [study.best_trial]
    heads = ["Trial", "Variant", *(OBJECTIVES.get(o).label for o in spec.objectives)]
    rows = [[t.number, f"`{t.user_attrs.get('variant', '')}`",
             *(f"{v:.4f}" for v in t.values)] for t in sorted(best, key=lambda t: t.values[-1])]
    title = "Pareto front" if len(spec.objectives) > 1 else "Best trial"
    column = next((f"pareto_{o}" for o in spec.objectives if o in PARETO_COSTS), None)
    note = []
    if column is not None and summary is not None and len(spec.objectives) > 1:
        by_variant = summary.set_index("variant")
        heads.append("Class with uncertainty")
        for row, t in zip(rows, sorted(best, key=lambda t: t.values[-1])):
            variant = t.user_attrs.get("variant", "")
            seeds = int(by_variant["n_seeds"].get(variant, 0))
            row.append(by_variant[column].get(variant, "") if seeds > 1 else "one seed")
        single = int((summary["n_seeds"] == 1).sum())
        note = [f"Class: optimal, possibly optimal or dominated given each variant's interval "
                f"over seeds (ablate.analysis.pareto), for trials whose variant ran more than "
                f"one seed. {single} of {len(summary)} complete variants ran one seed (seed "
                f"{spec.seed}): for those the front above is drawn through single runs, whose "
                "order another seed could change.", ""]
    return [f"### {title}", "", tabulate(rows, heads, tablefmt="pipe", disable_numparse=True),
            "", *note]


def _importances(study: optuna.Study, spec: SearchSpec, exp_dir: Path) -> list[str]:
    lines = ["### Parameter importances", ""]
    complete = sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    if complete < 2:
        return lines + [f"Not computed: {complete} complete trial(s); at least 2 are needed.", ""]
    try:
        imp = param_importances(study, spec)
    except (ValueError, RuntimeError) as exc:
        return lines + [f"Not computed: {exc}", ""]
    write_text(exp_dir / "importances.csv", imp.to_csv(index=False))
    rows = [[o, p, f"{v:.3f}"] for o, p, v in imp.itertuples(index=False)]
    notes = "".join(f" Optuna warns: {n}" for n in imp.attrs["notes"])
    return lines + [tabulate(rows, ["Objective", "Parameter", "Importance"], tablefmt="pipe",
                             disable_numparse=True), "",
                    "Optuna's default importance evaluator over the complete trials "
                    f"([importances.csv](importances.csv)).{notes}", ""]
