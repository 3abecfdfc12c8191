"""Tests for ablate.bench.run: a smoke run through the CLI (tiny sizes, seconds) that checks the
output files, columns and header, and that numbers are positive and finite; never timings."""

from __future__ import annotations

import csv
import importlib.util
import math
import re
from pathlib import Path

import pytest
import torch

from ablate.bench import (
    COLUMNS,
    CUDA_METRICS,
    SMOKE,
    SWITCHES,
    TRIVIAL,
    default_variants,
    device_slug,
)
from ablate.cli import main
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


def _unpadded(md: str) -> str:
    """``md`` with the padding of table cells removed: ``|  a   | b |`` reads ``| a | b |``."""
    return "\n".join(re.sub(r" {2,}", " ", line) if line.startswith("|") else line
                     for line in md.split("\n"))


def _check(rows: list[dict], md: str, cuda: bool) -> None:
    by = {(r["section"], r["metric"]): r for r in rows}
    assert {r["device"] for r in rows} == {rows[0]["device"]}
    variant = Variant().id  # --smoke times the plain baseline only
    for metric in VARIANT_METRICS:
        assert by[("variant", metric)]["variant"] == variant
        assert _positive_finite(by[("variant", metric)]), metric
    for metric in OVERHEAD_METRICS + OVERHEAD_DIFFERENCES:
        row = by[("overhead", metric)]
        assert row["variant"] == (TRIVIAL if metric.endswith("_us") else variant), metric
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
    for metric in SWITCHES:
        row = by[("switches", metric)]
        if row["note"].startswith("epoch time plain / with"):
            assert _positive_finite(row) and row["n"] == str(SMOKE.switch_rounds), metric
        else:  # a switch this device cannot use says why
            assert row["median"] == "" and row["note"], metric
    assert "skipped" in by[("switches", "compile_speedup")]["note"]  # --smoke skips compiling
    for metric in ("study_wall_s", "jobs_speedup"):  # --threads 1: one job x 1 thread only
        row = by[("jobs", metric)]
        assert row["variant"] == "1 job x 1 thread" and row["n"] == str(SMOKE.jobs_rounds)
        assert _positive_finite(row), metric
    assert float(by[("jobs", "jobs_speedup")]["median"]) == 1.0
    text = _unpadded(md)  # tables are padded to their column widths
    for line in ("# ablate bench: ", "- machine: ", "- device: ", "- versions: python ",
                 "torch ", "segmentation_models_pytorch ", "- date: ", "- settings: image 32 px",
                 "## Variants", "## Harness overhead", "| harness / bare loop |",
                 "not resolved: fewer than 6 rounds", "## Peer: segmentation_models_pytorch",
                 "## Data path",
                 "## Switches", "## CUDA input", "## Jobs: one process against N",
                 "| 1 job x 1 thread |", "| variant | params (M) |", f"`{variant}`"):
        assert line in text, line


@pytest.mark.slow
def test_smoke_cpu_writes_csv_and_md(tmp_path):
    rows, md = _smoke(tmp_path, "cpu")
    _check(rows, md, cuda=False)
    assert "No CUDA device here" in md


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_smoke_cuda_writes_csv_and_md(tmp_path):
    rows, md = _smoke(tmp_path, "cuda")
    assert rows[0]["device"].startswith("cuda-")
    _check(rows, md, cuda=True)


def test_default_variants_are_the_plain_baseline_then_the_studies(monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # the defaults are relative paths
    variants = default_variants()
    assert variants[0] == Variant() and len(set(variants)) == len(variants) > 1
    assert {v.pool for v in variants} >= {"M", "MAM", "MAA", "AAM"}


def test_missing_experiment_file_exits_2(tmp_path, capsys):
    assert main(["bench", "--smoke", "--variants", str(tmp_path / "nope.yaml"),
                 "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
