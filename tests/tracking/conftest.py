"""One tracked study, killed mid-run and finished, shared by the sink tests that read it back.

Two variants x one seed, two epochs each, tracked by every built-in sink. The first process is
killed (SIGKILL, ``ABLATE_FAULT=epoch-end``) after the first cell's first epoch was logged; the
second resumes that cell from its checkpoint and runs the rest; then ``ablate report`` rebuilds
the report once more, which must update the aggregates in place, not add to them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

EXP = """\
name: tracked
dataset: {name: shapes, options: {n_train: 16, n_val: 8}}
preset: quick
train: {epochs: 2, image_size: 32, batch_size: 8, device: cpu, samples: 1, encoder_init: null}
seeds: [0]
baseline: {widths: [16, 8, 8, 8], block: dsconv}
variants:
  - {pool: MAA}
profile_size: 32
tracking: [tensorboard, mlflow, wandb]
"""


@dataclass(frozen=True)
class Study:
    exp_dir: Path
    runs: pd.DataFrame         # runs.csv
    killed: str                # the variant id whose first attempt was killed
    history: dict[str, pd.DataFrame]  # each variant's history.csv (seed 0)


def _ablate(*args: str, cwd: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "WANDB_", "ABLATE_FAULT"))}
    if fault:
        env["ABLATE_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "ablate.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def tracked_study(tmp_path_factory) -> Study:
    work = tmp_path_factory.mktemp("tracked")
    (work / "tracked.yaml").write_text(EXP)
    killed = _ablate("run", "tracked.yaml", "--results", "res", cwd=work, fault="epoch-end")
    assert killed.returncode == -9, killed.stderr[-2000:]
    exp_dir = work / "res" / "tracked"
    started = [p.parent.parent.name for p in exp_dir.glob("runs/*/seed0/tracking.json")]
    assert len(started) == 1 and not list(exp_dir.glob("runs/*/seed0/row.json"))
    done = _ablate("run", "tracked.yaml", "--results", "res", cwd=work)
    assert done.returncode == 0, done.stderr[-2000:]
    again = _ablate("report", "tracked.yaml", "--results", "res", cwd=work)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "could not" not in done.stdout + done.stderr + again.stdout + again.stderr
    runs = pd.read_csv(exp_dir / "runs.csv")
    history = {v: pd.read_csv(exp_dir / "runs" / v / "seed0" / "history.csv")
               for v in runs["variant"]}
    return Study(exp_dir, runs, started[0], history)
