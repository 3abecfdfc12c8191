"""Optuna search over the knob space: the best Dice for the least compute.

A search file is an experiment file (dataset, preset, train, baseline, profile_size) with a
space to search instead of variants to enumerate::

    study: search_quick            # Optuna study name and results/<study>/ (default: file stem)
    description: ...
    dataset: {name: shapes, options: {n_train: 128}}
    preset: quick
    train: {epochs: 2}             # overrides of the preset (TrainConfig keys)
    seed: 0                        # training seed of every trial, and the sampler's seed
    baseline: {block: dsconv}      # knobs outside the space; also enqueued as the first trial
    space:                         # knob -> choices; parameter names are the knob names
      pool: [M, MAM, MAA, AAM]
      width_mult: [0.5, 1.0]       # scales the baseline widths (or widths: [[128,64,32,32], ...])
      skips: [[e2, e3], [e0, e1, e2, e3], none]
    objectives: dice,gmacs         # a metric, then costs to minimize (gmacs, params, latency)
    trials: 8                      # complete trials to reach, over every worker of the study
    budget_gmacs: 5                # optional: skip variants above it, without training them
    pruner: none                   # none | median | hyperband, or {name: median, n_warmup_steps: 1}
    sampler: tpe                   # tpe | nsga2 | random, or {name: nsga2, population_size: 8}
    storage: sqlite:///results/search_quick/study.db   # the default; see ablate.distributed
    max_trials: 80                 # optional: stop after this many trials in any state
    profile_size: 224              # square input for params / MACs (default 224)

Categorical choices are stored as Optuna-storable values: widths ``"128,64,32,32"``, skips
``"e2,e3"`` or ``"none"``, pool orders canonical (``"MAA"``).

How a trial ends (``status`` in ``trials.csv``; only ``ok`` counts towards ``trials``):

    ok       trained; Optuna state COMPLETE with the objective values of its row
    pruned   stopped early by the pruner on the per-epoch validation metric (PRUNED)
    skipped  not trained (PRUNED): over the GMACs budget (profiled on a throw-away copy), an
             invalid knob combination, or a variant another trial of the study already ran
    failed   training failed (non-finite loss, out of memory, ...): FAIL
    lost     its worker stopped sending heartbeats (killed): FAIL, and retried as a new trial

Every trial stores its result row (the columns of an ablation run, ``ablate.runner.columns()``) as
user attributes and in ``results/<study>/runs/<variant>/seed<k>/``, so the report is built by
the same code as an ablation's, from the ok and failed trials (``stats.summarize`` accepts no
other status); ``trials.csv`` lists every trial.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, NoReturn

import optuna
import pandas as pd
from optuna.trial import TrialState
from tabulate import tabulate

from .. import runner
from ..config import TrainConfig
from ..data import DataSpec, load_dataset
from ..experiment import ExperimentError, parse_experiment, read_mapping
from ..files import write_text
from ..metrics import METRICS
from ..models.variant import KNOBS, Variant
from ..registry import Registry
from .distributed import Claims, Store, beating, fail_stale_trials, redact, worker_id

KEYS = ("study", "description", "dataset", "preset", "train", "seed", "baseline", "space",
        "objectives", "trials", "budget_gmacs", "pruner", "sampler", "storage", "max_trials",
        "profile_size")
WIDTH_MULT = "width_mult"
STATUSES = ("ok", "pruned", "skipped", "failed", "lost", "running", "waiting")
_SPEC_ATTR = "ablate:search"
_CLAIM_ATTR = "claim_owner"
_MAX_ENUMERATED = 20_000


@dataclass(frozen=True)
class Objective:
    """One objective: the result-row column it reads, which way is better, its label."""

    column: str
    direction: str
    label: str


OBJECTIVES: Registry = Registry("objective")
for _metric in METRICS.names():
    _goal = "maximize" if METRICS.get(_metric).better == "max" else "minimize"
    OBJECTIVES.register(_metric, help=f"validation {METRICS.get(_metric).label} of the last "
                                      f"epoch ({_goal})")(
        Objective(_metric, _goal, METRICS.get(_metric).label))
OBJECTIVES.register("gmacs", help="1e9 multiply-accumulates (thop) at profile_size (minimize)")(
    Objective("gmacs_thop", "minimize", "GMACs"))
OBJECTIVES.register("params", help="parameters, millions (minimize)")(
    Objective("params_m", "minimize", "Params (M)"))
OBJECTIVES.register("latency", help="inference latency, ms (minimize)")(
    Objective("latency_ms", "minimize", "Latency (ms)"))

SAMPLERS: Registry = Registry("sampler")
SAMPLERS.register("tpe", help="TPESampler: Optuna's default, one or several objectives")(
    optuna.samplers.TPESampler)
SAMPLERS.register("nsga2", help="NSGAIISampler: genetic, several objectives")(
    optuna.samplers.NSGAIISampler)
SAMPLERS.register("random", help="RandomSampler")(optuna.samplers.RandomSampler)

PRUNERS: Registry = Registry("pruner")
PRUNERS.register("none", help="never prune")(lambda epochs, **options: optuna.pruners.NopPruner())
PRUNERS.register("median", help="MedianPruner: below the median of earlier trials at an epoch")(
    lambda epochs, **options: optuna.pruners.MedianPruner(**options))
PRUNERS.register("hyperband", help="HyperbandPruner over 1..epochs epochs")(
    lambda epochs, **options: optuna.pruners.HyperbandPruner(
        **{"min_resource": 1, "max_resource": epochs, **options}))


@dataclass(frozen=True)
class Param:
    """One searched knob (or ``width_mult``) and its Optuna-storable choices."""

    name: str
    choices: tuple[Any, ...]


@dataclass(frozen=True)
class SearchSpec:
    """A validated search file (see the module docstring)."""

    name: str
    data: DataSpec
    preset: str
    config: TrainConfig
    seed: int
    baseline: Variant
    space: tuple[Param, ...]
    objectives: tuple[str, ...]
    trials: int
    max_trials: int
    budget_gmacs: float | None = None
    pruner: tuple[str, tuple[tuple[str, Any], ...]] = ("none", ())
    sampler: tuple[str, tuple[tuple[str, Any], ...]] = ("tpe", ())
    storage: str | None = None
    profile_size: int = 224
    description: str = ""
    raw: str = field(default="{}", compare=False, repr=False)  # the file's mapping, as JSON

    @property
    def metric(self) -> str:
        return self.objectives[0]

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES.get(o).direction for o in self.objectives]

    @property
    def data_spec(self) -> DataSpec:
        """The dataset at the training size."""
        return dataclasses.replace(self.data, image_size=self.config.image_size)

    def variant(self, params: Mapping[str, Any]) -> Variant:
        """The variant a trial's parameters describe (other knobs from the baseline)."""
        knobs = {k: v for k, v in params.items() if k != WIDTH_MULT}
        if WIDTH_MULT in params:
            m = float(params[WIDTH_MULT])
            knobs["widths"] = tuple(max(1, round(w * m)) for w in self.baseline.widths)
        return self.baseline.replace(**knobs)

    def baseline_params(self) -> dict[str, Any] | None:
        """The baseline as parameters of the space, or None when the space cannot express it."""
        params = {}
        for p in self.space:
            value = 1.0 if p.name == WIDTH_MULT else _encode(p.name, getattr(self.baseline, p.name))
            if value not in p.choices:
                return None
            params[p.name] = value
        return params

    def identity(self) -> dict[str, Any]:
        """What must agree between workers of one study (not trials, max_trials, storage)."""
        return {"dataset": self.data.to_dict(), "preset": self.preset,
                "config": self.config.to_dict(), "seed": self.seed,
                "baseline": self.baseline.to_dict(),
                "space": {p.name: list(p.choices) for p in self.space},
                "objectives": list(self.objectives), "budget_gmacs": self.budget_gmacs,
                "pruner": [self.pruner[0], dict(self.pruner[1])],
                "sampler": [self.sampler[0], dict(self.sampler[1])],
                "profile_size": self.profile_size}


class SearchError(ExperimentError):
    """A bad search file; the message names the file and the key."""


def load_search(path: str | Path) -> SearchSpec:
    """Read and validate a search YAML file."""
    raw = read_mapping(path, "search", KEYS, SearchError)
    return parse_search(raw, default_name=Path(path).stem, source=str(path))


def parse_search(raw: Mapping[str, Any], default_name: str = "search",
                 source: str = "<search>") -> SearchSpec:
    """Validate a mapping (as read from YAML) into a ``SearchSpec``."""

    def fail(key: str, message: str) -> SearchError:
        return SearchError(f"{source}: {key}: {message}")

    unknown = sorted(set(raw) - set(KEYS), key=str)
    if unknown:
        raise SearchError(f"{source}: unknown key {', '.join(map(repr, unknown))}; "
                          f"allowed: {', '.join(KEYS)}")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise fail("seed", f"{seed!r} is not allowed; allowed: an integer >= 0")
    shared = {k: raw[k] for k in ("dataset", "preset", "train", "baseline", "profile_size",
                                  "description") if k in raw}
    name = str(raw.get("study") or default_name)
    try:
        exp = parse_experiment({**shared, "name": name, "seeds": [seed]}, name, source)
    except ExperimentError as exc:
        raise SearchError(str(exc).replace(": name:", ": study:")) from None

    space = raw.get("space")
    if not isinstance(space, Mapping) or not space:
        raise fail("space", "expected a mapping of knob -> list of choices, e.g. "
                            "{pool: [M, MAA], width_mult: [0.5, 1.0]}")
    if "widths" in space and WIDTH_MULT in space:
        raise fail("space", "give widths or width_mult, not both (width_mult scales the "
                            "baseline widths)")
    params = tuple(_param(name_, values, fail) for name_, values in space.items())

    objectives = raw.get("objectives", "dice")
    items = objectives.split(",") if isinstance(objectives, str) else objectives
    if not isinstance(items, list) or not items:
        raise fail("objectives", f"{objectives!r} is not allowed; allowed: a metric and costs, "
                                 "e.g. dice or dice,gmacs")
    items = tuple(str(o).strip() for o in items)
    for o in items:
        if o not in OBJECTIVES:
            raise fail("objectives", f"{o!r} is not allowed; allowed: {', '.join(OBJECTIVES)}")
    if items[0] not in METRICS or set(items[1:]) & set(METRICS) or len(set(items)) < len(items):
        raise fail("objectives", f"{','.join(items)!r} is not allowed; allowed: one metric "
                                 f"({', '.join(METRICS.names())}) first, then distinct costs "
                                 "(gmacs, params, latency)")

    trials = _count(raw.get("trials", 20), "trials", fail)
    max_trials = _count(raw.get("max_trials", 10 * trials), "max_trials", fail)
    if max_trials < trials:
        raise fail("max_trials", f"{max_trials} is less than trials={trials}")
    budget = raw.get("budget_gmacs")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))
                               or not budget > 0):
        raise fail("budget_gmacs", f"{budget!r} is not allowed; allowed: a positive number")
    pruner = _choice(raw.get("pruner", "none"), "pruner", PRUNERS, fail)
    if pruner[0] != "none" and len(items) > 1:
        raise fail("pruner", f"{pruner[0]!r} needs a single objective (Optuna cannot prune "
                             f"multi-objective trials); objectives: {','.join(items)}")
    sampler = _choice(raw.get("sampler", "tpe"), "sampler", SAMPLERS, fail)
    storage = raw.get("storage")
    if storage is not None and not isinstance(storage, str):
        raise fail("storage", "expected a storage URL (sqlite:///PATH, journal:PATH, "
                              "postgresql+psycopg://USER@HOST/DB)")

    spec = SearchSpec(
        name=name, data=exp.data, preset=exp.preset, config=exp.config, seed=seed,
        baseline=exp.baseline, space=params, objectives=items, trials=trials,
        max_trials=max_trials, budget_gmacs=None if budget is None else float(budget),
        pruner=pruner, sampler=sampler, storage=storage, profile_size=exp.profile_size,
        description=exp.description,
        raw=json.dumps({k: v for k, v in raw.items() if k != "storage"}, default=str))
    for kind, (key, options) in (("pruner", pruner), ("sampler", sampler)):
        try:
            _build(spec, kind)
        except (TypeError, ValueError) as exc:
            raise fail(kind, f"{key} with {dict(options)}: {exc}") from None
    n_variants, first_error = _count_variants(spec)
    if n_variants == 0:
        raise fail("space", f"no choice of the space makes a valid variant; e.g. {first_error}")
    if n_variants is not None and trials > n_variants:
        raise fail("trials", f"{trials} is more than the {n_variants} distinct valid variants "
                             "of the space (no variant is trained twice)")
    return spec


def _param(name: Any, values: Any, fail) -> Param:
    if name != WIDTH_MULT and name not in KNOBS:
        raise fail("space", f"unknown knob {name!r}; allowed: {', '.join(KNOBS.names())}, "
                            f"{WIDTH_MULT}")
    if not isinstance(values, list) or not values:
        raise fail(f"space.{name}", "expected a non-empty list of choices")
    choices = []
    for value in values:
        if name == WIDTH_MULT:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise fail(f"space.{name}", f"{value!r} is not allowed; allowed: positive "
                                            "numbers scaling the baseline widths")
            choices.append(float(value))
            continue
        try:
            choices.append(_encode(name, KNOBS.get(name).parse(value)))
        except ValueError as exc:
            raise fail(f"space.{name}", str(exc)) from None
    if len(set(choices)) < len(choices):
        raise fail(f"space.{name}", f"{values!r} lists the same choice twice")
    return Param(name, tuple(choices))


def _encode(name: str, value: Any) -> Any:
    """A parsed knob value as an Optuna-storable categorical choice."""
    if name == "widths":
        return ",".join(map(str, value))
    if name == "skips":
        return ",".join(value) or "none"
    return value


def _count(value: Any, key: str, fail) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise fail(key, f"{value!r} is not allowed; allowed: an integer >= 1")
    return value


def _choice(value: Any, key: str, registry: Registry, fail) -> tuple[str, tuple]:
    options: Mapping[str, Any] = {}
    if isinstance(value, Mapping):
        options = {k: v for k, v in value.items() if k != "name"}
        value = value.get("name")
    if value not in registry:
        raise fail(key, f"{value!r} is not allowed; allowed: {', '.join(registry)} "
                        "(a name, or a mapping with name and the Optuna class's options)")
    return value, tuple(sorted(options.items()))


def _build(spec: SearchSpec, kind: str, seed: int | None = None):
    if kind == "pruner":
        name, options = spec.pruner
        return PRUNERS.get(name)(spec.config.epochs, **dict(options))
    name, options = spec.sampler
    return SAMPLERS.get(name)(**{"seed": seed, **dict(options)})


def _count_variants(spec: SearchSpec) -> tuple[int | None, str]:
    """Distinct valid variants of the space (None when too many to list) and a first error."""
    if math.prod(len(p.choices) for p in spec.space) > _MAX_ENUMERATED:
        return None, ""
    ids, first_error = set(), ""
    for combo in itertools.product(*(p.choices for p in spec.space)):
        try:
            ids.add(spec.variant(dict(zip((p.name for p in spec.space), combo))).id)
        except ValueError as exc:
            first_error = first_error or str(exc)
    return len(ids), first_error


# ---------------------------------------------------------------------------------------------
# The study and its workers


def default_storage(name: str, results_dir: str | Path = "results") -> str:
    """``sqlite:///<results>/<name>/study.db``."""
    return f"sqlite:///{Path(results_dir) / name / 'study.db'}"


def open_study(spec: SearchSpec, store: Store, sampler_seed: int | None = None) -> optuna.Study:
    """Create the study or join it; a study made from other settings is refused."""
    study = optuna.create_study(study_name=spec.name, storage=store.optuna,
                                directions=spec.directions, load_if_exists=True,
                                sampler=_build(spec, "sampler", sampler_seed),
                                pruner=_build(spec, "pruner"))
    stored = study.user_attrs.get(_SPEC_ATTR)
    if stored is None:
        study.set_user_attr(_SPEC_ATTR, spec.raw)
        return study
    before = parse_search(json.loads(stored), spec.name, f"study {spec.name}")
    theirs, ours = before.identity(), spec.identity()
    differ = [k for k in ours if ours[k] != theirs.get(k)]
    if differ or [d.name.lower() for d in study.directions] != spec.directions:
        raise ValueError(f"study {spec.name!r} in {store} was made with other settings "
                         f"({', '.join(differ) or 'objectives'} differ); give the search another "
                         "study name, or delete the study (optuna delete-study)")
    if json.loads(stored).get("trials") != json.loads(spec.raw).get("trials"):
        study.set_user_attr(_SPEC_ATTR, spec.raw)
    return study


def load_study_spec(name: str, store: Store) -> SearchSpec:
    """The search a running study was made from (for ``ablate worker --study``)."""
    names = optuna.get_all_study_names(storage=store.optuna)
    if name not in names:
        raise ValueError(f"no study {name!r} in {store}; allowed: "
                         f"{', '.join(names) or '(none: start one with ablate search)'}")
    study = optuna.load_study(study_name=name, storage=store.optuna)
    if _SPEC_ATTR not in study.user_attrs:
        raise ValueError(f"study {name!r} in {store} was not made by ablate search")
    return parse_search(json.loads(study.user_attrs[_SPEC_ATTR]), name, f"study {name}")


class _RunFailed(Exception):
    """Training failed; the trial is recorded as FAIL and the worker goes on."""


@dataclass
class _Worker:
    """What one worker keeps between trials."""

    spec: SearchSpec
    store: Store
    exp_dir: Path
    data: Any                     # (DatasetInfo, splits), loaded once
    variants: Claims = field(init=False)  # variant id -> the trial that trains it
    _profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    _env: dict[str, str] | None = None

    def __post_init__(self) -> None:
        self.variants = self.store.claims(f"search/{self.spec.name}/variants")

    def profile(self, variant: Variant) -> dict[str, Any]:
        """Profile row of a throw-away, untrained copy of ``variant`` (cached)."""
        if variant.id not in self._profiles:
            from ..models.model import build_model
            from ..models.profile import profile_model

            info = self.data[0]
            model = build_model(variant, info.model_outputs, info.in_channels)
            size = (info.in_channels, self.spec.profile_size, self.spec.profile_size)
            self._profiles[variant.id] = profile_model(model, size).row()
        return self._profiles[variant.id]

    def env(self) -> dict[str, str]:
        if self._env is None:
            from ..env import environment, resolve_device

            self._env = environment(resolve_device(self.spec.config.device))
        return self._env


def run_search(spec: SearchSpec, store: Store, results_dir: str | Path = "results",
               progress: bool | None = None, cache_dir: str | Path = ".cache/ablate",
               sampler_seed: int | None = None, log: Callable[[str], None] | None = None) -> int:
    """Work on the study until it has ``spec.trials`` complete trials; return how many it has.

    Any number of workers (processes, machines) can run this on one store at once: each free
    slot among the asked trials is claimed by one worker, so the study ends with exactly
    ``spec.trials`` complete trials, and no variant is trained twice. Stops early, with fewer,
    once the study holds ``spec.max_trials`` finished trials.
    """
    from tqdm.auto import tqdm

    exp_dir = Path(results_dir) / spec.name
    exp_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(spec, store, sampler_seed)
    log = log or tqdm.write
    slots = store.claims(f"search/{spec.name}/slots")
    me = worker_id()
    _enqueue_baseline(spec, store, study, me)
    worker = _Worker(spec, store, exp_dir, load_dataset(spec.data_spec, cache_dir))
    bar = tqdm(total=spec.trials, desc=f"{spec.name} ({me})", unit="trial",
               disable=None if progress is None else not progress)
    while True:
        fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        complete = sum(t.state == TrialState.COMPLETE for t in trials)
        bar.update(min(complete, spec.trials) - bar.n)
        held = slots.all()
        if complete >= spec.trials or sum(c.state == "done" for c in held.values()) >= spec.trials:
            break
        if sum(t.state.is_finished() for t in trials) >= spec.max_trials:
            log(f"{spec.name}: stopped at max_trials={spec.max_trials} finished trials with "
                f"{complete} complete of {spec.trials} asked")
            break
        free = [str(i) for i in range(spec.trials)
                if str(i) not in held or held[str(i)].stale]
        slot = next((s for s in free if slots.claim(s, me)), None)
        if slot is None:  # every slot is done or being run: wait for a result or a dead worker
            time.sleep(min(1.0, store.heartbeat / 2))
            continue
        ended: dict[str, Any] = {}
        try:
            with beating(store.heartbeat, (slots, slot, me)):
                study.optimize(lambda trial: _objective(trial, worker), n_trials=1,
                               catch=(_RunFailed,),
                               callbacks=[lambda _, t: ended.update(trial=t)])
        except optuna.exceptions.UpdateFinishedTrialError:
            log(f"{spec.name}: a trial of this worker was failed as lost (its heartbeats were "
                "late) and is retried by the pool")
        finally:
            trial = ended.get("trial")
            if trial is not None and trial.state == TrialState.COMPLETE:
                slots.finish(slot, me, str(trial.number))
                bar.set_postfix_str(f"trial {trial.number} {trial.user_attrs.get('variant')}")
            else:
                slots.release(slot, me)
    bar.close()
    return sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))


def _enqueue_baseline(spec: SearchSpec, store: Store, study: optuna.Study, me: str) -> None:
    """Queue the baseline once per study, so the report has its reference."""
    params = spec.baseline_params()
    meta = store.claims(f"search/{spec.name}/meta")
    if params is not None and meta.claim("baseline enqueued", me):
        study.enqueue_trial(params, skip_if_exists=True)
        meta.finish("baseline enqueued", me)


def _objective(trial: optuna.Trial, worker: _Worker) -> float | list[float]:
    """One trial: parameters -> variant -> budget and duplicate checks -> train -> values."""
    spec = worker.spec
    params = {p.name: trial.suggest_categorical(p.name, list(p.choices)) for p in spec.space}
    try:
        variant = spec.variant(params)
    except ValueError as exc:
        _end(trial, None, "skipped", f"invalid variant: {exc}")
    row = runner.base_row(variant, spec.seed, spec.name, spec.preset, spec.config)
    row["dataset"] = worker.data[0].name
    if spec.budget_gmacs is not None:
        prof = worker.profile(variant)
        if prof["gmacs_thop"] > spec.budget_gmacs:
            row.update(prof)
            _end(trial, row, "skipped", f"over budget: {prof['gmacs_thop']:.4g} GMACs > "
                                        f"budget_gmacs={spec.budget_gmacs:g} (not trained)")
    owner = f"trial {trial.number}"
    if not worker.variants.claim(variant.id, owner, takeover=trial.user_attrs.get(_CLAIM_ATTR)):
        held = worker.variants.all().get(variant.id)
        done = held is not None and held.state == "done"
        _end(trial, row, "skipped", f"duplicate: {held.owner if held else 'another trial'} "
                                    f"{'ran' if done else 'is running'} this variant")
    trial.set_user_attr(_CLAIM_ATTR, owner)  # a retry of this trial takes the claim over
    with beating(worker.store.heartbeat, (worker.variants, variant.id, owner)):
        row, pruned = _train(trial, worker, variant)
        _store_row(trial, row)
        worker.variants.finish(variant.id, owner)
    if pruned is not None:
        raise pruned
    if row["status"] != "ok":
        raise _RunFailed(row["error"])
    values = [float(row[OBJECTIVES.get(o).column]) for o in spec.objectives]
    return values[0] if len(values) == 1 else values


def _train(trial: optuna.Trial, worker: _Worker,
           variant: Variant) -> tuple[dict[str, Any], optuna.TrialPruned | None]:
    """Train as ``ablate run`` does (same folder, resume, row.json), reporting each epoch."""
    spec = worker.spec
    out = runner.run_dir(worker.exp_dir, variant, spec.seed)
    key = runner.run_key(variant, spec.data_spec, spec.config, spec.seed, spec.profile_size)
    if runner.is_finished(out, key, retry_failed=True):
        return json.loads((out / "row.json").read_text()), None
    out.mkdir(parents=True, exist_ok=True)
    (out / "run_key").write_text(key)
    last: dict[str, Any] = {}

    def on_epoch(epoch: int, scores: dict[str, float]) -> None:
        last.update(scores, epoch=epoch)
        if len(spec.objectives) == 1:
            trial.report(float(scores[spec.metric]), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch} of {spec.config.epochs}: "
                                         f"{spec.metric} {scores[spec.metric]:.4f}")

    start, pruned = time.perf_counter(), None
    try:
        row = runner.run_one(variant, worker.data, spec.config, spec.seed, out, spec.profile_size,
                             spec.name, spec.preset, progress=False, on_epoch=on_epoch)
    except optuna.TrialPruned as exc:
        pruned = exc
        row = runner.base_row(variant, spec.seed, spec.name, spec.preset, spec.config)
        row.update(worker.env())
        row.update({k: last[k] for k in METRICS.names() if k in last})
        row.update(status="pruned", error=str(exc), epochs_run=last["epoch"],
                   dataset=worker.data[0].name, val_loss=last.get("loss", math.nan))
        row.update(worker.profile(variant))  # the trained model is not returned when pruned
    except Exception as exc:  # recorded as a failed trial, never fatal to the worker
        row = runner.base_row(variant, spec.seed, spec.name, spec.preset, spec.config)
        row.update(error=f"{type(exc).__name__}: {exc}", dataset=worker.data[0].name)
    row["run_key"] = key
    row["wall_s"] = time.perf_counter() - start
    runner.write_row(out, row)
    return row, pruned


def _end(trial: optuna.Trial, row: dict[str, Any] | None, status: str, reason: str) -> NoReturn:
    """Record a trial that is not trained and end it as PRUNED."""
    _store_row(trial, {**(row or {}), "status": status, "error": reason})
    raise optuna.TrialPruned(reason)


def _store_row(trial: optuna.Trial, row: Mapping[str, Any]) -> None:
    for key, value in row.items():
        trial.set_user_attr(key, _json_safe(value))


def _json_safe(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


# ---------------------------------------------------------------------------------------------
# Tables and report


def trials_table(study: optuna.Study, spec: SearchSpec) -> pd.DataFrame:
    """One row per trial: ``trial``, ``trial_state``, the run-row columns, ``retry_of``, and
    ``param_<name>`` per searched parameter."""
    trials = study.get_trials(deepcopy=False)
    retried_as = {}
    for t in trials:
        history = t.system_attrs.get("retry_history") or []
        if history:
            retried_as[history[-1]] = t.number
    names = list(dict.fromkeys(k for t in trials for k in t.distributions))
    rows = []
    for t in trials:
        row = {"trial": t.number, "trial_state": t.state.name,
               **{c: t.user_attrs.get(c) for c in runner.columns()}}
        history = t.system_attrs.get("retry_history") or []
        row["retry_of"] = history[-1] if history else None
        row.update({f"param_{n}": t.params.get(n) for n in names})
        if t.state == TrialState.FAIL and row["status"] != "failed" or row["status"] is None:
            row["status"] = {TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}.get(
                t.state, "lost")
            if row["status"] == "lost":
                again = retried_as.get(t.number)
                row["error"] = ("its worker stopped sending heartbeats"
                                + (f"; retried as trial {again}" if again is not None else ""))
            if len(t.params) == len(spec.space):
                try:
                    row["variant"] = spec.variant(t.params).id
                except ValueError:
                    pass
        rows.append(row)
    columns = ["trial", "trial_state", *runner.columns(), "retry_of",
               *(f"param_{n}" for n in names)]
    return pd.DataFrame(rows, columns=columns)


def epochs_saved(trials: pd.DataFrame) -> int:
    """Training epochs the pruner saved: asked epochs minus epochs run, over pruned trials."""
    pruned = trials[trials["status"] == "pruned"]
    return int((pd.to_numeric(pruned["epochs"]) - pd.to_numeric(pruned["epochs_run"])).sum())


def param_importances(study: optuna.Study, spec: SearchSpec) -> pd.DataFrame:
    """Optuna's parameter importances (its default evaluator) per objective, over complete trials.

    ``attrs["notes"]`` keeps Optuna's warnings (e.g. too few trials: importances all equal).
    """
    rows, notes = [], []
    for i, (name, direction) in enumerate(zip(spec.objectives, spec.directions)):
        sign = -1.0 if direction == "maximize" else 1.0  # the evaluator looks for low targets
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

    The summary, figures and failed-runs sections come from ``ablate.report.write_report`` on
    the ok and failed trials; a search section (objectives, counts, epochs saved by pruning,
    Pareto front or best trial, importances) is put before them.
    """
    from ..analysis.report import write_report

    exp_dir = Path(results_dir) / spec.name
    exp_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.load_study(study_name=spec.name, storage=store.optuna)
    table = trials_table(study, spec)
    runner.write_runs(exp_dir, table, "trials")
    (exp_dir / "search.json").write_text(json.dumps(
        {"study": spec.name, "storage": redact(store.url), **spec.identity(),
         "trials": spec.trials, "max_trials": spec.max_trials}, indent=2))

    counts = table["status"].value_counts()
    skipped = table[table["status"] == "skipped"]["error"].fillna("")
    lines = ["## Search", "",
             f"- Study: `{spec.name}` in `{redact(store.url)}`; sampler {spec.sampler[0]}, "
             f"pruner {spec.pruner[0]}",
             "- Objectives: " + ", ".join(
                 f"{OBJECTIVES.get(o).direction} {OBJECTIVES.get(o).label} "
                 f"(`{OBJECTIVES.get(o).column}`)" for o in spec.objectives)
             + f"; costs at {spec.profile_size}x{spec.profile_size}",
             f"- Trials: {int(counts.get('ok', 0))} complete of {spec.trials} asked; "
             f"{int(counts.get('pruned', 0))} pruned ({epochs_saved(table)} epochs saved by "
             f"pruning), {int(counts.get('skipped', 0))} skipped "
             f"({int(skipped.str.startswith('over budget').sum())} over budget, "
             f"{int(skipped.str.startswith('duplicate').sum())} duplicates, "
             f"{int(skipped.str.startswith('invalid').sum())} invalid), "
             f"{int(counts.get('failed', 0))} failed, {int(counts.get('lost', 0))} lost with "
             "their worker (retried)"]
    if spec.budget_gmacs is not None:
        lines.append(f"- Budget: GMACs (thop) <= {spec.budget_gmacs:g}, checked on a throw-away "
                     "copy of each variant before any training")
    lines += ["- Every trial, with its parameters and why it ended: [trials.csv](trials.csv)", ""]
    lines += _front(study, spec)
    lines += _importances(study, spec, exp_dir)

    runs = table[table["status"].isin(["ok", "failed"])][list(runner.columns())]
    runs = runs.reset_index(drop=True)
    ok = runs[runs["status"] == "ok"]
    title = f"Search report: {spec.name}" + (f": {spec.description}" if spec.description else "")
    path = exp_dir / "report.md"
    if ok.empty:
        path.write_text("\n".join([f"# {title}", "", *lines,
                                   "No complete trial yet: nothing to summarize."]) + "\n")
        return path
    baseline = spec.baseline.id if (ok["variant"] == spec.baseline.id).any() else \
        ok.sort_values(OBJECTIVES.get(spec.metric).column, ascending=False)["variant"].iloc[0]
    write_report(exp_dir, runs, baseline, spec.metric, title=title)
    figure = exp_dir / "plots" / f"{spec.metric}_vs_gmacs.png"
    if figure.is_file():
        shutil.copyfile(figure, exp_dir / "pareto.png")
        label = OBJECTIVES.get(spec.metric).label
        lines += ["### Pareto plot", "", f"![{label} vs GMACs, Pareto front](pareto.png)", ""]
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


def _front(study: optuna.Study, spec: SearchSpec) -> list[str]:
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not complete:
        return []
    best = study.best_trials if len(spec.objectives) > 1 else [study.best_trial]
    heads = ["Trial", "Variant", *(OBJECTIVES.get(o).label for o in spec.objectives)]
    rows = [[t.number, f"`{t.user_attrs.get('variant', '')}`",
             *(f"{v:.4f}" for v in t.values)] for t in sorted(best, key=lambda t: t.values[-1])]
    title = "Pareto front" if len(spec.objectives) > 1 else "Best trial"
    return [f"### {title}", "", tabulate(rows, heads, tablefmt="pipe", disable_numparse=True), ""]


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
