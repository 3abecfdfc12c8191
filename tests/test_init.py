"""Tests for the package's public API (ablate/__init__.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import ablate


@pytest.mark.parametrize("name", ablate.__all__)
def test_every_public_name_resolves(name):
    assert getattr(ablate, name) is not None
    assert name in dir(ablate)


def test_train_is_the_function_not_the_module():
    assert callable(ablate.train) and ablate.train.__name__ == "train"


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ablate.nope  # noqa: B018


@pytest.mark.slow
def test_import_leaves_tables_and_plots_libraries_unloaded():
    """Training processes and the command line start without scipy, statsmodels, matplotlib."""
    heavy = ("matplotlib", "scipy", "statsmodels", "ablate.analysis.stats",
             "ablate.analysis.report")
    code = ("import sys, ablate\n"
            f"print([m for m in {heavy!r} if m in sys.modules])\n"
            "ablate.summarize\n"
            "print('ablate.analysis.stats' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"]
