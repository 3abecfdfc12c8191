"""The one work loop of a pool of workers: claim a free key, work on it while beating, finish.

``run_grid`` (its keys: the experiment's cells) and ``run_search`` (its keys: slots among the
asked trials) both call ``work_pool``; only the keys, the unit of work and when to stop differ.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from .claims import Claim, Claims, HoldLost, beating


def work_pool(claims: Claims, keys: Sequence[str],
              work: Callable[[str, Callable[[], None]], str | None], *,
              owner: str, heartbeat: float, stop: Callable[[Mapping[str, Claim]], bool],
              finished: Callable[[str, str, bool], None] | None = None) -> None:
    """Work on ``keys`` with the other workers holding ``claims`` until ``stop`` says so.

    Each round: ``stop(held)`` gets every claim of the namespace (it is also where a caller
    updates its progress) and True ends the loop; otherwise a key is claimed for ``owner``: one
    still running under ``owner`` first (the worker was restarted under the same name, e.g. a
    requeued SLURM array task: it takes its own key back at once, without waiting ``grace``),
    else the first key in ``keys`` that is free or held by a stale worker; ``work(key, held)``
    runs while the claim beats every ``heartbeat`` seconds, and may call ``held()`` between
    steps (epochs): once another worker took the key over (this one's beats came late), it
    raises ``HoldLost``, which stops the work as if this worker had died and the loop goes on.
    A JSON-text result finishes the key (done, never claimed again) and
    ``finished(key, result, kept)`` is told whether this worker still held it; None (or an
    exception) releases it for any worker to claim again. When no key is free, the worker
    sleeps a moment and looks again (for a result, or a dead worker's stale claim).
    """
    while True:
        held = claims.all()
        if stop(held):
            return
        own = [k for k in keys if k in held and held[k].state == "running"
               and held[k].owner == owner]
        free = own + [k for k in keys if k not in held or held[k].stale]
        key = next((k for k in free if claims.claim(k, owner)), None)
        if key is None:
            time.sleep(min(1.0, heartbeat / 2))
            continue
        result = None
        try:
            with beating(heartbeat, (claims, key, owner)) as beat:
                result = work(key, beat.check)
        except HoldLost:
            continue
        finally:
            if result is None:
                claims.release(key, owner)
        if result is None:
            continue
        kept = claims.finish(key, owner, result)
        if finished is not None:
            finished(key, result, kept)
