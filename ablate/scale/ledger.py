"""Which worker runs which trial of a search, and which of the asked trials (slots) it fills.

A search asks for ``trials`` complete trials: slots ``"0"`` .. ``"N-1"``, each held by one
worker at a time through a beating claim (``ablate.scale.pool``). Every trial a worker runs
(new, queued such as the baseline, or retried) is first *taken* for the worker's slot with one
atomic ``Claims.take`` keyed by the trial number, so two workers never run the same trial
(Optuna pops a queued trial with ``SELECT ... FOR UPDATE``, which SQLite ignores). The take
records the slot, which makes the slot's claim the trial's one heartbeat: a trial is alive
while its taker holds the slot, and lost once the slot is taken over. A new trial is created
WAITING and taken like a queued one, so no trial of a worker is RUNNING without a take.

The worker that takes a slot over first ``settle``s it: a trial that completed in it fills it
(its worker died between ``tell`` and finishing the slot), an unfinished one is failed as lost
and a copy of it is queued for the same slot (at most ``Store.max_retry`` copies), which the
slot's holder takes before any other trial. A worker that was only late (taken for dead while
alive) can neither take another trial for the slot it lost (``take`` checks the hold in the
same transaction) nor complete the trial it ran there (it was failed), so the study still ends
with exactly the asked number of complete trials. A RUNNING trial that no worker took (made outside
ablate, so it never beats) is failed once it started more than ``grace`` seconds ago.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState, create_trial

from ..common.faults import fault_point
from .claims import Claim
from .storage import Store

LOST_ATTR = "ablate:lost"  # system attribute of a trial failed as lost: why
RETRY_OF = "failed_trial"  # Optuna's names (RetryHeartbeatStaleTrialCallback) for a retry chain
RETRY_HISTORY = "retry_history"


@dataclass(frozen=True)
class Taken:
    """A trial taken for a slot; ``retry_of`` is the lost trial it repeats, if any."""

    trial: optuna.Trial
    retry_of: int | None


class Ledger:
    """The slots and the trial takes of one search study (see the module docstring)."""

    def __init__(self, study: optuna.Study, store: Store) -> None:
        self.study, self.store = study, store
        self.slots = store.claims(f"search/{study.study_name}/slots")
        self.takes = store.claims(f"search/{study.study_name}/trials")
        self._study_id = store.optuna.get_study_id_from_name(study.study_name)

    def settle(self, slot: str) -> int | None:
        """For a worker that just claimed ``slot``: the number of a trial that completed in it
        (the slot is then filled), else None, after failing the slot's unfinished trials as lost
        and queueing their retries."""
        takes = self.takes.all()
        mine = sorted(int(k) for k, c in takes.items() if _slot(c) == slot)
        if not mine:
            return None
        trials = {t.number: t for t in self.study.get_trials(deepcopy=False)}
        for number in mine:
            if trials[number].state == TrialState.COMPLETE:
                return number
        for number in mine:
            if trials[number].state.is_finished():
                continue
            lost = self._fail(number, "its worker died (its slot went silent) before it ended")
            if lost is not None:
                self._retry(lost)
            elif self._trial(number).state == TrialState.COMPLETE:  # told in the meantime
                return number
        return None

    def take(self, slot: str, owner: str) -> Taken | None:
        """A trial for ``slot``, taken by ``owner`` and RUNNING: a retry queued for this slot,
        else any other queued trial (oldest first), else a new one. None once ``owner`` no
        longer holds ``slot`` (its heartbeats were late and another worker took the slot over):
        a trial is only ever taken for a slot its taker holds, in one transaction, so the
        slot's new holder settles every trial taken for it."""
        while True:
            takes = self.takes.all()
            waiting = self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            queued = [(_retried_slot(t, takes), t.number, t) for t in waiting
                      if str(t.number) not in takes]
            for retried, _, frozen in sorted(queued, key=lambda q: (q[0] != slot, q[1])):
                taken = self._take(frozen, slot, owner) if retried in (slot, None) else None
                if taken is not None:
                    return taken
            if not self.slots.beat(slot, owner):
                return None
            self.study.add_trial(create_trial(state=TrialState.WAITING))
            fault_point("trial-created")

    def fail_untaken(self) -> None:
        """Fail the RUNNING trials no worker took that started more than ``grace`` s ago."""
        takes = self.takes.all()
        oldest = time.time() - self.store.grace
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            started = t.datetime_start.timestamp() if t.datetime_start else 0.0
            if str(t.number) not in takes and started < oldest:
                self._fail(t.number, "no worker took it and it never sent a heartbeat")

    def _take(self, frozen: FrozenTrial, slot: str, owner: str) -> Taken | None:
        if not self.takes.take(str(frozen.number), owner, json.dumps({"slot": slot}),
                               holding=(self.slots, slot)):
            return None
        fault_point("trial-taken")
        trial_id = self._trial_id(frozen.number)
        try:
            if not self.store.optuna.set_trial_state_values(trial_id, TrialState.RUNNING):
                return None  # popped outside ablate (a plain study.optimize)
        except UpdateFinishedTrialError:
            return None
        fault_point("trial-running")
        return Taken(optuna.Trial(self.study, trial_id),
                     (frozen.system_attrs.get(RETRY_HISTORY) or [None])[-1])

    def _fail(self, number: int, why: str) -> FrozenTrial | None:
        """Fail trial ``number`` as lost (why, in ``LOST_ATTR``); None if it ended meanwhile."""
        storage, trial_id = self.store.optuna, self._trial_id(number)
        try:
            storage.set_trial_system_attr(trial_id, LOST_ATTR, why)
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            return None
        return storage.get_trial(trial_id)

    def _retry(self, lost: FrozenTrial) -> None:
        """Queue a copy of ``lost`` (its parameters, or the baseline's fixed ones)."""
        history = [*lost.system_attrs.get(RETRY_HISTORY, []), lost.number]
        if len(history) > self.store.max_retry:
            return
        attrs = {k: v for k, v in lost.system_attrs.items() if k != LOST_ATTR}
        attrs.update({RETRY_OF: history[0], RETRY_HISTORY: history})
        self.study.add_trial(create_trial(state=TrialState.WAITING, params=lost.params,
                                          distributions=lost.distributions, system_attrs=attrs))

    def _trial(self, number: int) -> FrozenTrial:
        return self.store.optuna.get_trial(self._trial_id(number))

    def _trial_id(self, number: int) -> int:
        return self.store.optuna.get_trial_id_from_study_id_trial_number(self._study_id, number)


def _slot(take: Claim | None) -> str | None:
    """The slot a take records (None for no take)."""
    return json.loads(take.result)["slot"] if take is not None and take.result else None


def _retried_slot(trial: FrozenTrial, takes: dict[str, Claim]) -> str | None:
    """The slot of the lost trial that ``trial`` repeats (None for a first attempt)."""
    history = trial.system_attrs.get(RETRY_HISTORY) or []
    return _slot(takes.get(str(history[-1]))) if history else None
