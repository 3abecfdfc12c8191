"""Inference latency and peak memory, measured the same way everywhere (runs and benchmarks)."""

from __future__ import annotations

import resource
import statistics
import sys
import time

import torch
from torch import nn


def latency_ms(model: nn.Module, input_size: tuple[int, ...], batch: int = 1,
               warmup: int = 3, repeats: int = 10) -> float:
    """Median wall time of one forward pass, in milliseconds, on the model's device.

    Eval mode under ``inference_mode`` (the caller's mode is restored); CUDA is timed with
    events after a synchronize, the CPU with ``perf_counter``.
    """
    param = next(model.parameters())
    x = torch.randn((batch, *input_size), device=param.device, dtype=param.dtype)
    cuda = param.device.type == "cuda"
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.inference_mode():
            for i in range(warmup + repeats):
                if cuda:
                    start = torch.cuda.Event(enable_timing=True)
                    end = torch.cuda.Event(enable_timing=True)
                    torch.cuda.synchronize(param.device)
                    start.record()
                    model(x)
                    end.record()
                    torch.cuda.synchronize(param.device)
                    elapsed = start.elapsed_time(end)
                else:
                    t0 = time.perf_counter()
                    model(x)
                    elapsed = (time.perf_counter() - t0) * 1e3
                if i >= warmup:
                    times.append(elapsed)
    finally:
        model.train(was_training)
    return statistics.median(times)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: max allocated since the last reset. CPU: the process's peak resident set (RSS)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux
