"""The ``ablate`` command line: one subcommand per stage, each a thin call into the package.

Bad input (a ValueError, a missing file) prints ``ablate: error: <message>`` and exits 2, with
no traceback.

``--plugin MODULE`` (repeatable; a module name or a .py path) on the commands that build variants
or read experiments imports that plugin before the command line is parsed, so the knobs and
values it registers have their flags (``ablate.common.plugins``).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .common.markdown import blocks, replace_block, table
from .common.plugins import load_plugins
from .models.variant import KNOBS, Variant, list_knobs
from .scale.storage import DEFAULT_HEARTBEAT_S, open_store, redact

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}
#: The commands that build variants or read experiments: they take ``--plugin``.
PLUGIN_COMMANDS = ("knobs", "profile", "train", "run", "report", "search", "worker", "launch")


def _command(name: str):
    def deco(fn):
        COMMANDS[name] = fn
        return fn
    return deco


def _add_plugin_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import this module (a name on sys.path or a .py file) first; "
                             "repeatable")


def _add_track_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--track", action="append", default=[], metavar="SINK",
                        help="also log to this experiment tracker (tensorboard, mlflow, wandb; "
                             "docs/tracking.md), on top of the file's tracking:; repeatable")


def _with_tracking(exp, names: list[str]):
    """``exp`` with the ``--track`` sinks added (validated: known, and installed)."""
    try:
        return exp.with_tracking(names)
    except ValueError as exc:
        raise ValueError(f"--track: {exc}") from None


def _report_and_publish(exp, exp_dir: Path, runs):
    """Write ``exp``'s report from ``runs``, publish it to its trackers; return the report's
    path and the summary."""
    from .analysis.report import write_report
    from .analysis.stats import summarize
    from .tracking.cell import Tracking
    from .tracking.study import publish

    report = write_report(exp_dir, runs, exp.baseline.id, exp.metric,
                          title=f"{exp.name}: {exp.description}" if exp.description else None,
                          equivalence=exp.margins(), looks=exp.looks)
    summary = summarize(runs, exp.baseline.id, exp.metric,
                        margin=exp.margins().get(exp.metric), looks=exp.looks)
    if exp.tracking:
        tracking = Tracking(exp.tracking, exp_dir, exp.name)
        publish(tracking, exp_dir, exp.config, runs, summary, report)
        for sink in tracking.sinks:
            print(f"tracked: {sink.where()}")
        tracking.close()
    return report, summary


def _pass_on(args: argparse.Namespace, *names: str) -> list[str]:
    """The repeatable options ``names`` as given, for a command this one starts."""
    return [a for name in names for value in getattr(args, name)
            for a in (f"--{name}", value)]


def _preload_plugins(argv: list[str]) -> None:
    """Import the ``--plugin`` modules of a plugin command before the parser is built from the
    registries, so a knob a plugin registers has its flag."""
    if not argv or argv[0] not in PLUGIN_COMMANDS:
        return
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--plugin", action="append", default=[])
    load_plugins(pre.parse_known_args(argv[1:])[0].plugin)


def _add_variant_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("variant (knob flags override --variant / --variant-file)")
    group.add_argument("--variant", help="a variant id, e.g. r18-MAA-w128.64.32.32-k23-cat-ds-bil")
    group.add_argument("--variant-file", type=Path, help="YAML mapping of knob values")
    for name in KNOBS.names():
        spellings = dict.fromkeys((f"--{name}", f"--{name.replace('_', '-')}"))
        group.add_argument(*spellings, dest=name, default=None, help=KNOBS.get(name).allowed)


def variant_from_args(args: argparse.Namespace) -> Variant:
    """The variant named by ``--variant`` / ``--variant-file``, with knob flags applied on top."""
    if args.variant and args.variant_file:
        raise ValueError("give --variant or --variant-file, not both")
    overrides = {n: getattr(args, n) for n in KNOBS.names() if getattr(args, n) is not None}
    if args.variant:
        return Variant.from_id(args.variant).replace(**overrides)
    if args.variant_file:
        return Variant.from_dict(_read_yaml_mapping(args.variant_file)).replace(**overrides)
    return Variant.from_dict(overrides)  # defaults fit the encoder given (skips: all of its own)


def _read_yaml_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of knob values, got {type(data).__name__}")
    return data


def _parse_size(text: str) -> tuple[int, int, int]:
    """``224`` -> (3, 224, 224); ``3x224x224`` or ``3,160,224`` as given."""
    parts = [int(p) for p in text.replace(",", "x").split("x")]
    if len(parts) == 1:
        return (3, parts[0], parts[0])
    if len(parts) == 2:
        return (3, *parts)
    if len(parts) == 3:
        return tuple(parts)
    raise ValueError(f"--input-size={text!r} is not allowed; allowed: S, HxW or CxHxW")


@_command("knobs")
def _knobs(args: argparse.Namespace) -> int:
    rows = list_knobs(args.pattern)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['knob']}  (default: {row['default']}; reaches the {row['reaches']})\n"
              f"    {row['help']}")
        if row["choices"] and KNOBS.get(row["knob"]).values is not None:
            print("    allowed (id token):")  # each value explained on its line
        else:
            print(f"    allowed: {row['allowed']}")
        for line in row["choices"]:
            print(f"      {line}")
    return 0


@_command("profile")
def _profile(args: argparse.Namespace) -> int:
    from .models.cost_diff import variant_cost_diff
    from .models.model import build_model
    from .models.profile import profile_model

    variant = variant_from_args(args)
    baseline = _diff_baseline(args.diff) if args.diff else None  # refused before profiling
    size = _parse_size(args.input_size)
    model = build_model(variant, num_classes=args.num_classes, in_channels=size[0])
    prof = profile_model(model, size)
    row = {"variant": variant.id, **prof.row()}
    diff = variant_cost_diff(baseline, variant, size, args.num_classes) if baseline else None
    if args.json:
        print(json.dumps({**row, "diff": diff.to_dict()} if diff else row))
        return 0
    print(f"variant       {variant.id}\ninput         {row['profile_input']} (batch 1)")
    print(f"params        {prof.params:,} ({prof.params_m:.3f} M)")
    print(f"GMACs exact   {prof.gmacs_exact:.4f}  (conv + linear, from layer shapes)")
    print(f"GMACs thop    {prof.gmacs_thop:.4f}  (+ BN, avg-pool, nn.Upsample)")
    print(f"GMACs fvcore  {prof.gmacs_fvcore:.4f}  (+ BN, interpolation)")
    print(f"GFLOPs torch  {prof.gflops_torch:.4f}  (FlopCounterMode, 2 FLOPs per MAC)")
    if prof.note:
        print(f"note          {prof.note}")
    for name, ops in prof.unpriced.items():
        print(f"not priced by {name:<7} {', '.join(ops) or '-'}")
    if prof.mismatches:
        print(f"WARNING conv+linear MACs differ from the exact count: {', '.join(prof.mismatches)}")
    if diff:
        print(f"\nwhere it costs against {diff.baseline} (per module, largest change first; "
              f"params, and exact conv + linear MACs for one {diff.size} input)\n")
        print(diff.table() if len(diff.rows) else "no module differs")
        print(diff.summary())
    return 0


def _diff_baseline(baseline_id: str) -> Variant:
    """The baseline of ``ablate profile --diff BASELINE_ID``; a bad id is refused naming it."""
    try:
        return Variant.from_id(baseline_id)
    except ValueError as exc:
        raise ValueError(f"--diff {baseline_id!r} is not a variant id: {exc}") from None


@_command("train")
def _train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .data import DataSpec
    from .evaluation.metrics import METRICS
    from .results import OK, run_dir
    from .runner import run_one

    variant = variant_from_args(args)
    overrides = {k: v for k, v in (("epochs", args.epochs), ("steps", args.steps),
                                   ("images", args.images), ("image_size", args.image_size),
                                   ("device", args.device), ("loss", args.loss)) if v is not None}
    config = load_config(args.preset, **overrides)
    options = _read_yaml_mapping(args.data_options) if args.data_options else {}
    data = DataSpec(args.data, args.root, config.image_size, options)
    out = run_dir(args.out, variant, args.seed)
    row = run_one(variant, data, config, args.seed, out, args.profile_size,
                  experiment="train", preset=args.preset, progress=not args.json and None)
    if args.json:
        print(json.dumps(row, default=str))
    else:
        for key in ("variant", "seed", "status", "error", "dataset", "image_size", "budget",
                    "epochs", "steps",
                    *METRICS.names(), "params_m", "gmacs_thop", "gmacs_fvcore", "gflops_torch",
                    "train_time_s", "train_images_per_s", "latency_ms", "device"):
            value = row.get(key)
            print(f"{key:<20} {value:.4f}" if isinstance(value, float) else f"{key:<20} {value}")
        print(f"{'output':<20} {out}")
    return 0 if row["status"] == OK else 1


@_command("run")
def _run(args: argparse.Namespace) -> int:
    from .analysis.stats import convergence_warning
    from .analysis.tables import format_summary
    from .experiment import load_experiment
    from .results import OK
    from .runner import run_experiment
    from .scale.jobs import check_jobs, local_jobs, run_jobs

    given = {name: check_jobs(f"--{name.replace('_', '-')}", getattr(args, name))
             for name in ("jobs", "jobs_per_gpu") if getattr(args, name) is not None}
    failed = 0
    for path in args.experiments:
        exp = _with_tracking(load_experiment(path), args.track)
        jobs, device = local_jobs(exp, given.get("jobs", exp.jobs), given.get("jobs_per_gpu"))
        if len(jobs) == 1:
            runs = run_experiment(exp, args.results, retry_failed=args.retry_failed)
        else:
            if args.retry_failed:
                raise ValueError(f"--retry-failed is not allowed with {len(jobs)} jobs; "
                                 "allowed: with --jobs 1 (failed rows are redone in one process)")
            done = run_jobs(path, exp, jobs, device, args.results,
                           worker_args=_pass_on(args, "plugin", "track"))
            runs, failed = done.runs, failed + len(done.died) + done.missing
            if done.stopped:
                print(f"ablate: stopped; {len(runs)} finished run(s) kept in "
                      f"{Path(args.results) / exp.name}", file=sys.stderr)
                return 130
            if done.missing:
                print(f"ablate: {done.missing} run(s) of {exp.name} not run; run again to finish "
                      "them", file=sys.stderr)
            if runs.empty:
                continue
        exp_dir = Path(args.results) / exp.name
        report, summary = _report_and_publish(exp, exp_dir, runs)
        print(f"\n{exp.name} ({len(runs)} runs)\n")
        warning = convergence_warning(summary)
        if warning:
            print(f"{warning}\n")
        print(format_summary(summary, "markdown"))
        print(f"\nreport: {report}")
        failed += int((runs["status"] != OK).sum())
    if failed:
        print(f"ablate: {failed} run(s) failed; see the reports", file=sys.stderr)
    return 1 if failed else 0


@_command("report")
def _report(args: argparse.Namespace) -> int:
    from .experiment import load_experiment
    from .results import load_runs

    for path in args.experiments:
        exp = _with_tracking(load_experiment(path), args.track)
        exp_dir = Path(args.results) / exp.name
        if not (exp_dir / "runs.csv").is_file():
            raise FileNotFoundError(f"no stored runs in {exp_dir}; run `ablate run {path}` first")
        report, _ = _report_and_publish(exp, exp_dir, load_runs(exp_dir))
        print(report)
    return 0


@_command("bench")
def _bench(args: argparse.Namespace) -> int:
    import dataclasses

    from .bench import SMOKE, BenchSettings, bench_devices, default_variants, run_bench

    base = SMOKE if args.smoke else BenchSettings()
    given = {k: getattr(args, k) for k in ("image_size", "batch", "steps", "repeats",
                                           "overhead_rounds", "switch_rounds", "threads")
             if getattr(args, k) is not None}
    if args.no_compile:
        given["compile"] = False
    settings = dataclasses.replace(base, **given)
    variants = default_variants(args.variants)
    if args.smoke:
        variants = variants[:1]
    for device in bench_devices(args.device):
        csv_path, md_path = run_bench(device, variants, args.out, settings)
        print(f"{device.type}: {csv_path} {md_path}")
    return 0


@_command("search")
def _search(args: argparse.Namespace) -> int:
    import optuna

    from .scale.search import default_storage, run_search
    from .scale.search_report import write_search_report
    from .scale.search_spec import load_search
    from .tracking.cell import Tracking
    from .tracking.study import publish_search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = load_search(args.search).with_plugins(args.plugin)  # stored with the study
    spec = spec.with_tracking(_with_tracking(spec.experiment, args.track).tracking)
    url = args.storage or spec.storage or default_storage(spec.name, args.results)
    store = open_store(url, args.heartbeat, args.grace)
    print(f"study {spec.name} in {redact(url)}: {spec.trials} complete trials asked")
    complete = spec.trials
    if not args.report_only:
        complete = run_search(spec, store, args.results, sampler_seed=spec.seed)
    report = write_search_report(spec, store, args.results)
    print(f"report: {report}")
    if spec.tracking:
        tracking = Tracking(spec.tracking, report.parent, spec.name)
        publish_search(tracking, report.parent, report)
        tracking.close()
    if complete < spec.trials:
        print(f"ablate: {complete} of {spec.trials} trials complete", file=sys.stderr)
        return 1
    return 0


@_command("worker")
def _worker(args: argparse.Namespace) -> int:
    import optuna

    from .experiment import load_experiment
    from .results import OK
    from .scale.grid import run_grid
    from .scale.search import default_storage, load_study_spec, run_search
    from .scale.search_spec import load_search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    given = [g for g in (args.search, args.study, args.experiment) if g]
    if len(given) != 1:
        raise ValueError("give one of: a search file, --study NAME, or --experiment FILE")
    if args.experiment:
        exp = _with_tracking(load_experiment(args.experiment), args.track)
        if args.threads is not None:
            exp = dataclasses.replace(exp, config=exp.config.replace(threads=args.threads))
        url = args.storage or f"sqlite:///{args.results / exp.name / 'grid.db'}"
        store = open_store(url, args.heartbeat, args.grace)
        most = "at most " if exp.adaptive else ""
        print(f"experiment {exp.name}: {most}{len(exp.runs())} runs shared in {redact(url)}")
        runs = run_grid(exp, store, args.results)
        failed = int((runs["status"] != OK).sum())
        print(f"{exp.name}: {len(runs)} runs ({failed} failed) in {args.results / exp.name}")
        return 1 if failed else 0
    if args.study:
        url = args.storage or default_storage(args.study, args.results)
        store = open_store(url, args.heartbeat, args.grace)
        spec = load_study_spec(args.study, store)
    else:
        spec = load_search(args.search).with_plugins(args.plugin)
        url = args.storage or spec.storage or default_storage(spec.name, args.results)
        store = open_store(url, args.heartbeat, args.grace)
    spec = spec.with_tracking(_with_tracking(spec.experiment, args.track).tracking)
    print(f"study {spec.name} in {redact(url)}: {spec.trials} complete trials asked")
    complete = run_search(spec, store, args.results)
    print(f"study {spec.name}: {complete} of {spec.trials} trials complete")
    return 0 if complete >= spec.trials else 1


@_command("launch")
def _launch(args: argparse.Namespace) -> int:
    from .scale import slurm

    if args.launch_command == "status":
        launches = slurm.read_launches(args.results, args.name)
        if not launches:
            print(f"no launch under {args.results} (ablate launch slurm FILE makes one)")
        tasks = [slurm.task_states(launch) for launch in launches]
        for launch, states in zip(launches, tasks):
            print(slurm.status_text(launch, states))
        return 1 if any(t.failed for states in tasks for t in states) else 0
    options = {k: getattr(args, k) for k in ("partition", "time", "cpus_per_task", "gpus", "mem",
                                             "array", "account", "qos")}
    launch = slurm.plan_launch(args.file, args.results, args.storage, args.heartbeat, args.grace,
                               tuple(args.plugin), tuple(args.track), **options)
    nodes = slurm.check_launch(launch)
    launch = slurm.submit(launch)
    print(f"submitted array job {launch.job_id}: {launch.spec.array} worker(s) of {launch.kind} "
          f"{launch.name} on partition {launch.spec.partition or 'default'} ({nodes} node(s)), "
          f"storage {redact(launch.storage)}\nlogs: {launch.folder}\n"
          f"follow: ablate launch status {launch.name} --results {args.results}")
    if not args.wait:
        return 0
    tasks = slurm.wait(launch, args.poll)
    print(slurm.status_text(launch, tasks))
    done, _, total = slurm.work_done(launch)
    return 0 if done == total and not any(t.failed for t in tasks) else 1


# ---------------------------------------------------------------------------------------------
# Generated docs: each block of docs/*.md that a registry owns, and the function that writes it.


def knobs_markdown() -> str:
    """The knob table of docs/models.md, from ``list_knobs()`` (what ``ablate knobs`` prints)."""
    rows = [(f"`{r['knob']}`", f"`{r['default']}`", r["allowed"], r["help"])
            for r in list_knobs()]
    return table(("knob", "default", "allowed", "meaning"), rows)


def _lazy(target: str) -> Callable[[], str]:
    """``"module:function"`` under ``ablate``, imported only when the block is written (the
    generators sit beside their registries, some of which load heavy libraries)."""
    module, function = target.split(":")

    def make() -> str:
        return getattr(importlib.import_module(f"ablate.{module}"), function)()

    return make


#: Generated block name -> (the page under docs/ that holds it, the function that writes it).
GENERATED: dict[str, tuple[str, Callable[[], str]]] = {
    "metrics": ("metrics.md", _lazy("evaluation.metrics:metrics_markdown")),
    "knobs": ("models.md", knobs_markdown),
    "presets": ("training.md", _lazy("config:presets_markdown")),
    "experiment-keys": ("experiments.md", _lazy("experiment:keys_markdown")),
    "train-keys": ("experiments.md", _lazy("config:train_keys_markdown")),
    "costs": ("experiments.md", _lazy("results:costs_markdown")),
    "search-keys": ("search.md", _lazy("scale.search_spec:keys_markdown")),
    "sinks": ("tracking.md", _lazy("tracking.sinks:sinks_markdown")),
    "slurm-keys": ("cluster.md", _lazy("scale.slurm_spec:keys_markdown")),
}
DOCS_DIR = Path(__file__).resolve().parents[1] / "docs"


def generate_docs(docs: Path = DOCS_DIR, check: bool = False) -> dict[Path, list[str]]:
    """Rewrite every generated block of the pages in ``docs`` (with ``check``: write nothing);
    returns each page whose committed text differed from what the code generates, with the
    names of its stale blocks."""
    stale: dict[Path, list[str]] = {}
    for page in dict.fromkeys(page for page, _ in GENERATED.values()):
        path = docs / page
        if not path.is_file():
            raise FileNotFoundError(f"no such page: {path}")
        text = new = path.read_text()
        for name, (where, make) in GENERATED.items():
            if where == page:
                new = replace_block(new, name, make())
                if blocks(new)[name] != blocks(text).get(name):
                    stale.setdefault(path, []).append(name)
        if new != text and not check:
            path.write_text(new)
    return stale


@_command("docs")
def _docs(args: argparse.Namespace) -> int:
    stale = generate_docs(args.docs, check=args.check)
    for path, names in stale.items():
        if args.check:
            print(f"ablate: {path} is stale ({', '.join(names)}); run `ablate docs`",
                  file=sys.stderr)
        else:
            print(f"{path}: rewrote {', '.join(names)}")
    return 1 if stale and args.check else 0


def _add_pool_parsers(sub) -> None:
    """The ``search`` and ``worker`` subcommands (a pool of workers on one storage)."""
    p = sub.add_parser("search", help="Optuna search over the knobs of a search file, then "
                                      "trials.csv, pareto.png and report.md")
    p.add_argument("search", type=Path, help="search YAML file (see ablate.scale.search_spec)")
    p.add_argument("--report-only", action="store_true",
                   help="rebuild the report from the storage, run no trial")
    workers = sub.add_parser("worker", help="join a search study, or share an experiment's runs, "
                                            "with other workers on one storage")
    workers.add_argument("search", type=Path, nargs="?", help="search YAML file")
    workers.add_argument("--study", help="join this running study (its settings are stored)")
    workers.add_argument("--experiment", type=Path,
                         help="experiment YAML: run its (variant, seed) cells, each exactly once")
    workers.add_argument("--threads", type=int, help="--experiment: train with this many CPU "
                         "threads (its train: threads; part of every run key)")
    for parser in (p, workers):
        _add_plugin_arg(parser)
        _add_track_arg(parser)
        parser.add_argument("--storage", help="Optuna storage URL: sqlite:///PATH (default "
                                              "results/<name>/study.db, grid.db for "
                                              "--experiment), journal:PATH, "
                                              "postgresql+psycopg://USER@HOST/DB")
        parser.add_argument("--results", type=Path, default=Path("results"), help="results root")
        parser.add_argument("--heartbeat", type=float, default=DEFAULT_HEARTBEAT_S,
                            help="seconds between a worker's heartbeats (default "
                                 f"{DEFAULT_HEARTBEAT_S})")
        parser.add_argument("--grace", type=float,
                            help="seconds without heartbeats before a worker is taken for dead: "
                                 "its slot or run is taken over, its trial failed and retried "
                                 "(default 2 x heartbeat)")


def _add_launch_parsers(sub) -> None:
    """``launch slurm FILE`` (an array of workers through submitit) and ``launch status``."""
    launch = sub.add_parser("launch", help="start workers on a cluster and follow them")
    kinds = launch.add_subparsers(dest="launch_command", required=True)
    p = kinds.add_parser("slurm", help="submit a SLURM job array of workers for an experiment "
                                       "or search file (docs/cluster.md)")
    p.add_argument("file", type=Path, help="experiment or search YAML file")
    p.add_argument("--partition", help="SLURM partition (default: the file's slurm: key, else "
                                       "the cluster's default)")
    p.add_argument("--time", type=int, help="minutes per array task (default 60); a task that "
                                            "reaches it is checkpointed and requeued")
    p.add_argument("--cpus-per-task", type=int, help="CPU cores per array task (default 1)")
    p.add_argument("--gpus", type=int, help="GPUs per array task (default 0)")
    p.add_argument("--mem", help="memory per array task, e.g. 16G (default: SLURM's)")
    p.add_argument("--array", type=int, help="array tasks: workers (default 2)")
    p.add_argument("--account", help="SLURM account")
    p.add_argument("--qos", help="SLURM quality of service")
    p.add_argument("--storage", help="storage URL the tasks share (default: the search file's, "
                                     "else results/<name>/study.db or grid.db): journal:PATH, "
                                     "postgresql+psycopg://USER@HOST/DB, sqlite:///PATH (one "
                                     "node, local disk)")
    p.add_argument("--heartbeat", type=float, default=DEFAULT_HEARTBEAT_S,
                   help=f"seconds between a worker's heartbeats (default {DEFAULT_HEARTBEAT_S})")
    p.add_argument("--grace", type=float, help="seconds without heartbeats before a worker is "
                                               "taken for dead (default 2 x heartbeat)")
    p.add_argument("--wait", action="store_true", help="wait until no task is queued or "
                                                       "running, then print the status")
    p.add_argument("--poll", type=float, default=10.0,
                   help="with --wait: seconds between looks at the queue (default 10)")
    _add_plugin_arg(p)
    _add_track_arg(p)
    status = kinds.add_parser("status", help="the tasks of a launch and the work done")
    status.add_argument("name", nargs="?", help="experiment or study name (default: every "
                                                "launch under --results)")
    for parser in (p, status):
        parser.add_argument("--results", type=Path, default=Path("results"), help="results root")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ablate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("knobs", help="list every knob, its allowed values and default")
    p.add_argument("pattern", nargs="?", help="fnmatch pattern over knob names")
    p.add_argument("--json", action="store_true")
    _add_plugin_arg(p)

    p = sub.add_parser("profile", help="params and MACs of one variant, without training")
    _add_variant_args(p)
    p.add_argument("--input-size", default="224", help="S, HxW or CxHxW (default 224)")
    p.add_argument("--num-classes", type=int, default=1,
                   help="output channels (default 1: a binary task, as shapes)")
    p.add_argument("--json", action="store_true", help="print the row as one JSON object")
    p.add_argument("--diff", metavar="BASELINE_ID", help="also print where the variant's params "
                   "and MACs differ from this baseline variant, module by module")
    _add_plugin_arg(p)

    p = sub.add_parser("train", help="train one variant, print its metrics and profile")
    _add_variant_args(p)
    p.add_argument("--data", default="shapes", help="dataset name (default shapes)")
    p.add_argument("--root", default=None, help="dataset folder (voc, pets, folder)")
    p.add_argument("--data-options", type=Path, help="YAML mapping of dataset options")
    p.add_argument("--preset", default="quick", help="training preset (default quick)")
    p.add_argument("--seed", type=int, default=0)
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, help="budget in epochs (replaces the preset's)")
    budget.add_argument("--steps", type=int, help="budget in optimizer steps")
    budget.add_argument("--images", type=int, help="budget in training images seen")
    p.add_argument("--image-size", type=int, help="override the preset's image size (pixels)")
    p.add_argument("--loss", help="override the preset's loss")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--profile-size", type=int, default=224, help="input side for params/MACs")
    p.add_argument("--out", type=Path, default=Path("results/single"), help="output folder")
    p.add_argument("--json", action="store_true", help="print the result row as one JSON object")
    _add_plugin_arg(p)

    for name, text in (("run", "run experiments: train, evaluate, profile, tables, report"),
                       ("report", "rebuild the tables, plots and report from stored runs")):
        p = sub.add_parser(name, help=text)
        p.add_argument("experiments", nargs="+", type=Path, help="experiment YAML file(s)")
        p.add_argument("--results", type=Path, default=Path("results"), help="results root")
        if name == "run":
            p.add_argument("--retry-failed", action="store_true", help="redo failed runs")
            p.add_argument("--jobs", metavar="N", help="worker processes that share the cells "
                           "(default: the experiment's jobs:, else 1); docs/parallel.md")
            p.add_argument("--jobs-per-gpu", metavar="K", help="CUDA: K jobs per visible GPU "
                           "(N = GPUs x K unless --jobs is given)")
        _add_plugin_arg(p)
        _add_track_arg(p)

    p = sub.add_parser("bench", help="speed: latency, images/s, memory; harness vs a bare loop "
                                     "and smp; cache vs decoding; speed switches")
    p.add_argument("--device", default="all", help="all (cpu, and cuda when there is one), "
                                                   "auto, cpu or cuda (default all)")
    p.add_argument("--variants", nargs="+", type=Path, default=None,
                   help="experiment YAML files whose variants to time, after the plain baseline "
                        "(default: the seed 002 pooling and skips quick studies)")
    p.add_argument("--image-size", type=int, help="pixels, a multiple of 32 (default 32, the "
                                                  "quick preset's)")
    p.add_argument("--batch", type=int, help="training and large-latency batch (default 16)")
    p.add_argument("--steps", type=int, help="training steps per timed epoch (default 10)")
    p.add_argument("--repeats", type=int, help="timed rounds per measurement (default 5)")
    p.add_argument("--overhead-rounds", type=int,
                   help="rounds of the harness-overhead section (default 30)")
    p.add_argument("--switch-rounds", type=int,
                   help="rounds of each speed switch against the plain path (default 12)")
    p.add_argument("--threads", type=int, help="CPU threads (default 0: every core)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    p.add_argument("--out", type=Path, default=Path("results/bench"), help="output folder")
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes, one variant, seconds (checks the outputs, not the speed)")
    _add_pool_parsers(sub)
    _add_launch_parsers(sub)

    p = sub.add_parser("docs", help="rewrite the generated blocks of docs/*.md from the registries")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 naming each page whose blocks are stale")
    p.add_argument("--docs", type=Path, default=DOCS_DIR,
                   help="docs folder (default: the repository's docs/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        _preload_plugins(argv)
    except ValueError as exc:
        print(f"ablate: error: --plugin: {exc}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        load_plugins(getattr(args, "plugin", []))  # imported above, unless abbreviated
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"ablate: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
