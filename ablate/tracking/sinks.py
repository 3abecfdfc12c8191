"""Tracker sinks by name: what a tracker must do, and the registry a plugin adds one to.

A sink copies what the harness already wrote (rows, ``history.csv``, summaries, reports) into
one experiment tracker. The tables stay the source of truth: a sink only reads them, and a sink
that fails is reported and retried later, never fatal to a run (``ablate.tracking.cell``).

One ``Sink`` serves one experiment (or search study) folder. Per cell it opens a ``TrackerRun``
(one attempt of one (variant, seed) cell), logs each epoch as it ends, and finishes it with the
row's final numbers; per variant it keeps one seed-aggregate run up to date, and per study one
run with the summary table and report (``ablate.tracking.study``). Adding a tracker is one class
and one registration::

    @register_sink("mytracker", requires=("mytracker",), help="...")
    class MySink(Sink): ...
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from filelock import FileLock

from ..common.checks import not_allowed
from ..common.registry import Registry

SINKS: Registry = Registry("tracking sink")

#: The optional dependency group that installs every built-in sink's package.
EXTRA = "track"

#: The experiment folder's lock file for tracker bookkeeping shared between processes.
LOCK = ".tracking.lock"

#: How a finished attempt ended: the row's status, as the trackers are told it.
FINISHED, FAILED, KILLED = "finished", "failed", "killed"


@dataclass(frozen=True)
class Cell:
    """One attempt at one (variant, seed) cell, as a tracker run is named and tagged."""

    experiment: str
    variant: str          # the variant id
    seed: int
    run_key: str
    attempt: int          # 1 for the first start; a resume after a kill or a retry adds 1
    params: Mapping[str, str]  # knobs, training config, run key, environment, plugins
    folder: str           # the run folder, relative to the experiment's runs folder

    @property
    def name(self) -> str:
        """The run's display name; a second attempt (a resume, a retried trial) says so."""
        again = f" attempt {self.attempt}" if self.attempt > 1 else ""
        return f"{self.variant} seed{self.seed}{again}"


class TrackerRun:
    """One attempt's run in a tracker."""

    id: str

    def log_epoch(self, epoch: int, values: Mapping[str, float]) -> None:
        """Log one epoch's training loss and validation metrics at step ``epoch``."""
        raise NotImplementedError

    def finish(self, status: str, values: Mapping[str, float], tags: Mapping[str, str],
               files: Iterable[Path]) -> None:
        """End the run as ``status`` (FINISHED, FAILED or KILLED) with the row's final numbers
        (``values``), its text columns (``tags``) and artifacts (history, sample grid)."""
        raise NotImplementedError


class Sink:
    """One tracker for one experiment folder (``exp_dir``) named ``experiment``."""

    def __init__(self, exp_dir: Path, experiment: str) -> None:
        self.exp_dir, self.experiment = Path(exp_dir), experiment

    def start(self, cell: Cell) -> TrackerRun:
        """Open a run for one attempt of ``cell`` with its parameters logged."""
        raise NotImplementedError

    def mark_killed(self, run_id: str, cell: Cell) -> None:
        """Mark an earlier attempt, whose process died, as killed (where the tracker can)."""
        raise NotImplementedError

    def publish_variant(self, variant: str, knobs: Mapping[str, str],
                        values: Mapping[str, float], tags: Mapping[str, str]) -> None:
        """Create or update the variant's one seed-aggregate run (mean, sd, CI, verdict...)."""
        raise NotImplementedError

    def publish_study(self, summary: pd.DataFrame, report: Path, files: Iterable[Path]) -> None:
        """Create or update the study's one run holding the summary table and ``report``."""
        raise NotImplementedError

    def where(self) -> str:
        """Where this sink writes, for the log line that says so."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the sink holds open; the default holds nothing."""


def lock(exp_dir: Path) -> FileLock:
    """The experiment folder's tracking lock: held to get-or-create a shared tracker run (a
    variant's aggregate, the study's run) and to publish, so two processes never make two."""
    Path(exp_dir).mkdir(parents=True, exist_ok=True)
    return FileLock(str(Path(exp_dir) / LOCK), is_singleton=True)  # re-entrant in a process


def register_sink(name: str, requires: tuple[str, ...] = (), extra: str = EXTRA,
                  help: str | None = None):
    """Decorator registering a ``Sink`` subclass as ``name``; ``requires`` are the modules it
    imports, checked before any training, and ``extra`` the pip extra that installs them."""
    return SINKS.register(name, help=help, requires=tuple(requires), extra=extra)


def missing_modules(name: str) -> list[str]:
    """The modules sink ``name`` needs that cannot be imported here."""
    return [m for m in SINKS.meta(name)["requires"] if importlib.util.find_spec(m) is None]


def check_sinks(names: object) -> tuple[str, ...]:
    """Validate a ``tracking`` value (a list of sink names): known names whose packages are
    installed, each once. Raises ``ValueError`` naming the bad value and what is allowed, or the
    extra to install."""
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise ValueError(f"{names!r} is not allowed; expected a list of sink names from "
                         f"{', '.join(SINKS.names())}")
    for name in names:
        if name not in SINKS:
            raise not_allowed("tracking", name, ", ".join(SINKS.names()) or "(none registered)")
        missing = missing_modules(name)
        if missing:
            extra = SINKS.meta(name)["extra"]
            raise ValueError(f"tracking sink {name!r} needs {', '.join(missing)}, which is not "
                             f"installed; install it with: pip install 'ablate[{extra}]' (from a "
                             f"checkout: pip install -e '.[{extra}]')")
    return tuple(dict.fromkeys(names))


def open_sinks(names: Iterable[str], exp_dir: Path, experiment: str) -> list[Sink]:
    """One instance of each named sink for ``exp_dir``."""
    return [SINKS.get(n)(Path(exp_dir), experiment) for n in names]


def sinks_markdown() -> str:
    """The sink table of docs/tracking.md, from :data:`SINKS`."""
    from ..common.markdown import table

    rows = [(f"`{n}`", ", ".join(f"`{m}`" for m in SINKS.meta(n)["requires"]),
             f"`{SINKS.meta(n)['extra']}`", SINKS.help(n)) for n in SINKS.names()]
    return table(("sink", "needs", "extra", "what it writes, and where"), rows)
