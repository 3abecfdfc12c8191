"""Optuna search over the knob space: the best Dice for the least compute.

A search file (``ablate.scale.search_spec``) names the space, objectives, sampler and pruner;
``run_search`` works on its study with any number of other workers on one store
(``ablate.scale.storage``): each free slot among the asked trials is claimed by one worker
(``ablate.scale.pool``) and every trial is taken for a slot by one worker
(``ablate.scale.ledger``), so the study ends with exactly ``trials`` complete trials, no trial
runs twice, and no variant is trained twice.

How a trial ends (``status`` in ``trials.csv``; only ``ok`` counts towards ``trials``):

    ok       trained; Optuna state COMPLETE with the objective values of its row
    pruned   stopped early by the pruner on the per-epoch validation metric (PRUNED)
    skipped  not trained (PRUNED): over the GMACs budget (profiled on a throw-away copy), an
             invalid knob combination, or a variant another trial of the study already ran
    failed   training failed (non-finite loss, out of memory, ...): FAIL
    lost     its worker died (its slot's heartbeats stopped): FAIL, and retried as a new trial

A trial trains its variant through ``ablate.runner.run_cell``, as ``ablate run`` does (same
folder, resume, row reuse), with the pruner as its ``on_epoch`` hook. Every trial stores its
result row (the columns of an ablation run, ``ablate.results.columns()``) as user attributes and in
``results/<study>/runs/<variant>/seed<k>/``, so the report (``ablate.scale.search_report``) is
built by the same code as an ablation's, from the ok and failed trials (the statuses:
``ablate.results.STATUSES``); ``trials.csv`` lists every trial.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from tqdm.auto import tqdm

from .. import runner
from ..common.faults import fault_point
from ..common.files import CACHE_DIR
from ..data import load_dataset
from ..models.variant import Variant
from ..results import OK, PRUNED, SKIPPED, run_dir
from ..tracking.cell import Tracking
from .claims import Claim, Claims, HoldLost, beating, worker_id
from .ledger import LOST_ATTR, Ledger, Taken
from .pool import work_pool
from .search_spec import OBJECTIVES, SearchSpec, parse_search
from .storage import Store

_SPEC_ATTR = "ablate:search"
_OPTUNA_DIRECTIONS = {"max": "maximize", "min": "minimize"}  # our words -> Optuna's


def default_storage(name: str, results_dir: str | Path = "results") -> str:
    """``sqlite:///<results>/<name>/study.db``."""
    return f"sqlite:///{Path(results_dir) / name / 'study.db'}"


def open_study(spec: SearchSpec, store: Store, sampler_seed: int | None = None) -> optuna.Study:
    """Create the study or join it; a study made from other settings is refused."""
    directions = [_OPTUNA_DIRECTIONS[b] for b in spec.betters]
    study = optuna.create_study(study_name=spec.name, storage=store.optuna,
                                directions=directions, load_if_exists=True,
                                sampler=spec.build_sampler(sampler_seed),
                                pruner=spec.build_pruner())
    stored = study.user_attrs.get(_SPEC_ATTR)
    if stored is None:
        study.set_user_attr(_SPEC_ATTR, spec.raw)
        return study
    before = parse_search(json.loads(stored), spec.name, f"study {spec.name}")
    theirs, ours = before.identity(), spec.identity()
    differ = [k for k in ours if ours[k] != theirs.get(k)]
    if differ or [d.name.lower() for d in study.directions] != directions:
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
    tracking: Tracking            # the study's tracker sinks (none: falsy)
    variants: Claims = field(init=False)  # variant id -> the trial that trains it
    _profiles: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.variants = self.store.claims(f"search/{self.spec.name}/variants")

    def profile(self, variant: Variant) -> dict[str, Any]:
        """Profile row of a throw-away, untrained copy of ``variant`` (cached)."""
        if variant.id not in self._profiles:
            self._profiles[variant.id] = runner.untrained_profile(variant, self.data[0],
                                                                  self.spec.profile_size)
        return self._profiles[variant.id]


def run_search(spec: SearchSpec, store: Store, results_dir: str | Path = "results",
               progress: bool | None = None, cache_dir: str | Path = CACHE_DIR,
               sampler_seed: int | None = None, log: Callable[[str], None] | None = None,
               owner: str | None = None) -> int:
    """Work on the study until it has ``spec.trials`` complete trials; return how many it has.

    Any number of workers (processes, machines) can run this on one store at once: each free
    slot among the asked trials is claimed by one worker and filled by one trial taken for it,
    so the study ends with exactly ``spec.trials`` complete trials, no trial runs twice, and no
    variant is trained twice. Stops early, with fewer, once the study holds ``spec.max_trials``
    finished trials. ``owner`` names this worker in the claims (default: a new ``worker_id()``);
    a worker restarted under the same name takes its slot back at once and settles it (its
    unfinished trial is failed as lost and retried, resuming the variant's checkpoint).
    """
    exp_dir = Path(results_dir) / spec.name
    exp_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(spec, store, sampler_seed)
    log = log or tqdm.write
    ledger = Ledger(study, store)
    me = owner or worker_id()
    _enqueue_baseline(spec, store, study, me)
    worker = _Worker(spec, store, exp_dir, load_dataset(spec.data_spec, cache_dir),
                     Tracking(spec.tracking, exp_dir, spec.name, log))
    bar = tqdm(total=spec.trials, desc=f"{spec.name} ({me})", unit="trial",
               disable=None if progress is None else not progress)

    def stop(held: Mapping[str, Claim]) -> bool:
        ledger.fail_untaken()
        trials = study.get_trials(deepcopy=False)
        complete = sum(t.state == TrialState.COMPLETE for t in trials)
        bar.update(min(complete, spec.trials) - bar.n)
        if complete >= spec.trials or sum(c.state == "done" for c in held.values()) >= spec.trials:
            return True
        if sum(t.state.is_finished() for t in trials) >= spec.max_trials:
            log(f"{spec.name}: stopped at max_trials={spec.max_trials} finished trials with "
                f"{complete} complete of {spec.trials} asked")
            return True
        return False

    def one_trial(slot: str, held: Callable[[], None]) -> str | None:
        """Fill ``slot``: with a trial that completed in it, or by running one; its number
        finishes the slot when it completed, else the slot is freed."""
        done = ledger.settle(slot)
        if done is not None:
            log(f"{spec.name}: trial {done} had completed in slot {slot}; its worker died "
                "before the slot was marked done")
            return str(done)
        taken = ledger.take(slot, me)
        if taken is None:
            log(f"{spec.name}: slot {slot} was taken over by another worker (this worker's "
                "heartbeats were late); it looks for another")
            return None
        trial = _run_trial(study, taken, worker, log, held)
        fault_point("trial-told")
        if trial is None or trial.state != TrialState.COMPLETE:
            return None
        bar.set_postfix_str(f"trial {trial.number} {trial.user_attrs.get('variant')}")
        return str(trial.number)

    work_pool(ledger.slots, [str(i) for i in range(spec.trials)], one_trial, owner=me,
              heartbeat=store.heartbeat, stop=stop)
    bar.close()
    worker.tracking.close()
    return sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))


def _run_trial(study: optuna.Study, taken: Taken, worker: _Worker, log: Callable[[str], None],
               held: Callable[[], None]) -> optuna.trial.FrozenTrial | None:
    """Run the objective on a taken trial and tell the study how it ended; None when another
    worker failed it as lost meanwhile (this worker's slot went silent for ``grace``): then the
    training stops at the next epoch end (``held()`` raises ``HoldLost``), as if this worker had
    died."""
    trial, values, state = taken.trial, None, TrialState.COMPLETE
    try:
        values = _objective(taken, worker, held)
    except optuna.TrialPruned:
        state = TrialState.PRUNED
    except _RunFailed:
        state = TrialState.FAIL
    except (UpdateFinishedTrialError, HoldLost):
        state = None
    # Not an interruption (SystemExit of a SLURM requeue, Ctrl-C): that leaves the trial
    # running, its slot is released, and the slot's next holder fails it as lost and retries
    # it, resuming the variant's checkpoint.
    except Exception:
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        raise
    ended = None if state is None else study.tell(trial, values, state, skip_if_finished=True)
    if ended is None or ended.state == TrialState.FAIL and LOST_ATTR in ended.system_attrs:
        log(f"{worker.spec.name}: trial {trial.number} of this worker was failed as lost (its "
            "slot's heartbeats were late); a retry runs it")
        return None
    return ended


def _enqueue_baseline(spec: SearchSpec, store: Store, study: optuna.Study, me: str) -> None:
    """Queue the baseline once per study, so the report has its reference."""
    params = spec.baseline_params()
    meta = store.claims(f"search/{spec.name}/meta")
    if params is not None and meta.claim("baseline enqueued", me):
        study.enqueue_trial(params, skip_if_exists=True)
        meta.finish("baseline enqueued", me)


def _objective(taken: Taken, worker: _Worker, slot_held: Callable[[], None]) -> float | list[float]:
    """One trial: parameters -> variant -> budget and duplicate checks -> train -> values.

    A retry takes the variant over from the lost trial it repeats; when that one had already
    finished the variant, ``run_cell`` finds its row and nothing is trained again. Training
    stops (``HoldLost``) once the slot or the variant was taken over."""
    spec, trial = worker.spec, taken.trial
    params = {p.name: trial.suggest_categorical(p.name, list(p.choices)) for p in spec.space}
    try:
        variant = spec.variant(params)
    except ValueError as exc:
        _end(trial, None, SKIPPED, f"invalid variant: {exc}")
    row = runner.base_row(variant, spec.seed, spec.name, spec.preset, spec.config)
    row["dataset"] = worker.data[0].name
    if spec.budget_gmacs is not None:
        prof = worker.profile(variant)
        if prof["gmacs_thop"] > spec.budget_gmacs:
            row.update(prof)
            _end(trial, row, SKIPPED, f"over budget: {prof['gmacs_thop']:.4g} GMACs > "
                                        f"budget_gmacs={spec.budget_gmacs:g} (not trained)")
    owner = f"trial {trial.number}"
    lost = None if taken.retry_of is None else f"trial {taken.retry_of}"
    if not worker.variants.claim(variant.id, owner, takeover=lost):
        held = worker.variants.all().get(variant.id)
        done = held is not None and held.state == "done"
        if not (done and held.owner == lost):
            _end(trial, row, SKIPPED, f"duplicate: {held.owner if held else 'another trial'} "
                                        f"{'ran' if done else 'is running'} this variant")
    with beating(worker.store.heartbeat, (worker.variants, variant.id, owner)) as beat:

        def held() -> None:
            slot_held()
            beat.check()

        row = _train(trial, worker, variant, held)
        fault_point("row-written")
        _store_row(trial, row)
        worker.variants.finish(variant.id, owner)
    if row["status"] == PRUNED:
        raise optuna.TrialPruned(row["error"])
    if row["status"] != OK:
        raise _RunFailed(row["error"])
    values = [float(row[OBJECTIVES.get(o).column]) for o in spec.objectives]
    return values[0] if len(values) == 1 else values


def _train(trial: optuna.Trial, worker: _Worker, variant: Variant,
           held: Callable[[], None]) -> dict[str, Any]:
    """The trial's cell through ``runner.run_cell`` (a failed or pruned row is redone), with
    each epoch's metric reported to Optuna and the pruner asked whether to stop; ``held()``
    raises ``HoldLost`` at an epoch's end once this worker lost the trial to another."""
    spec = worker.spec

    def on_epoch(epoch: int, scores: dict[str, float]) -> None:
        held()
        if len(spec.objectives) == 1:
            trial.report(float(scores[spec.metric]), epoch)
            if trial.should_prune():
                raise runner.Pruned(f"pruned after epoch {epoch} of {spec.config.budget_label}: "
                                    f"{spec.metric} {scores[spec.metric]:.4f}")

    out = run_dir(worker.exp_dir, variant, spec.seed)
    key = runner.run_key(variant, spec.data_spec, spec.config, spec.seed, spec.profile_size)
    return runner.run_cell(spec.experiment, variant, spec.seed, worker.data, out, key,
                           progress=False, retry_failed=True, on_epoch=on_epoch,
                           tracking=worker.tracking)


def _end(trial: optuna.Trial, row: dict[str, Any] | None, status: str, reason: str) -> NoReturn:
    """Record a trial that is not trained and end it as PRUNED."""
    _store_row(trial, {**(row or {}), "status": status, "error": reason})
    raise optuna.TrialPruned(reason)


def _store_row(trial: optuna.Trial, row: Mapping[str, Any]) -> None:
    """The row as user attributes, one statement each (a worker can die half-way)."""
    for i, (key, value) in enumerate(row.items()):
        if i == len(row) // 2:
            fault_point("row-half-stored")
        trial.set_user_attr(key, _json_safe(value))


def _json_safe(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
