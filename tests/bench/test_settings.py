"""Tests for ablate.bench.settings: sizes that cannot make a benchmark are refused."""

from __future__ import annotations

import pytest

from ablate.bench.settings import BenchSettings


@pytest.mark.parametrize("kwargs, message", [
    ({"image_size": 48}, "multiple of 32"),
    ({"batch": 0}, "batch=0"),
    ({"batch": 32, "data_images": 16}, "fewer than one batch"),
    ({"threads": -1}, "threads=-1"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BenchSettings(**kwargs)
