"""Tests of ablate.scale.pool: the one claim-work-finish loop of grid and search workers."""

from __future__ import annotations

import pytest

from ablate.scale.pool import work_pool
from ablate.scale.storage import open_store


@pytest.fixture
def claims(tmp_path):
    return open_store(f"sqlite:///{tmp_path / 'pool.db'}", heartbeat=1).claims("pool")


def _all_done(keys):
    return lambda held: all(k in held and held[k].state == "done" for k in keys)


def test_each_key_is_worked_until_finished_and_a_released_key_is_worked_again(claims):
    calls, told = [], []

    def work(key: str, held) -> str | None:
        calls.append(key)
        if key == "b" and calls.count("b") == 1:
            return None  # released: claimed again at once
        assert claims.all()[key].owner == "me"  # held while working
        return f'"{key}"'

    work_pool(claims, ["a", "b", "c"], work, owner="me", heartbeat=1, stop=_all_done("abc"),
              finished=lambda *args: told.append(args))
    assert calls == ["a", "b", "b", "c"]
    assert told == [("a", '"a"', True), ("b", '"b"', True), ("c", '"c"', True)]
    assert {k: (c.state, c.result) for k, c in claims.all().items()} == \
        {k: ("done", f'"{k}"') for k in "abc"}
    work_pool(claims, ["a", "b", "c"], lambda key, held: pytest.fail("done keys are never redone"),
              owner="other", heartbeat=1, stop=_all_done("abc"))


def test_an_exception_releases_the_key_and_reaches_the_caller(claims):
    def work(key: str, held) -> str:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        work_pool(claims, ["a"], work, owner="me", heartbeat=1, stop=lambda held: False)
    assert claims.all() == {}


def test_a_live_holder_is_waited_for_and_a_stale_one_taken_over(claims):
    claims.grace = 0.5
    assert claims.claim("x", "dead")  # never beats again
    calls = []
    work_pool(claims, ["x"], lambda key, held: calls.append(key) or "1", owner="me", heartbeat=0.2,
              stop=_all_done("x"))
    assert calls == ["x"] and claims.all()["x"].owner == "me"


def test_finished_says_when_another_worker_took_the_key_over(claims):
    told = []

    def work(key: str, held) -> str:
        assert claims.claim(key, "thief", takeover="me")
        return "1"

    work_pool(claims, ["x"], work, owner="me", heartbeat=1, stop=lambda held: bool(told),
              finished=lambda *args: told.append(args))
    assert told == [("x", "1", False)]
    assert (claims.all()["x"].owner, claims.all()["x"].state) == ("thief", "running")


def test_a_worker_restarted_under_its_name_takes_its_own_key_back_first(claims):
    claims.grace = 3600  # a stale claim would never be taken over within the test
    assert claims.claim("b", "task-1")  # the task was requeued while it held "b"
    assert claims.claim("c", "other")  # a live worker of another name is waited for
    calls = []
    work_pool(claims, ["a", "b", "c"], lambda key, held: calls.append(key) or "1", owner="task-1",
              heartbeat=0.2, stop=lambda held: calls == ["b", "a"])
    assert calls == ["b", "a"] and claims.all()["c"].owner == "other"


def test_work_taken_over_stops_at_its_next_step_and_the_loop_goes_on(claims, beats_lost):
    """``held()`` raises once another worker took the key (this one's beats came late): the
    work stops there, as if this worker had died, and the worker looks for other keys."""
    steps = []

    def work(key: str, held) -> str:
        for step in range(3):
            held()
            steps.append((key, step))
            if key == "a":
                assert claims.claim("a", "heir", takeover="me")
                beats_lost()  # a beat finds the hold gone
        return "1"

    work_pool(claims, ["a", "b"], work, owner="me", heartbeat=0.05,
              stop=lambda held: held.get("b") is not None and held["b"].state == "done")
    assert steps == [("a", 0), ("b", 0), ("b", 1), ("b", 2)]
    assert (claims.all()["a"].owner, claims.all()["a"].state) == ("heir", "running")
