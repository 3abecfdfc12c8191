"""Batch ablations over a pool of workers: every (variant, seed) cell of an experiment run once.

``run_grid`` spreads an experiment's cells over the workers of one store
(``ablate.scale.storage``): each cell is claimed by one worker (``ablate.scale.pool``), so every
cell runs exactly once (Optuna's ``GridSampler`` can hand one cell to two workers, optuna issues
2039 and 5489). A cell runs through ``ablate.runner.run_cell`` as in ``ablate run`` (a current
row is kept, an interrupted run resumes), rows land in the usual ``results/<experiment>/runs/``
layout and are also kept in the claims, so every worker writes the whole runs table at the end
and ``ablate report`` works. With adaptive seeds the cells come in rounds
(``ablate.runner.planned_runs``): when a round's cells are all done, every worker reads the same
rows, plans the same next cells, and claims them like the first ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from .. import runner
from ..common.faults import fault_point
from ..common.files import CACHE_DIR, write_text
from ..data import load_dataset
from ..experiment import Experiment
from ..models.variant import Variant
from ..results import ROW_FILE, collect_runs, row_text, run_dir, seed_folder, write_runs
from ..tracking.cell import Tracking
from .claims import Claim, HoldLost, worker_id
from .pool import work_pool
from .storage import Store


def cell_key(variant_id: str, seed: int, key: str) -> str:
    """The claim key of one (variant, seed) cell; the run key makes a changed experiment new."""
    return f"{variant_id}/{seed_folder(seed)}/{key}"


def planned_cells(exp: Experiment, planned: Iterable[tuple[Variant, int]]
                  ) -> dict[str, tuple[Variant, int, str]]:
    """The claim key of each planned (variant, seed) cell, with its variant, seed and run key."""
    spec = runner.data_spec(exp)
    cells = {}
    for variant, seed in planned:
        key = runner.run_key(variant, spec, exp.config, seed, exp.profile_size)
        cells[cell_key(variant.id, seed, key)] = (variant, seed, key)
    return cells


def run_grid(exp: Experiment, store: Store, results_dir: str | Path = "results",
             progress: bool | None = None, cache_dir: str | Path = CACHE_DIR,
             log: Callable[[str], None] | None = None,
             owner: str | None = None) -> pd.DataFrame:
    """Run the cells of experiment ``exp`` that no worker of the pool has run; return the runs.

    Returns when every planned cell is done (by any worker), after writing every row into
    ``results/<experiment>/runs/`` and the runs table. ``log`` gets one line per cell run here.
    ``owner`` names this worker in the claims (default: a new ``worker_id()``); a worker
    restarted under the same name resumes the cell it held at once (``work_pool``).
    """
    exp_dir = Path(results_dir) / exp.name
    exp_dir.mkdir(parents=True, exist_ok=True)
    write_text(exp_dir / "experiment.json", json.dumps(runner.describe(exp), indent=2))
    spec = runner.data_spec(exp)
    cells: dict[str, tuple[Any, int, str]] = {}
    claims = store.claims(f"grid/{exp.name}")
    me, data, ran = owner or worker_id(), None, {}
    log = log or tqdm.write
    tracking = Tracking(exp.tracking, exp_dir, exp.name, log)
    bar = tqdm(total=0, desc=f"{exp.name} ({me})", unit="run",
               disable=None if progress is None else not progress)

    def stop(held: Mapping[str, Claim]) -> bool:
        done = [k for k in cells if k in held and held[k].state == "done"]
        bar.update(len(done) - bar.n)
        return len(done) == len(cells)

    def run(cell: str, held: Callable[[], None]) -> str:
        nonlocal data
        variant, seed, key = cells[cell]
        bar.set_postfix_str(f"{variant.id} seed {seed}")
        if data is None:
            data = load_dataset(spec, cache_dir)
        try:
            ran[cell] = runner.run_cell(exp, variant, seed, data,
                                        run_dir(exp_dir, variant, seed), key, progress=False,
                                        tracking=tracking, on_epoch=lambda epoch, scores: held())
        except HoldLost:
            log(f"stopped {variant.id} seed {seed}: another worker took the cell over (this "
                "worker missed its heartbeats), which resumes it")
            raise
        fault_point("row-written")
        return row_text(ran[cell])

    def finished(cell: str, result: str, kept: bool) -> None:
        variant, seed, _ = cells[cell]
        if kept:
            log(f"ran {variant.id} seed {seed}: {ran[cell]['status']}")
        else:
            log(f"ran {variant.id} seed {seed}, but another worker took the cell over (this "
                "worker missed its heartbeats)")

    while True:
        planned = runner.planned_runs(exp, collect_runs(exp_dir, exp))
        new = planned_cells(exp, planned)
        if new.keys() <= cells.keys():
            break
        cells.update(new)
        bar.total = len(cells)
        work_pool(claims, list(cells), run, owner=me, heartbeat=store.heartbeat, stop=stop,
                  finished=finished)
        _write_rows_of_others(exp_dir, claims.all(), cells)
    bar.close()
    tracking.close()
    runs = collect_runs(exp_dir, exp, planned)
    write_runs(exp_dir, runs)
    return runs


def _write_rows_of_others(exp_dir: Path, held: Mapping[str, Claim],
                          cells: Mapping[str, tuple[Any, int, str]]) -> None:
    """Write the rows of cells run on other machines (kept in their claims) where missing."""
    for cell, claim in held.items():
        if cell in cells and claim.result:
            variant, seed, key = cells[cell]
            row_file = run_dir(exp_dir, variant, seed) / ROW_FILE
            if not row_file.is_file() or json.loads(row_file.read_text()).get("run_key") != key:
                write_text(row_file, claim.result)
