"""Tests for ablate.bench: a smoke run through the CLI (tiny sizes, seconds) that checks the
output files, columns and header, and that numbers are positive and finite; never timings."""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path

import pytest
import torch

from ablate import bench
from ablate.bench import COLUMNS, CUDA_METRICS, SMOKE, BenchSettings, default_variants, device_slug
from ablate.cli import main
from ablate.config import load_config
from ablate.data import BatchLoader, DataSpec, load_dataset
from ablate.models.variant import Variant

VARIANT_METRICS = ("params_m", "latency_b1_ms", "latency_batch_ms", "train_images_per_s",
                   "bare_images_per_s", "peak_mem_mb", "harness_over_bare")
OVERHEAD_METRICS = ("harness_step_ms", "bare_step_ms", "harness_over_bare", "bare_copy_over_bare",
                    "bare_step_us")
OVERHEAD_DIFFERENCES = ("harness_extra_us", "bare_copy_extra_us")  # differences: may be < 0
DATA_RATIOS = ("data_epoch_ratio", "train_epoch_ratio")
PEER_RATIOS = ("train_time_ratio", "latency_b1_ratio", "latency_batch_ratio")


def _smoke(tmp_path, device: str) -> tuple[list[dict], str]:
    assert main(["bench", "--smoke", "--device", device, "--threads", "1",
                 "--out", str(tmp_path)]) == 0
    slug = device_slug(torch.device(device))
    with open(tmp_path / f"{slug}.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == COLUMNS
        rows = list(reader)
    return rows, (tmp_path / f"{slug}.md").read_text()


def _positive_finite(row: dict) -> bool:
    values = [float(row[k]) for k in ("median", "min", "max")]
    return all(math.isfinite(v) and v > 0 for v in values) and values[1] <= values[0] <= values[2]


def _check(rows: list[dict], md: str, cuda: bool) -> None:
    by = {(r["section"], r["metric"]): r for r in rows}
    assert {r["device"] for r in rows} == {rows[0]["device"]}
    variant = Variant().id  # --smoke times the plain baseline only
    for metric in VARIANT_METRICS:
        assert by[("variant", metric)]["variant"] == variant
        assert _positive_finite(by[("variant", metric)]), metric
    for metric in OVERHEAD_METRICS + OVERHEAD_DIFFERENCES:
        row = by[("overhead", metric)]
        assert row["variant"] == (bench.TRIVIAL if metric.endswith("_us") else variant), metric
        assert row["n"] == str(SMOKE.overhead_rounds) and row["ci_low"] == "", metric  # no CI
        if metric in OVERHEAD_DIFFERENCES:
            low, mid, high = (float(row[k]) for k in ("min", "median", "max"))
            assert math.isfinite(mid) and low <= mid <= high, metric
        else:
            assert _positive_finite(row), metric
    for metric in DATA_RATIOS:
        assert _positive_finite(by[("data", metric)]), metric
    for metric in PEER_RATIOS:
        row = by[("peer", metric)]
        if importlib.util.find_spec("segmentation_models_pytorch") is None:
            assert row["median"] == "" and "not installed" in row["note"]
        else:
            assert _positive_finite(row), metric
    for metric in CUDA_METRICS:
        row = by[("cuda", metric)]
        if not cuda:
            assert row["median"] == "" and row["note"] == "no CUDA device here"
        elif metric == "input_wait_share":  # a difference of two times: may be < 0
            assert math.isfinite(float(row["median"])) and float(row["median"]) < 1
        elif metric != "compile_speedup":  # --smoke skips compiling
            assert _positive_finite(row), metric
    for line in ("# ablate bench: ", "- machine: ", "- device: ", "- versions: python ",
                 "torch ", "segmentation_models_pytorch ", "- date: ", "- settings: image 32 px",
                 "## Variants", "## Harness overhead", "| harness / bare loop |",
                 "not resolved: fewer than 6 rounds", "## Peer: segmentation_models_pytorch",
                 "## Data path",
                 "## CUDA switches", "| variant | params (M) |", f"`{variant}`"):
        assert line in md, line


def test_smoke_cpu_writes_csv_and_md(tmp_path):
    rows, md = _smoke(tmp_path, "cpu")
    _check(rows, md, cuda=False)
    assert "No CUDA device here" in md


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_smoke_cuda_writes_csv_and_md(tmp_path):
    rows, md = _smoke(tmp_path, "cuda")
    assert rows[0]["device"].startswith("cuda-")
    _check(rows, md, cuda=True)


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
    rows = bench._switch_rows(tiny, info, loader, config, torch.device("cpu"), SMOKE)
    assert [r["metric"] for r in rows] == list(CUDA_METRICS)
    for row in rows:
        if row["metric"] == "compile_speedup":
            assert row["median"] == "" and "skipped" in row["note"]
        elif row["metric"] == "input_wait_share":  # a difference of two times: may be < 0
            assert math.isfinite(row["median"]) and row["median"] < 1
        else:
            assert row["median"] > 0 and math.isfinite(row["median"]), row


@pytest.mark.parametrize("n", [6, 9, 10, 25, 40])
def test_median_interval_is_the_order_statistics_of_the_binomial(n):
    """Independent check: the widest-coverage-at-least-95% pair of order statistics (x_(k),
    x_(n+1-k)) for the median, with k from the Binomial(n, 1/2) tail."""
    values = [float(v) for v in torch.randn(n, generator=torch.Generator().manual_seed(n))]
    k = max(j for j in range(1, n // 2 + 1)
            if 1 - 2 * sum(math.comb(n, i) for i in range(j)) / 2 ** n >= 0.95)
    ordered = sorted(values)
    assert bench._median_ci(values) == pytest.approx((ordered[k - 1], ordered[n - k]))


def test_median_interval_needs_six_rounds():
    assert bench._median_ci([1.0, 1.1, 0.9, 1.0, 1.2]) == ("", "")


@pytest.mark.parametrize("low, high, verdict", [
    (0.95, 1.02, "met"), (1.031, 1.1, "missed"), (0.99, 1.05, "not resolved: the 95% CI spans"),
    ("", "", "not resolved: fewer than"),
])
def test_verdict_reads_the_interval_against_the_goal(low, high, verdict):
    assert bench._verdict({"ci_low": low, "ci_high": high}, 1.03).startswith(verdict)
    steady = {"median": 1.0, "ci_low": 0.98, "ci_high": 1.01}  # an A/A floor around 1
    assert bench._verdict({"ci_low": low, "ci_high": high}, 1.03, steady).startswith(verdict)


def test_verdict_is_withheld_when_identical_code_differs():
    floor = {"median": 1.051, "ci_low": 1.02, "ci_high": 1.09}
    verdict = bench._verdict({"ci_low": 0.945, "ci_high": 1.026}, 1.03, floor)
    assert verdict == "not resolved: identical code differs here (A/A 1.051, 95% CI excludes 1)"


@pytest.mark.parametrize("low, high, step_ms, verdict", [
    (-20.0, 250.0, 10.0, "met: at most 2.50% of a 10 ms step"),
    (-20.0, -5.0, 10.0, "met: at most 0.00% of a 10 ms step"),
    (310.0, 400.0, 10.0, "missed: at least 3.10% of a 10 ms step"),
    (100.0, 400.0, 10.0, "not resolved: up to 4.00% of a 10 ms step"),
    ("", "", 10.0, "not resolved: fewer than"),
])
def test_bound_verdict_divides_the_added_time_by_the_step(low, high, step_ms, verdict):
    extra = {"ci_low": low, "ci_high": high}  # microseconds per step
    assert bench._bound_verdict(extra, step_ms, 1.03).startswith(verdict)


def test_alternate_runs_abba():
    calls = []
    results = bench._alternate(3, *(lambda r, name=name: calls.append((r, name)) or r
                                    for name in "abc"))
    assert calls == [(1, "a"), (1, "b"), (1, "c"), (2, "c"), (2, "b"), (2, "a"),
                     (3, "a"), (3, "b"), (3, "c")]
    assert results == ([1, 2, 3],) * 3


def test_default_variants_are_the_plain_baseline_then_the_studies(monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # the defaults are relative paths
    variants = default_variants()
    assert variants[0] == Variant() and len(set(variants)) == len(variants) > 1
    assert {v.pool for v in variants} >= {"M", "MAM", "MAA", "AAM"}


@pytest.mark.parametrize("kwargs, message", [
    ({"image_size": 48}, "multiple of 32"),
    ({"batch": 0}, "batch=0"),
    ({"batch": 32, "data_images": 16}, "fewer than one batch"),
    ({"threads": -1}, "threads=-1"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BenchSettings(**kwargs)


def test_missing_experiment_file_exits_2(tmp_path, capsys):
    assert main(["bench", "--smoke", "--variants", str(tmp_path / "nope.yaml"),
                 "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
