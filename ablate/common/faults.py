"""Named points where a worker can die, so that tests kill it at exactly one of them.

``ABLATE_FAULT=<point>`` in a process's environment makes it SIGKILL itself when it reaches
``fault_point(<point>)``: no ``finally``, no ``atexit``, no flush, as with ``kill -9``
or a machine lost. Without the variable a point costs one dictionary lookup. The points are the
moments between two writes of a worker where a death could lose or double work (search trials,
grid cells, result rows and tables); ``FAULTS`` lists them, each with ``meta(name)["where"]``:
the workers that pass it (``search``, ``grid``, ``run`` for ``ablate run``). ``tests/scale``
kills a worker at each one and checks that the study or grid still ends exactly right.
"""

from __future__ import annotations

import os
import signal

from .registry import Registry

FAULT_ENV = "ABLATE_FAULT"

FAULTS: Registry = Registry("fault point", ordered=True)
for _name, _where, _help in (
    ("trial-created", ("search",), "a new trial is in the storage (WAITING), no worker has taken "
                                   "it"),
    ("trial-taken", ("search",), "a trial is taken for a slot, still WAITING (not yet RUNNING)"),
    ("trial-running", ("search",), "the taken trial is RUNNING and nothing of it has run (no "
                                   "variant claimed, no training)"),
    ("epoch-end", ("search", "grid", "run"), "an epoch's checkpoint is saved and the next epoch "
                                              "has not begun (mid-training)"),
    ("row-written", ("search", "grid"), "the run's row.json is written, the trial or cell is not "
                                        "yet finished"),
    ("row-half-stored", ("search",), "half of the trial's row is stored as user attributes"),
    ("trial-told", ("search",), "the trial is told (COMPLETE, PRUNED or FAIL), its slot is not "
                                "yet done"),
    ("runs-table", ("search", "grid", "run"), "the runs table's CSV is written, its Parquet not "
                                               "(trials.csv for a search report)"),
):
    FAULTS.register(_name, help=f"{', '.join(_where)}: {_help}", where=_where)(_name)


def fault_point(name: str) -> None:
    """Die here (SIGKILL) if ``ABLATE_FAULT`` names this point.

    Raises ``ValueError`` for a point or an ``ABLATE_FAULT`` value that is not in ``FAULTS``.
    """
    FAULTS.get(name)
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    if wanted not in FAULTS:
        raise ValueError(f"{FAULT_ENV}={wanted!r} is not allowed; allowed: "
                         f"{', '.join(FAULTS.names())}")
    if wanted == name:
        os.kill(os.getpid(), signal.SIGKILL)
