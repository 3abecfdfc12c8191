"""Tests for ablate.bench.measure: the measurement sections, on tiny sizes; never timings; and
the quick preset held to the switches the committed CPU benchmark measured faster."""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ablate.bench.measure import CUDA_METRICS, PLAIN, SWITCHES, cuda_rows, switch_rows
from ablate.bench.settings import SMOKE
from ablate.bench.stats import faster
from ablate.config import load_config
from ablate.data import BatchLoader, DataSpec, load_dataset
from ablate.models.variant import Variant
from ablate.training.step import amp_dtype

CPU_CSV = Path(__file__).resolve().parents[2] / "results" / "bench" / "cpu.csv"


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_setup():
    spec = DataSpec("shapes", image_size=SMOKE.image_size, options={"n_train": 4, "n_val": 1})
    info, splits = load_dataset(spec, cache_dir=None)
    loader = BatchLoader(splits["train"], SMOKE.batch, "cpu", shuffle=True, drop_last=True)
    config = load_config("quick", image_size=SMOKE.image_size, batch_size=SMOKE.batch,
                         device="cpu")
    return Variant(widths=(16, 8), skips=("e2", "e3")), info, loader, config


@pytest.mark.slow
def test_switch_rows_time_each_usable_switch_on_the_cpu(one_thread, tiny_setup):
    tiny, info, loader, config = tiny_setup
    settings = replace(SMOKE, compile=True)
    rows = switch_rows(tiny, info, loader, config, torch.device("cpu"), settings)
    assert [r["metric"] for r in rows] == list(SWITCHES)
    by = {r["metric"]: r for r in rows}
    bf16 = by["bf16_speedup"]
    if amp_dtype(torch.device("cpu")) is None:
        assert bf16["median"] == "" and "no bf16 instructions" in bf16["note"]
    else:
        assert bf16["median"] > 0 and bf16["n"] == SMOKE.switch_rounds
    for metric in ("channels_last_speedup", "compile_speedup"):
        row = by[metric]
        assert math.isfinite(row["median"]) and row["median"] > 0, row
        assert row["note"].startswith("epoch time plain / with")


def test_cuda_rows_are_empty_without_cuda(tiny_setup):
    tiny, info, loader, config = tiny_setup
    rows = cuda_rows(tiny, info, loader, config, torch.device("cpu"), SMOKE)
    assert [r["metric"] for r in rows] == list(CUDA_METRICS)
    assert all(r["median"] == "" and r["note"] == "no CUDA device here" for r in rows)


@pytest.mark.parametrize("low, high, word", [(1.05, 1.2, "faster"), (0.8, 0.95, "slower"),
                                             (0.97, 1.04, "no measurable difference")])
def test_faster_reads_the_interval_against_one(low, high, word):
    assert faster({"median": (low + high) / 2, "ci_low": low, "ci_high": high}) == word


def test_the_quick_preset_uses_the_cpu_switches_measured_faster():
    """results/bench/cpu.csv (``make bench`` on the project's CPU) decides the quick preset: a
    switch whose speed-up CI lies above 1 is on, any other is off (threads 0: every core)."""
    with open(CPU_CSV, newline="") as f:
        rows = {r["metric"]: r for r in csv.DictReader(f) if r["section"] == "switches"}
    assert set(rows) == set(SWITCHES)
    quick = load_config("quick")
    for metric, key in SWITCHES.items():
        row = rows[metric]
        won = row["ci_low"] != "" and float(row["ci_low"]) > 1
        on = quick.threads == 0 if key == "threads" else getattr(quick, key)
        assert on == won or (key == "threads" and row["median"] == ""), (metric, row)
    assert set(PLAIN) == set(SWITCHES.values())
