"""Tests of ablate.scale.ledger: racing workers never take one trial twice, a slot taken over
is settled (a completed trial fills it, a lost one is retried in it first), and a RUNNING trial
no worker took is failed after the grace period, on every storage."""

from __future__ import annotations

import time
from collections import Counter
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState

from ablate.scale import claims as claims_module
from ablate.scale import ledger as ledger_module
from ablate.scale.ledger import LOST_ATTR, Ledger, Taken
from ablate.scale.storage import open_store


def _study(url: str, name: str, fast: dict, queued: int = 0) -> Ledger:
    store = open_store(url, **fast)
    study = optuna.create_study(study_name=name, storage=store.optuna, load_if_exists=True)
    for i in range(queued):
        study.enqueue_trial({"x": i})
    return Ledger(study, store)


def _take(ledger: Ledger, slot: str, owner: str) -> Taken:
    """``owner`` claims ``slot`` (as ``work_pool`` does) and takes a trial for it."""
    assert ledger.slots.claim(slot, owner)
    taken = ledger.take(slot, owner)
    assert taken is not None
    return taken


@pytest.mark.slow
def test_racing_workers_take_each_queued_trial_once(storage, fast, fast_tmp, fork, ended):
    """Four processes take trials as fast as they can from 60 queued ones (the pop race that
    Optuna's SELECT ... FOR UPDATE loses on SQLite)."""
    url, barrier = storage("race"), fast_tmp / "barrier"
    _study(url, "race", fast, queued=60)
    barrier.mkdir()

    def worker(me: int):
        def work() -> None:
            ledger = _study(url, "race", fast)
            (barrier / str(me)).touch()
            while len(list(barrier.iterdir())) < 4:  # start together
                time.sleep(0.001)
            numbers = [_take(ledger, f"{me}-{i}", f"w{me}").trial.number for i in range(15)]
            (fast_tmp / f"took{me}").write_text(" ".join(map(str, numbers)))
        return work

    pids = [fork(worker(me)) for me in range(4)]
    assert [ended(pid) for pid in pids] == ["exit 0"] * 4
    took = Counter(n for me in range(4) for n in (fast_tmp / f"took{me}").read_text().split())
    assert sum(took.values()) == 60 and set(took.values()) == {1}, took
    study = optuna.load_study(study_name="race", storage=open_store(url).optuna)
    assert {t.number for t in study.get_trials(states=(TrialState.RUNNING,))} == \
        {int(n) for n in took}


def test_a_slot_taken_over_is_settled_before_any_new_trial(storage, fast):
    ledger = _study(storage("settle"), "settle", fast, queued=1)  # trial 0: a queued trial
    study = ledger.study
    assert ledger.settle("0") is None  # nothing ran in it
    done = _take(ledger, "0", "dead")
    assert done.trial.number == 0 and done.retry_of is None
    study.tell(done.trial, 1.0)  # its worker dies before the slot is marked done
    assert ledger.settle("0") == 0  # the heir fills the slot with it: no extra trial

    lost = _take(ledger, "1", "dead")  # a new trial; its worker dies mid-trial
    x = lost.trial.suggest_categorical("x", [7, 8, 9])
    study.enqueue_trial({"x": 9})
    assert ledger.settle("1") is None
    failed = study.trials[lost.trial.number]
    assert failed.state == TrialState.FAIL and LOST_ATTR in failed.system_attrs
    retry = [t for t in study.get_trials(states=(TrialState.WAITING,))
             if "retry_history" in t.system_attrs]
    assert [(t.params, t.system_attrs["retry_history"]) for t in retry] == \
        [({"x": x}, [lost.trial.number])]
    queued = _take(ledger, "2", "other")  # another slot: the queued {"x": 9}, not the retry
    assert queued.trial.suggest_categorical("x", [7, 8, 9]) == 9
    assert ledger.slots.claim("1", "heir", takeover="dead")
    again = ledger.take("1", "heir")  # the retry runs in the lost trial's slot
    assert (again.trial.number, again.retry_of) == (retry[0].number, lost.trial.number)
    assert again.trial.params == {"x": x}


def test_a_running_trial_nobody_took_fails_after_the_grace_period(storage, fast, monkeypatch):
    ledger = _study(storage("untaken"), "untaken", fast)
    untaken = ledger.study.ask()  # as a worker killed before its first heartbeat leaves it
    taken = _take(ledger, "0", "alive")  # alive while its slot beats: not judged by its age
    started = ledger.study.trials[untaken.number].datetime_start.timestamp()
    for age, state in ((fast["grace"] - 0.5, TrialState.RUNNING),  # it may still beat
                       (fast["grace"] + 0.5, TrialState.FAIL)):
        monkeypatch.setattr(ledger_module, "time", SimpleNamespace(time=lambda a=age: started + a))
        ledger.fail_untaken()
        assert ledger.study.trials[untaken.number].state == state, age
    lost = ledger.study.trials[untaken.number]
    assert "never sent a heartbeat" in lost.system_attrs[LOST_ATTR]
    assert ledger.study.trials[taken.trial.number].state == TrialState.RUNNING


def test_a_late_worker_takes_no_trial_for_the_slot_it_lost(storage, fast, monkeypatch):
    """A live worker taken for dead (its beats late): its slot's new holder settles the slot and
    runs the retry; the late worker can take no trial there any more, so the slot is never
    filled twice (what let a study end with one complete trial too many)."""
    ledger = _study(storage("late"), "late", fast)
    first = _take(ledger, "0", "late")
    now = time.time() + fast["grace"] + 1  # the late worker's beats stopped for over grace
    monkeypatch.setattr(claims_module, "time", SimpleNamespace(time=lambda: now))
    assert ledger.slots.claim("0", "heir")
    assert ledger.settle("0") is None  # its trial failed as lost, a retry queued
    assert ledger.take("0", "late") is None  # the retry, a queued or a new trial: none is its
    retry = ledger.take("0", "heir")
    assert retry is not None and retry.retry_of == first.trial.number
    trials = ledger.study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.RUNNING]
    assert set(ledger.takes.all()) == {"0", "1"}  # and no trial was added for the late worker
