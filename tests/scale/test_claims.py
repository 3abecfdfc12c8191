"""Tests of ablate.scale.claims: atomic claims and takes on SQLite and beside a journal file,
and two processes racing for the same keys."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ablate.scale.claims import HoldLost, beating
from ablate.scale.storage import open_store


def _urls(tmp_path: Path) -> dict[str, str]:
    return {"sqlite": f"sqlite:///{tmp_path / 'claims.db'}",
            "journal": f"journal:{tmp_path / 'journal.log'}"}


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_claims_are_exclusive_go_stale_and_are_never_retaken_once_done(tmp_path, kind):
    claims = open_store(_urls(tmp_path)[kind], heartbeat=1).claims("unit")
    claims.grace = 0.5
    assert claims.claim("a", "w1") and claims.claim("a", "w1")  # re-entrant
    assert not claims.claim("a", "w2")
    assert claims.claim("a", "w3", takeover="w1")  # a retry takes its predecessor's hold
    assert not claims.beat("a", "w1") and claims.beat("a", "w3")
    time.sleep(0.7)
    assert claims.all()["a"].stale
    assert claims.claim("a", "w2")  # stale: taken over
    assert not claims.finish("a", "w3")
    assert claims.finish("a", "w2", '{"dice": 1}')
    assert not claims.claim("a", "w4") and not claims.claim("a", "w2")
    held = claims.all()["a"]
    assert (held.state, held.owner, held.result, held.stale) == ("done", "w2", '{"dice": 1}', False)
    assert claims.claim("b", "w1")
    claims.release("b", "w1")
    assert claims.claim("b", "w2")
    assert set(open_store(_urls(tmp_path)[kind]).claims("other").all()) == set()


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_key_is_taken_once_and_for_all(tmp_path, kind):
    claims = open_store(_urls(tmp_path)[kind], heartbeat=1).claims("takes")
    claims.grace = 0.1
    assert claims.take("7", "w1", '{"slot": "0"}')
    assert not claims.take("7", "w2") and not claims.take("7", "w1")  # not even by its taker
    time.sleep(0.2)
    assert not claims.claim("7", "w2")  # done: never stale, never claimed
    assert claims.claim("8", "w1") and not claims.take("8", "w2")  # a running key is held
    held = claims.all()["7"]
    assert (held.state, held.owner, held.result, held.stale) == ("done", "w1", '{"slot": "0"}',
                                                                 False)


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_take_while_holding_needs_the_hold_and_refreshes_it(tmp_path, kind):
    store = open_store(_urls(tmp_path)[kind], heartbeat=1)
    slots, takes = store.claims("slots"), store.claims("takes")
    assert not takes.take("1", "w1", holding=(slots, "0"))  # not held by anyone
    assert slots.claim("0", "w1")
    before = slots.all()["0"].beat
    time.sleep(0.01)
    assert not takes.take("1", "w2", holding=(slots, "0"))  # held, but by another worker
    assert takes.take("1", "w1", '{"slot": "0"}', holding=(slots, "0"))
    assert slots.all()["0"].beat > before  # the take was a heartbeat of the slot
    assert slots.claim("0", "w2", takeover="w1")  # taken over: w1 takes nothing more for it
    assert not takes.take("2", "w1", holding=(slots, "0")) and "2" not in takes.all()
    other = open_store(_urls(tmp_path / "x")[kind], heartbeat=1).claims("slots")
    with pytest.raises(ValueError, match="same store"):
        takes.take("3", "w2", holding=(other, "0"))


def test_a_beater_tells_its_block_when_a_hold_was_taken_over(tmp_path):
    claims = open_store(_urls(tmp_path)["sqlite"], heartbeat=1).claims("unit")
    assert claims.claim("a", "w1")
    with beating(0.02, (claims, "a", "w1")) as beat:
        time.sleep(0.1)
        beat.check()  # still held: nothing raised
        assert claims.claim("a", "w2", takeover="w1")
        deadline = time.monotonic() + 30  # the next beat finds it, however busy the machine
        while not beat.lost.is_set():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(HoldLost, match=r"^a \(unit\) was taken over by another worker$"):
            beat.check()
    assert claims.all()["a"].owner == "w2"


RACE = """
import json, random, sys, time
from pathlib import Path
from ablate.scale.claims import HoldLost, beating
from ablate.scale.storage import open_store
barrier, me, n, urls = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4:]
stores = [open_store(url).claims("race") for url in urls]
keys = [str(i) for i in range(n)]
random.Random(me).shuffle(keys)  # different orders: the processes collide on many keys
won = []
for b, claims in enumerate(stores):
    for verb in (claims.claim, claims.take):
        (barrier / f"{b}-{verb.__name__}-{me}").touch()
        while len(list(barrier.glob(f"{b}-{verb.__name__}-*"))) < 2:  # start each race together
            time.sleep(0.001)
        won.append([k for k in keys if verb(k if verb == claims.claim else f"t{k}", me)])
print(json.dumps(won))
"""


@pytest.mark.slow
def test_two_processes_racing_for_the_same_keys_never_both_win(tmp_path):
    urls, n = list(_urls(tmp_path).values()), 30
    for url in urls:
        open_store(url).claims("race").all()  # create the table before the race
    (tmp_path / "barrier").mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(tmp_path / "barrier"), f"w{i}",
                               str(n), *urls], stdout=subprocess.PIPE, text=True)
             for i in range(2)]
    won = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    for race, (url, verb) in enumerate((u, v) for u in urls for v in ("claim", "take")):
        first, second = set(won[0][race]), set(won[1][race])
        assert not first & second and first | second == {str(i) for i in range(n)}, (url, verb)
        owners = {k: c.owner for k, c in open_store(url).claims("race").all().items()
                  if (verb == "take") == k.startswith("t")}
        assert owners == {("t" if verb == "take" else "") + k: f"w{i}"
                          for i, keys in enumerate((first, second)) for k in keys}, (url, verb)
