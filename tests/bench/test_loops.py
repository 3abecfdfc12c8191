"""Tests for ablate.bench.loops: the order in which compared runs take turns."""

from __future__ import annotations

from ablate.bench.loops import alternate


def test_alternate_runs_abba():
    calls = []
    results = alternate(3, *(lambda r, name=name: calls.append((r, name)) or r
                             for name in "abc"))
    assert calls == [(1, "a"), (1, "b"), (1, "c"), (2, "c"), (2, "b"), (2, "a"),
                     (3, "a"), (3, "b"), (3, "c")]
    assert results == ([1, 2, 3],) * 3
