"""What a run ran on: library versions, device, git commit. Stored with every result."""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
from pathlib import Path

import torch

_DISTRIBUTIONS = {"torch": "torch", "torchvision": "torchvision", "thop": "ultralytics-thop",
                  "fvcore": "fvcore", "numpy": "numpy", "pandas": "pandas", "optuna": "optuna"}
#: Result-row columns :func:`environment` fills, in order.
COLUMNS = ("device", "python", *_DISTRIBUTIONS, "git_commit")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an unavailable explicit device is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} is not available here; allowed: auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={name!r} is not available here; allowed: auto or cpu")
    return device


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic (x86 avx512_bf16 or AMX; Linux's /proc/cpuinfo), so
    bf16 autocast can be faster than fp32 rather than emulated; False where it cannot be told."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split(":", 1)[-1].split()))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        cpu = platform.processor() or platform.machine()
        return f"cpu ({cpu}, {torch.get_num_threads()} threads)"
    return device.type


CODE_PATHS = ("ablate", "pyproject.toml")  # what computes a result, relative to the checkout


@functools.cache
def git_commit(root: Path | None = None) -> str:
    """HEAD of the ablate checkout at ``root`` (default: this package's), ``unknown`` outside one.

    ``-dirty`` is added when the code that computes results (``CODE_PATHS``, untracked files
    included) differs from HEAD. Edits elsewhere do not count: docs, or the committed results
    that a run rewrites, which would otherwise mark every run after the first. Experiment files
    are recorded with their results (``experiment.json``).
    """
    root = Path(__file__).resolve().parent.parent if root is None else Path(root)
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *CODE_PATHS], cwd=root,
                               text=True, capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for key, dist in _DISTRIBUTIONS.items():
        try:
            out[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[key] = "missing"
    return out


def environment(device: torch.device) -> dict[str, str]:
    """Flat record: versions, device, git commit (:data:`COLUMNS`)."""
    record = {**versions(), "device": device_name(device), "git_commit": git_commit()}
    return {c: record[c] for c in COLUMNS}
