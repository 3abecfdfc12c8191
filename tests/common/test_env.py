"""Tests for ablate.common.env: device resolution and the git commit stored with every result."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess

import pytest
import torch

from ablate.common.env import environment, git_commit, resolve_device

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


@pytest.fixture
def checkout(tmp_path):
    """A tiny checkout in the repo's layout, with one commit."""
    (tmp_path / "ablate").mkdir()
    (tmp_path / "ablate" / "model.py").write_text("x = 1\n")
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "runs.csv").write_text("dice\n0.5\n")
    (tmp_path / "README.md").write_text("docs\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    git_commit.cache_clear()
    yield tmp_path
    git_commit.cache_clear()


def _head(root) -> str:
    return subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, text=True,
                          capture_output=True, check=True).stdout.strip()


def test_clean_checkout_gives_the_head(checkout):
    assert git_commit(checkout) == _head(checkout)


def test_docs_and_rewritten_results_do_not_make_it_dirty(checkout):
    (checkout / "README.md").write_text("new docs\n")
    (checkout / "results" / "runs.csv").write_text("dice\n0.6\n")
    (checkout / "notes.txt").write_text("untracked, outside the code\n")
    assert git_commit(checkout) == _head(checkout)


@pytest.mark.parametrize("edit", ["ablate/model.py", "ablate/new_module.py", "pyproject.toml"])
def test_code_changes_make_it_dirty(checkout, edit):
    (checkout / edit).write_text("changed = True\n")
    assert git_commit(checkout) == _head(checkout) + "-dirty"


def test_outside_a_checkout_it_is_unknown(tmp_path):
    assert git_commit(tmp_path) == "unknown"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_resolves_and_is_named_in_the_environment():
    device = resolve_device("cuda")
    assert device.type == "cuda"
    assert environment(device)["device"] == torch.cuda.get_device_name(device)


@pytest.mark.cuda
def test_unavailable_device_is_refused_with_what_is_allowed():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="device='cuda' is not available here; allowed"):
        resolve_device("cuda")


def test_environment_names_the_device_and_versions():
    env = environment(torch.device("cpu"))
    assert env["device"].startswith("cpu (") and env["git_commit"] == git_commit()
    assert env["torch"] == importlib.metadata.version("torch")
