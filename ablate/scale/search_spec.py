"""Search files: YAML in, a validated ``SearchSpec`` out (what ``ablate search`` explores).

A search file is an experiment file (dataset, preset, train, baseline, profile_size) with a
space to search instead of variants to enumerate::

    plugins: [myplug]              # optional: imported first, as in an experiment file
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
    objectives: dice,gmacs         # a metric, then costs (gmacs, params, latency: results.COSTS)
    trials: 8                      # complete trials to reach, over every worker of the study
    budget_gmacs: 5                # optional: skip variants above it, without training them
    pruner: none                   # none | median | hyperband, or {name: median, n_warmup_steps: 1}
    sampler: tpe                   # tpe | nsga2 | random, or {name: nsga2, population_size: 8}
    storage: sqlite:///results/search_quick/study.db   # the default; see ablate.scale.storage
    max_trials: 80                 # optional: stop after this many trials in any state
    slurm: {partition: gpu, array: 4}  # optional: ablate launch slurm (ablate.scale.slurm_spec)
    profile_size: 224              # square input for params / MACs (default 224)

Categorical choices are stored as Optuna-storable values: widths ``"128,64,32,32"``, skips
``"e2,e3"`` or ``"none"``, pool orders canonical (``"MAA"``).

The study stores the file (``ablate.scale.search``), plugins included, so a worker joining it
with ``--study`` imports the same plugins before it takes anything.

Objectives, samplers and pruners are registries (``OBJECTIVES``, ``SAMPLERS``, ``PRUNERS``); an
unknown name is refused with the allowed ones. Every error names the file and the key.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from ..common.checks import is_int, refuse_unknown
from ..common.markdown import table
from ..common.registry import Registry
from ..config import TrainConfig
from ..data import DataSpec
from ..evaluation.metrics import DEFAULT_METRIC, METRICS
from ..experiment import Experiment, ExperimentError, import_plugins, parse_experiment, read_mapping
from ..models.variant import KNOBS, Variant
from ..results import COSTS
from .slurm_spec import SlurmSpec

KEYS = ("study", "description", "dataset", "preset", "train", "seed", "baseline", "space",
        "objectives", "trials", "budget_gmacs", "pruner", "sampler", "storage", "max_trials",
        "profile_size", "plugins", "tracking", "slurm")
WIDTH_MULT = "width_mult"
_MAX_ENUMERATED = 20_000


@dataclass(frozen=True)
class Objective:
    """One objective: the result-row column it reads, which way is better (``max`` or
    ``min``), its label."""

    column: str
    better: str
    label: str


#: A metric of ``METRICS`` (the validation score of the last epoch) or a cost of
#: ``ablate.results.COSTS``, under its registry name.
OBJECTIVES: Registry = Registry("objective")


def _metric_objectives() -> None:
    """Every metric as an objective (again after plugins: a metric registered since counts)."""
    for name in METRICS.names():
        if name not in OBJECTIVES:
            metric = METRICS.get(name)
            OBJECTIVES.register(name, help=f"validation {metric.label} of the last epoch "
                                           f"({metric.better})")(
                Objective(name, metric.better, metric.label))


_metric_objectives()
for _name in COSTS.names():
    _c = COSTS.get(_name)
    OBJECTIVES.register(_name, help=f"{_c.label}: {_c.unit} ({_c.better})")(
        Objective(_c.column, _c.better, _c.label))

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
PRUNERS.register("hyperband", help="HyperbandPruner over 1..epochs epochs (a budget in steps or "
                 "images: the epochs seen in the first trial)")(
    lambda epochs, **options: optuna.pruners.HyperbandPruner(
        **{"min_resource": 1, "max_resource": epochs or "auto", **options}))


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
    plugins: tuple[str, ...] = ()  # as given; imported when the file was read
    tracking: tuple[str, ...] = ()  # tracker sinks (ablate.tracking); trials do not depend on it
    slurm: SlurmSpec = SlurmSpec()  # what ``ablate launch slurm`` asks for
    raw: str = field(default="{}", compare=False, repr=False)  # the file's mapping, as JSON

    @property
    def metric(self) -> str:
        return self.objectives[0]

    @property
    def betters(self) -> list[str]:
        """Which way each objective is better, ``max`` or ``min``."""
        return [OBJECTIVES.get(o).better for o in self.objectives]

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

    @property
    def experiment(self) -> Experiment:
        """The settings every trial's cell runs under: an experiment of one seed."""
        return Experiment(name=self.name, data=self.data, preset=self.preset,
                          config=self.config, seeds=(self.seed,), baseline=self.baseline,
                          variants=(self.baseline,), profile_size=self.profile_size,
                          metric=self.metric, description=self.description,
                          plugins=self.plugins, tracking=self.tracking)

    def build_sampler(self, seed: int | None = None) -> optuna.samplers.BaseSampler:
        """A new Optuna sampler of the file's ``sampler`` (``seed`` unless its options give one)."""
        name, options = self.sampler
        return SAMPLERS.get(name)(**{"seed": seed, **dict(options)})

    def build_pruner(self) -> optuna.pruners.BasePruner:
        """A new Optuna pruner of the file's ``pruner``, over ``config.epochs`` epochs (None
        for a budget in steps or images)."""
        name, options = self.pruner
        return PRUNERS.get(name)(self.config.epochs, **dict(options))

    def with_plugins(self, names: tuple[str, ...] | list[str]) -> SearchSpec:
        """The spec with ``names`` (imported already: ``--plugin``) added to its plugins, in the
        file it stores too, so a worker joining its study with ``--study`` imports them."""
        return self._adding("plugins", names)

    def with_tracking(self, names: tuple[str, ...] | list[str]) -> SearchSpec:
        """The spec with the sinks ``names`` (``--track``, validated) added, in the file it
        stores too, so a worker joining its study with ``--study`` logs to them as well."""
        return self._adding("tracking", names)

    def _adding(self, key: str, names: tuple[str, ...] | list[str]) -> SearchSpec:
        values = tuple(dict.fromkeys([*getattr(self, key), *names]))
        if values == getattr(self, key):
            return self
        raw = {**json.loads(self.raw), key: list(values)}
        return dataclasses.replace(self, **{key: values}, raw=json.dumps(raw, default=str))

    def identity(self) -> dict[str, Any]:
        """What must agree between workers of one study (not trials, max_trials, storage)."""
        return {"dataset": self.data.to_dict(), "preset": self.preset,
                "config": self.config.to_dict(), "seed": self.seed,
                "baseline": self.baseline.to_dict(),
                "space": {p.name: list(p.choices) for p in self.space},
                "objectives": list(self.objectives), "budget_gmacs": self.budget_gmacs,
                "pruner": [self.pruner[0], dict(self.pruner[1])],
                "sampler": [self.sampler[0], dict(self.sampler[1])],
                "profile_size": self.profile_size, "plugins": list(self.plugins)}


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

    plugins = import_plugins(raw, source, SearchError)
    _metric_objectives()
    refuse_unknown(raw, KEYS, "key", SearchError, prefix=f"{source}: ")
    seed = raw.get("seed", 0)
    if not is_int(seed) or seed < 0:
        raise fail("seed", f"{seed!r} is not allowed; allowed: an integer >= 0")
    shared = {k: raw[k] for k in ("dataset", "preset", "train", "baseline", "profile_size",
                                  "description", "tracking", "slurm") if k in raw}
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

    objectives = raw.get("objectives", DEFAULT_METRIC)
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
                                 f"({', '.join(COSTS.names())})")

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
        description=exp.description, plugins=plugins, tracking=exp.tracking,
        slurm=exp.slurm,
        raw=json.dumps({k: v for k, v in raw.items() if k != "storage"}, default=str))
    for kind, (key, options), build in (("pruner", pruner, spec.build_pruner),
                                        ("sampler", sampler, spec.build_sampler)):
        try:
            build()
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
    """A parsed knob value as an Optuna-storable categorical choice: None, bool, int, float and
    str as they are, anything else (a tuple of widths or skips) as the knob's column text, which
    its parser reads back."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return KNOBS.get(name).text(value)


def _count(value: Any, key: str, fail) -> int:
    if not is_int(value) or value < 1:
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


#: Each search-file key's default, allowed values and meaning (keys shared with experiment files
#: read as there). A key of ``KEYS`` missing here fails ``ablate docs``.
KEY_DOCS: dict[str, tuple[str, str, str]] = {
    "study": ("the file's stem", "letters, digits, `_`, `-`, `.`",
              "Optuna study name and `results/<study>/`"),
    "description": ("empty", "any text", "as in an experiment file"),
    "dataset": ("`{{name: shapes}}`", "as in an experiment file", "the data"),
    "preset": ("`quick`", "as in an experiment file", "the training preset"),
    "train": ("`{{}}`", "as in an experiment file", "overrides of the preset"),
    "seed": ("`0`", "an integer >= 0", "every trial's training seed, and the sampler's seed"),
    "baseline": ("`{{}}`", "a mapping of knob values",
                 "the knobs outside the space; also enqueued as the first trial"),
    "space": ("required", "a mapping of knob (or `width_mult`) -> non-empty list of choices",
              "what is searched; parameter names are the knob names; `width_mult` scales the "
              "baseline widths"),
    "objectives": ("`dice`", "one metric first, then distinct costs: {objectives}",
                   "a comma-separated string or a list; several: a Pareto front"),
    "trials": ("`20`", "an integer >= 1, at most the space's distinct valid variants",
               "complete trials to reach, over every worker of the study"),
    "budget_gmacs": ("none", "a number > 0",
                     "variants above it (thop GMACs) are skipped before any training"),
    "pruner": ("`none`", "{pruners}, or `{{name: ..., <option>: ...}}`",
               "prunes on the per-epoch validation metric; single objective only"),
    "sampler": ("`tpe`", "{samplers}, or `{{name: ..., <option>: ...}}`", "the Optuna sampler"),
    "storage": ("`sqlite:///results/<study>/study.db`",
                "`sqlite:///PATH`, `journal:PATH`, `postgresql+psycopg://USER@HOST/DB`",
                "where the study lives ([storages](search.md#storages))"),
    "max_trials": ("10 x `trials`", "an integer >= `trials`",
                   "stop after this many trials in any state"),
    "profile_size": ("`224`", "an integer >= 1", "square input side for params / MACs, pixels"),
    "plugins": ("`[]`", "as in an experiment file",
                "imported first; stored with the study, so joining workers import them too"),
    "tracking": ("`[]`", "as in an experiment file",
                 "experiment trackers (docs/tracking.md); stored with the study, so joining "
                 "workers log to them too"),
    "slurm": ("`{{}}`", "a mapping of `slurm:` keys ([cluster](cluster.md#options-and-slurm-keys))",
              "the resources `ablate launch slurm` asks for"),
}


def keys_markdown() -> str:
    """The search file's keys (docs/search.md), with the ``OBJECTIVES``, ``SAMPLERS`` and
    ``PRUNERS`` registries listed after the table."""
    if set(KEYS) != set(KEY_DOCS):
        raise ValueError("KEY_DOCS and KEYS differ: "
                         + ", ".join(sorted(set(KEYS) ^ set(KEY_DOCS))))
    registries = {"objectives": OBJECTIVES, "samplers": SAMPLERS, "pruners": PRUNERS}
    lists = {k: ", ".join(f"`{n}`" for n in r.names()) for k, r in registries.items()}
    rows = [(f"`{k}`", *(text.format(**lists) for text in KEY_DOCS[k])) for k in KEYS]
    notes = "".join(f"- {kind} `{n}`: {r.help(n)}\n" for kind, r in
                    (("objective", OBJECTIVES), ("sampler", SAMPLERS), ("pruner", PRUNERS))
                    for n in r.names())
    return table(("key", "default", "allowed", "meaning"), rows) + "\n" + notes
