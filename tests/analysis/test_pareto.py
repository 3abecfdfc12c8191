"""Tests of ablate.analysis.pareto: the front and the three classes on hand-made points, and
the classes of a summary recomputed from its pairwise tests."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ablate.analysis.pareto import CLASSES, pareto_classes, pareto_front
from ablate.analysis.stats import pairwise_tests, summarize


def test_pareto_front_on_hand_made_points():
    points = [(1, 0.5), (2, 0.7), (2, 0.6), (3, 0.7), (0.5, 0.4), (4, 0.9), (math.nan, 1.0)]
    # (2, 0.6) and (3, 0.7) are beaten by (2, 0.7); the NaN point is never on the front.
    assert pareto_front(points) == [4, 0, 1, 5]
    assert pareto_front([(1, 1), (1, 1), (2, 0.5)]) == [0, 1]
    assert pareto_front([(3, 0.9)]) == [0]
    assert pareto_front([]) == []


def test_classes_separate_the_front_the_possible_and_the_dominated():
    cost = [1.0, 2.0, 2.0, 3.0, math.nan]
    score = [0.5, 0.7, 0.69, 0.6, 0.9]
    beats = np.zeros((5, 5), dtype=bool)
    beats[1, 3] = True   # 1 (cost 2) is better than 3 (cost 3) with confidence
    beats[3, 0] = True   # a costlier variant beating a cheaper one dominates nothing
    # 2 is off the front (1 has the same cost and a higher mean) but not beaten with confidence
    assert pareto_classes(cost, score, beats) == [
        "optimal", "optimal", "possibly optimal", "dominated", ""]
    assert set(CLASSES) == {"optimal", "possibly optimal", "dominated"}
    with pytest.raises(ValueError, match="5x5 beats"):
        pareto_classes(cost, score, beats[:2])


def test_summary_classes_follow_the_pairwise_tests():
    # cheap: lowest GMACs, clearly worse; near: as good as top but costlier, not separable
    # from it; costly: costlier and clearly worse.
    seeds = np.arange(5)
    noise = np.array([0.003, -0.002, 0.001, -0.003, 0.002])
    rows = []
    for variant, gmacs, dice in (("top", 3.0, 0.90 + noise), ("near", 3.5, 0.899 - noise),
                                 ("cheap", 1.0, 0.80 + noise / 2), ("costly", 4.0, 0.85 + noise)):
        rows += [dict(variant=variant, seed=int(s), status="ok", dice=float(d),
                      gmacs_thop=gmacs, latency_ms=10.0 - gmacs)
                 for s, d in zip(seeds, dice)]
    runs = pd.DataFrame(rows)
    s = summarize(runs, "top").set_index("variant")
    pairs = pairwise_tests(runs)
    wins = set(zip(pairs["winner"], np.where(pairs["winner"] == pairs["a"], pairs["b"],
                                             pairs["a"])))
    assert ("top", "costly") in wins and ("top", "cheap") in wins
    assert ("top", "near") not in wins and ("near", "top") not in wins
    assert s["pareto_gmacs"].to_dict() == {"top": "optimal", "near": "possibly optimal",
                                           "cheap": "optimal", "costly": "dominated"}
    # Latency runs the other way (10 - GMACs): costly is the fastest, cheap the slowest.
    assert s["pareto_latency"].to_dict() == {"top": "optimal", "near": "optimal",
                                             "cheap": "dominated", "costly": "optimal"}
