"""Tests for ablate.evaluation.timing: latency in milliseconds and peak memory in MiB, checked
against independent sources (a forward pass of known duration; the kernel's own peak RSS)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ablate.evaluation.timing import latency_ms, peak_memory_mb


class _Sleeper(nn.Module):
    """A forward pass that takes at least ``seconds`` and counts its calls."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.seconds, self.calls = seconds, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        time.sleep(self.seconds)
        return x * self.weight


@pytest.mark.parametrize("training", [True, False])
def test_latency_is_in_milliseconds_and_restores_the_mode(training):
    model = _Sleeper(0.005).train(training)
    ms = latency_ms(model, (3, 8, 8), warmup=2, repeats=3)
    assert ms >= 5.0  # a 5 ms forward pass: milliseconds, not seconds
    assert model.calls == 5 and model.training is training


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc")
def test_cpu_peak_memory_is_the_kernels_peak_rss_in_mib():
    block = np.ones(64 * 2**20 // 8)  # touch 64 MiB so the peak is recent and real
    vm_hwm_kib = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text()
                      .splitlines() if line.startswith("VmHWM:"))
    assert peak_memory_mb(torch.device("cpu")) == pytest.approx(vm_hwm_kib / 1024, abs=4)
    assert block.sum() > 0

