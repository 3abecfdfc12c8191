"""The Pareto front of score against cost, exact and with the uncertainty of the score.

Costs (GMACs, parameters) are properties of the architecture, known exactly; a score is a mean
over seeds, known only to its interval. So besides the front of the means, each variant gets a
class that says what the seeds can support:

- **optimal**: on the front of the means (no other variant has cost <= and a better mean,
  one of the two strictly).
- **possibly optimal**: not on that front, but no variant that costs the same or less is better
  *with confidence* (significantly better in the paired pairwise tests of
  ``ablate.analysis.stats.pairwise_tests``, Holm-corrected across all pairs): with more seeds it
  could still turn out optimal.
- **dominated**: some variant that costs the same or less is significantly better.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CLASSES = ("optimal", "possibly optimal", "dominated")


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, score) points no other point beats: lower cost, higher score.

    A point is dominated when another has cost <= and score >= with at least one strict;
    identical points dominate neither each other. Points with a NaN are never on the front.
    The indices come sorted by cost, then by score descending.
    """
    xy = np.asarray(points, dtype=float).reshape(-1, 2)
    cost, score = xy[:, 0], xy[:, 1]
    finite = np.isfinite(cost) & np.isfinite(score)
    front = []
    for i in np.flatnonzero(finite):
        no_worse = (cost <= cost[i]) & (score >= score[i]) & finite
        better = (cost < cost[i]) | (score > score[i])
        if not np.any(no_worse & better):
            front.append(int(i))
    return sorted(front, key=lambda i: (cost[i], -score[i]))


def pareto_classes(cost: Sequence[float], score: Sequence[float],
                   beats: np.ndarray) -> list[str]:
    """The class of each point (``CLASSES``; ``""`` where cost or score is NaN).

    ``score`` is oriented so that higher is better; ``beats[j, i]`` is True when point j is
    better than point i with confidence.
    """
    cost, score = np.asarray(cost, dtype=float), np.asarray(score, dtype=float)
    beats = np.asarray(beats, dtype=bool)
    if beats.shape != (len(cost), len(cost)) or len(score) != len(cost):
        raise ValueError(f"expected {len(cost)} scores and a {len(cost)}x{len(cost)} beats "
                         f"matrix; got {len(score)} and {beats.shape}")
    finite = np.isfinite(cost) & np.isfinite(score)
    front = set(pareto_front(list(zip(cost, score))))
    out = []
    for i in range(len(cost)):
        if not finite[i]:
            out.append("")
        elif i in front:
            out.append("optimal")
        elif np.any(beats[:, i] & finite & (cost <= cost[i])):
            out.append("dominated")
        else:
            out.append("possibly optimal")
    return out
