"""Tests for ablate.bench.measure: the measurement sections, on tiny sizes; never timings."""

from __future__ import annotations

import math

import pytest
import torch

from ablate.bench.measure import CUDA_METRICS, switch_rows
from ablate.bench.settings import SMOKE
from ablate.config import load_config
from ablate.data import BatchLoader, DataSpec, load_dataset
from ablate.models.variant import Variant


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_switch_rows_run_on_the_cpu(one_thread):
    """The CUDA-only measurements, exercised on the CPU (where the switches change nothing)."""
    spec = DataSpec("shapes", image_size=SMOKE.image_size, options={"n_train": 4, "n_val": 1})
    info, splits = load_dataset(spec, cache_dir=None)
    loader = BatchLoader(splits["train"], SMOKE.batch, "cpu", shuffle=True, augment=True,
                         drop_last=True)
    config = load_config("quick", image_size=SMOKE.image_size, batch_size=SMOKE.batch,
                         device="cpu")
    tiny = Variant(widths=(16, 8), skips=("e2", "e3"))
    rows = switch_rows(tiny, info, loader, config, torch.device("cpu"), SMOKE)
    assert [r["metric"] for r in rows] == list(CUDA_METRICS)
    for row in rows:
        if row["metric"] == "compile_speedup":
            assert row["median"] == "" and "skipped" in row["note"]
        elif row["metric"] == "input_wait_share":  # a difference of two times: may be < 0
            assert math.isfinite(row["median"]) and row["median"] < 1
        else:
            assert row["median"] > 0 and math.isfinite(row["median"]), row
