"""Experiment files: YAML in, a validated ``Experiment`` out.

An experiment names a dataset, a training preset (with overrides), seeds, a baseline variant and
the variants to compare, each given as overrides of the baseline, or as a grid over knobs::

    plugins: [myplug, plugins/blocks.py]   # optional: imported first (ablate.common.plugins)
    name: pooling_quick             # results go to results/<name>/ (default: the file's stem)
    description: seed 002, experiment 1
    dataset: {name: shapes, options: {n_train: 256}}   # root: for voc, pets, folder
    preset: quick
    train: {epochs: 5}              # overrides of the preset (TrainConfig keys)
    seeds: [0, 1, 2]                # or {min: 3, max: 10}: adaptive seeds (AdaptiveSeeds)
    equivalence: {dice: 0.005}      # optional: margins of practical equivalence, per metric
    baseline: {block: dsconv, widths: [180, 90, 45, 45]}
    variants:                       # each: knob overrides of the baseline
      - {pool: MAM}
    grid: {pool: [MAA, AAM]}        # optional: every combination, on top of the baseline
    profile_size: 224               # square input side for params / MACs (default 224)
    metric: dice                    # what the summary compares
    jobs: 2                         # optional: worker processes of `ablate run` (--jobs)
    slurm: {partition: gpu, array: 4}   # optional: ablate launch slurm (ablate.scale.slurm_spec)

Every error names the file, the key and what is allowed. YAML is read with ``safe_load``.
The plugins are imported before anything else of the file is read, so the knob values, knobs,
datasets, losses and metrics they register are known to the validation of the rest.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .common.checks import is_int, positive_number, refuse_unknown
from .common.markdown import table
from .common.plugins import PluginError, load_plugins, plugin_names
from .config import PRESETS, TrainConfig, load_config
from .data import DATASETS, DataSpec
from .evaluation.metrics import DEFAULT_METRIC, METRICS
from .models.variant import Variant
from .scale.slurm_spec import SlurmSpec, parse_slurm
from .tracking import SINKS, check_sinks

KEYS = ("name", "description", "dataset", "preset", "train", "seeds", "baseline", "variants",
        "grid", "profile_size", "metric", "equivalence", "plugins", "tracking", "slurm",
        "jobs")

#: Each key's default, allowed values and meaning, for the generated key table of
#: docs/experiments.md (``{name}`` fields are filled from the registries the key is checked
#: against). A key missing here fails ``ablate docs``.
KEY_DOCS: dict[str, tuple[str, str, str]] = {
    "name": ("the file's stem", "letters, digits, `_`, `-`, `.`", "names `results/<name>/`"),
    "description": ("empty", "any text", "the report's title, after the name"),
    "dataset": ("`{{name: shapes}}`", "a name ({datasets}) or `{{name, root, options}}`",
                "the data: `root` for datasets on disk, `options` per dataset"),
    "preset": ("`quick`", "{presets}", "the training preset the `train:` keys override"),
    "train": ("`{{}}`", "a mapping of `TrainConfig` keys (table below)",
              "overrides of the preset; a budget key replaces the preset's budget"),
    "seeds": ("`[0]`", "a list of distinct integers >= 0, or `{{min: m, max: M}}` with "
                       "2 <= m <= M", "training seeds; `{{min, max}}`: adaptive seeds"),
    "baseline": ("`{{}}` (the `Variant` defaults)", "a mapping of knob values",
                 "the variant every other one is compared with"),
    "variants": ("`[]`", "a list of mappings of knob values", "each: overrides of the baseline"),
    "grid": ("`{{}}`", "a mapping of knob -> list of values",
             "every combination, on top of the baseline"),
    "profile_size": ("`224`", "an integer >= 1", "square input side for params / MACs, pixels"),
    "metric": ("`dice`", "{metrics}", "what the summary, verdicts and plots compare"),
    "equivalence": ("`{{}}`", "a mapping of metric -> margin > 0, in the metric's units",
                    "margins of practical equivalence (verdict *equivalent*)"),
    "plugins": ("`[]`", "a list of module names or `.py` paths",
                "imported first, before the rest of the file is read: what they register "
                "(knob values, knobs, datasets, losses, metrics) is then allowed"),
    "tracking": ("`[]`", "a list of {sinks}",
                 "experiment trackers each run, variant aggregate and report is copied to "
                 "(docs/tracking.md); never part of a run key"),
    "slurm": ("`{{}}`", "a mapping of `slurm:` keys ([cluster](cluster.md#options-and-slurm-keys))",
              "the resources `ablate launch slurm` asks for"),
    "jobs": ("`1`", "an integer >= 1", "worker processes `ablate run` trains the cells in "
             "(`--jobs` overrides it; [parallel](parallel.md))"),
}


@dataclass(frozen=True)
class AdaptiveSeeds:
    """``seeds: {min: m, max: M}``: every variant runs seeds 0..m-1; then, one seed at a time,
    the baseline and each comparison still undecided get the next seed, up to seed M-1.

    The verdicts are read at each of the ``looks`` (m, m+1, ..., M seeds) with p-values
    corrected for their number (``ablate.analysis.verdicts``), so stopping early keeps the
    stated error rates. Like the seed list, it is not part of any run key: a seed run here is
    the same run as in a study with a seed list.
    """

    min: int
    max: int

    def __post_init__(self) -> None:
        if not (is_int(self.min) and is_int(self.max) and 2 <= self.min <= self.max):
            raise ValueError(f"seeds={{min: {self.min!r}, max: {self.max!r}}} is not allowed; "
                             "allowed: integers with 2 <= min <= max (a paired test needs two "
                             "seeds)")

    @property
    def looks(self) -> tuple[int, ...]:
        """The seed counts at which verdicts are read."""
        return tuple(range(self.min, self.max + 1))


@dataclass(frozen=True)
class Experiment:
    """A validated experiment: the baseline comes first in ``variants``, no duplicates."""

    name: str
    data: DataSpec
    preset: str
    config: TrainConfig
    seeds: tuple[int, ...]
    baseline: Variant
    variants: tuple[Variant, ...]
    profile_size: int = 224
    metric: str = DEFAULT_METRIC
    description: str = ""
    adaptive: AdaptiveSeeds | None = None
    equivalence: tuple[tuple[str, float], ...] = ()  # (metric, margin) pairs
    plugins: tuple[str, ...] = ()  # as given; imported when the file was read
    tracking: tuple[str, ...] = ()  # tracker sinks (ablate.tracking); results do not depend on it
    slurm: SlurmSpec = SlurmSpec()  # what ``ablate launch slurm`` asks for; no part of a run
    jobs: int | None = None        # worker processes of `ablate run`; None: not given (one)

    def runs(self) -> list[tuple[Variant, int]]:
        """Every (variant, seed) cell that may run, seed-major so each seed's comparison
        completes early (with adaptive seeds, which of them do is decided as they go:
        ``ablate.runner.planned_runs``)."""
        return [(v, s) for s in self.seeds for v in self.variants]

    @property
    def looks(self) -> tuple[int, ...] | None:
        """The seed counts at which adaptive seeds read the verdicts; None for a seed list."""
        return self.adaptive.looks if self.adaptive else None

    def with_tracking(self, names: tuple[str, ...] | list[str]) -> Experiment:
        """The experiment with the sinks ``names`` (``--track``) added after its own, validated
        (``check_sinks``: known, installed)."""
        if not names:
            return self
        return dataclasses.replace(self, tracking=check_sinks([*self.tracking, *names]))

    def margins(self) -> dict[str, float]:
        """The equivalence margin of each metric that has one."""
        return dict(self.equivalence)


class ExperimentError(ValueError):
    """A bad experiment file; the message names the file and the key."""


def read_mapping(path: str | Path, what: str, keys: tuple[str, ...],
                 error: type[ValueError] = ExperimentError) -> dict[str, Any]:
    """The top-level mapping of a YAML file (``safe_load``); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise error(f"{path}: expected a mapping with keys {', '.join(keys)}")
    return raw


def load_experiment(path: str | Path) -> Experiment:
    raw = read_mapping(path, "experiment", KEYS)
    return parse_experiment(raw, default_name=Path(path).stem, source=str(path))


def parse_experiment(raw: Mapping[str, Any], default_name: str = "experiment",
                     source: str = "<experiment>") -> Experiment:
    """Validate a mapping (as read from YAML) into an ``Experiment``."""

    def at(key: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, TypeError) as exc:
            raise ExperimentError(f"{source}: {key}: {exc}") from None

    plugins = import_plugins(raw, source, ExperimentError)
    refuse_unknown(raw, KEYS, "key", ExperimentError, prefix=f"{source}: ")
    name = str(raw.get("name") or default_name)
    if not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise ExperimentError(f"{source}: name: {name!r} is not allowed; allowed: letters, "
                              "digits, '_', '-', '.' (it names the results folder)")
    data = at("dataset", _data_spec, raw.get("dataset", {"name": "shapes"}))
    preset = str(raw.get("preset", "quick"))
    train = raw.get("train") or {}
    if not isinstance(train, Mapping):
        raise ExperimentError(f"{source}: train: expected a mapping of training keys")
    config = at("train", load_config, preset, **train)
    seeds, adaptive = at("seeds", _seeds, raw.get("seeds", [0]))
    baseline = at("baseline", Variant.from_dict, raw.get("baseline") or {})
    variants = [baseline]
    for i, overrides in enumerate(raw.get("variants") or []):
        if not isinstance(overrides, Mapping):
            raise ExperimentError(f"{source}: variants[{i}]: expected a mapping of knob values")
        variants.append(at(f"variants[{i}]", baseline.replace, **overrides))
    grid = raw.get("grid") or {}
    if not isinstance(grid, Mapping) or not all(isinstance(v, list) for v in grid.values()):
        raise ExperimentError(f"{source}: grid: expected a mapping of knob -> list of values")
    for combo in itertools.product(*grid.values()):
        overrides = dict(zip(grid, combo))
        variants.append(at(f"grid {overrides}", baseline.replace, **overrides))
    profile_size = at("profile_size", _positive_int, raw.get("profile_size", 224), "profile_size")
    metric = raw.get("metric", DEFAULT_METRIC)
    if metric not in METRICS:
        raise ExperimentError(f"{source}: metric: {metric!r} is not allowed; "
                              f"allowed: {', '.join(METRICS.names())}")
    equivalence = at("equivalence", _margins, raw.get("equivalence") or {})
    tracking = at("tracking", check_sinks, raw.get("tracking") or [])
    slurm = at("slurm", parse_slurm, raw.get("slurm"))
    jobs = raw.get("jobs")
    if jobs is not None:
        at("jobs", _positive_int, jobs, "jobs")
    return Experiment(name=name, data=data, preset=preset, config=config, seeds=seeds,
                      baseline=baseline, variants=tuple(dict.fromkeys(variants)),
                      profile_size=profile_size, metric=metric,
                      description=str(raw.get("description", "")), adaptive=adaptive,
                      equivalence=equivalence, plugins=plugins, tracking=tracking,
                      slurm=slurm, jobs=jobs)


def import_plugins(raw: Mapping[str, Any], source: str,
                   error: type[ValueError] = ExperimentError) -> tuple[str, ...]:
    """Import the plugins a file's ``plugins`` key names (first, before anything else is read);
    return them as given. Errors name the file, the key, the plugin and the cause."""
    try:
        names = plugin_names(raw.get("plugins") or [])
        load_plugins(names)
    except PluginError as exc:
        raise error(f"{source}: plugins: {exc}") from exc
    except ValueError as exc:
        raise error(f"{source}: plugins: {exc}") from None
    return names


def keys_markdown() -> str:
    """The experiment file's keys with default, allowed values and meaning, generated into
    docs/experiments.md by ``ablate docs``."""
    if set(KEYS) != set(KEY_DOCS):
        raise ValueError("KEY_DOCS and KEYS differ: "
                         + ", ".join(sorted(set(KEYS) ^ set(KEY_DOCS))))
    lists = {"datasets": ", ".join(DATASETS.names()), "presets": ", ".join(PRESETS.names()),
             "metrics": ", ".join(METRICS.names()), "sinks": ", ".join(SINKS.names())}
    rows = [(f"`{k}`", *(text.format(**lists) for text in KEY_DOCS[k])) for k in KEYS]
    return table(("key", "default", "allowed", "meaning"), rows)


def _data_spec(value: Any) -> DataSpec:
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping):
        raise ValueError("expected a dataset name or a mapping with name, root, options")
    if "image_size" in value:
        raise ValueError("image_size belongs to the training settings (train: {image_size: N})")
    return DataSpec.from_dict(dict(value))


def _seeds(value: Any) -> tuple[tuple[int, ...], AdaptiveSeeds | None]:
    """A seed list (no adaptive seeds), or ``{min, max}``: seeds 0..max-1, adaptive."""
    if isinstance(value, Mapping):
        refuse_unknown(value, ("min", "max"), "key")
        if "min" not in value or "max" not in value:
            raise ValueError(f"{dict(value)!r} is not allowed; allowed: a list of distinct "
                             "integers >= 0, or {min: m, max: M} with 2 <= m <= M")
        adaptive = AdaptiveSeeds(value["min"], value["max"])
        return tuple(range(adaptive.max)), adaptive
    items = value if isinstance(value, list) else [value]
    seeds = tuple(_positive_int(s, "seed", minimum=0) for s in items)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"{value!r} is not allowed; allowed: a list of distinct integers >= 0, "
                         "or {min: m, max: M} (adaptive seeds)")
    return seeds, None


def _margins(value: Any) -> tuple[tuple[str, float], ...]:
    """``{metric: margin}``: a registered metric and a number > 0 in its units."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{value!r} is not allowed; allowed: a mapping of metric -> margin "
                         f"(metrics: {', '.join(METRICS.names())})")
    refuse_unknown(value, METRICS.names(), "metric")
    return tuple((m, positive_number(f"margin of {m}", v, "a number > 0, in the metric's units"))
                 for m, v in value.items())




def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r} is not allowed; allowed: an integer >= {minimum}")
    return value
