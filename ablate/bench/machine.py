"""What a benchmark ran on: the device's file-safe name, the cores this process may use, and
the header of the report (machine, device, versions, date, sizes)."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import re
from pathlib import Path

import torch

from ..common.env import git_commit
from ..config import TrainConfig
from .settings import BenchSettings


def device_slug(device: torch.device) -> str:
    """File-safe device name: ``cpu``, or ``cuda-<GPU name>`` (``cuda-NVIDIA-H100-80GB-HBM3``)."""
    if device.type != "cuda":
        return device.type
    return "cuda-" + re.sub(r"[^A-Za-z0-9.]+", "-", torch.cuda.get_device_name(device)).strip("-")


def cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def meta(device: torch.device, settings: BenchSettings, config: TrainConfig) -> dict[str, str]:
    """The header of the md file: what ran where, when, and at what sizes."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        where = (f"{props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}, "
                 f"cuDNN {torch.backends.cudnn.version()}")
    else:
        where = f"CPU, {torch.get_num_threads()} torch threads"
    versions = ", ".join(f"{name} {_version(dist)}" for name, dist in (
        ("torch", "torch"), ("torchvision", "torchvision"),
        ("segmentation_models_pytorch", "segmentation-models-pytorch"), ("numpy", "numpy"),
        ("pillow", "pillow")))
    return {
        "title": device_slug(device),
        "machine": f"{_cpu_model()}, {cores()} cores, {platform.system()} {platform.machine()}",
        "device": where,
        "versions": f"python {platform.python_version()}, {versions}; ablate {_version('ablate')} "
                    f"(git {git_commit()})",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "settings": f"image {settings.image_size} px, batch {settings.batch}, steps per timed "
                    f"epoch {settings.steps}, timed rounds {settings.repeats} (after one "
                    f"warm-up), overhead rounds {settings.overhead_rounds}, switch rounds "
                    f"{settings.switch_rounds}; preset quick (AdamW, cosine schedule, "
                    f"{config.loss} loss, augmentation {'on' if config.augment else 'off'}; "
                    f"amp {config.amp}, channels_last {config.channels_last}, compile "
                    f"{config.compile}"
                    + (" as the full preset sets them)" if device.type == "cuda" else ")"),
    }
