"""The GPU check script (.ci/gpu-check) on a machine without CUDA: its arguments, its dry run,
and the CUDA steps skipped with a message. On a GPU machine `make gpu-check` runs it for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "gpu-check"


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_help_names_every_option():
    proc = _run("--help")
    assert proc.returncode == 0
    for option in ("--wheels DIR", "--epochs N", "--no-install", "--dry-run", "TIMEOUT"):
        assert option in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["--bogus"], "unknown argument '--bogus'; allowed: --wheels DIR"),
    (["--epochs", "0"], "--epochs '0' is not allowed; allowed: a positive integer"),
    (["--wheels", "no/such/folder"], "--wheels 'no/such/folder' is not a folder"),
])
def test_bad_arguments_exit_2_with_what_is_allowed(args, message):
    proc = _run(*args)
    assert proc.returncode == 2 and message in proc.stderr


def test_dry_run_prints_each_step_and_installs_from_the_wheels_given(tmp_path):
    proc = _run("--dry-run", "--wheels", str(tmp_path), "--epochs", "3", OUT=str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    steps = [line.split()[1] for line in proc.stdout.splitlines()]
    assert steps == ["venv", "install", "tests", "bench", "seed002"]
    assert "-m venv --system-site-packages" in proc.stdout  # the machine's CUDA torch
    assert f"--no-index --find-links {tmp_path}" in proc.stdout
    assert "pytest -q -p no:cacheprovider -m cuda" in proc.stdout
    assert "bench --device cuda" in proc.stdout
    assert not (tmp_path / "o").exists()  # a dry run writes nothing


@pytest.mark.slow  # imports torch in a subprocess
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without CUDA")
def test_without_cuda_the_cuda_steps_are_skipped_with_a_message(tmp_path):
    proc = _run("--no-install", VENV=sys.prefix, OUT=str(tmp_path))
    assert proc.returncode == 1
    assert "no CUDA device" in proc.stderr and "without CUDA)" in proc.stderr
    assert "skipped the CUDA tests, the bench" in proc.stderr
    assert not list(tmp_path.iterdir())  # nothing written
