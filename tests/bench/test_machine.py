"""Tests for ablate.bench.machine: the device's file name and the report header."""

from __future__ import annotations

import torch

from ablate.bench.machine import cores, device_slug, meta
from ablate.bench.settings import SMOKE
from ablate.config import load_config


def test_cpu_header_names_the_machine_and_the_sizes():
    assert device_slug(torch.device("cpu")) == "cpu"
    assert cores() >= 1
    header = meta(torch.device("cpu"), SMOKE, load_config("quick"))
    assert list(header) == ["title", "machine", "device", "versions", "date", "settings"]
    assert header["title"] == "cpu" and header["date"].endswith(" UTC")
    assert header["device"] == f"CPU, {torch.get_num_threads()} torch threads"
    assert header["settings"].startswith("image 32 px, batch 2, steps per timed epoch 2")
    quick = load_config("quick")
    switches = f"amp {quick.amp}, channels_last {quick.channels_last}, compile {quick.compile})"
    assert switches in header["settings"]
