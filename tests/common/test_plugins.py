"""Tests of ablate.common.plugins: each plugin imported once, its version or source hash, and an
error naming the plugin and the cause for every way a plugin can fail (``plugin_sandbox``, in
tests/conftest.py, forgets the plugins after each test)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import sys

import pytest

from ablate.common.plugins import PluginError, column, load_plugins, loaded, plugin_names
from ablate.training.losses import LOSSES

COUNTING = "from pathlib import Path\nwith open(Path.cwd() / 'imports.log', 'a') as f:\n" \
           "    f.write(__name__ + '\\n')\n"


def test_each_plugin_is_imported_once_however_it_is_named(plugin_sandbox):
    (plugin_sandbox / "counted.py").write_text(COUNTING)
    first = load_plugins(["counted"])
    again = load_plugins(["counted", "./counted.py", str(plugin_sandbox / "counted.py")])
    assert (plugin_sandbox / "imports.log").read_text() == "counted\n"
    assert again == first * 3 and loaded() == first
    (plugin_sandbox / "other.py").write_text(COUNTING)
    load_plugins(["other.py"])  # a file first, then its module name
    load_plugins(["other"])
    assert (plugin_sandbox / "imports.log").read_text().splitlines() == ["counted", "other"]


def test_version_or_source_hash(plugin_sandbox):
    (plugin_sandbox / "versioned.py").write_text("__version__ = '1.2'\n")
    source = "x = 1\n"
    (plugin_sandbox / "hashed.py").write_text(source)
    package = plugin_sandbox / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from . import sub\n")
    (package / "sub.py").write_text("y = 2\n")
    infos = load_plugins(["versioned", "hashed.py", "pkg", "colorlog"])
    versioned, hashed, pkg, installed = infos
    assert versioned.label == "versioned==1.2" and versioned.sha256 is None
    digest = hashlib.sha256(source.encode()).hexdigest()  # what sha256sum prints
    assert hashed.version is None and hashed.sha256 == digest
    assert hashed.label == f"hashed.py@sha256:{digest[:12]}"
    by_hand = hashlib.sha256(b"__init__.py\0from . import sub\n\0sub.py\0y = 2\n\0").hexdigest()
    assert pkg.sha256 == by_hand and len(pkg.files) == 2
    # no __version__: the version of the installed distribution that ships the module
    assert installed.version == importlib.metadata.version("colorlog")
    assert column() == ";".join(i.label for i in infos)
    assert column() == (f"versioned==1.2;hashed.py@sha256:{digest[:12]};"
                        f"pkg@sha256:{by_hand[:12]};colorlog=={installed.version}")


@pytest.mark.parametrize("files, name, message", [
    ({}, "nowhere", "plugin 'nowhere': not found: no module named 'nowhere' on sys.path"),
    ({}, "lab.nowhere", "plugin 'lab.nowhere': not found: no module named 'lab'"),
    ({}, "missing.py", "plugin 'missing.py': not found: no such file"),
    ({"broken.py": "x = 1\ny = 1 / 0\n"}, "broken",
     r"plugin 'broken': error inside the module \(.*broken.py, line 2\): ZeroDivisionError"),
    ({"broken.py": "x = 1\ny = 1 / 0\n"}, "./broken.py",
     r"plugin './broken.py': error inside the module \(.*broken.py, line 2\)"),
    ({"needs.py": "import not_installed_anywhere\n"}, "needs",
     r"plugin 'needs': error inside the module \(.*needs.py, line 1\): a module it imports is "
     r"missing: ModuleNotFoundError: No module named 'not_installed_anywhere'"),
    ({"syntax.py": "def f(:\n"}, "syntax.py", r"error inside the module \(.*syntax.py, line 1\)"),
    ({"dup.py": "from ablate.training.losses import LOSSES, dice\n\n"
                "LOSSES.register('dice')(dice)\n"},
     "dup", r"plugin 'dup': loss 'dice' is already registered \(.*dup.py, line 3\); a plugin "
            r"adds new names: pick another"),
    ({"knob.py": "from ablate.common.registry import ChangesExistingModels\n"
                 "raise ChangesExistingModels('knob', 'norm2', 'its default gn is not today')\n"},
     "knob.py", r"plugin 'knob.py': knob 'norm2': its default gn is not today \(.*knob.py, "
                r"line 2\); existing models must build as before"),
])
def test_a_broken_plugin_is_named_with_its_cause(plugin_sandbox, files, name, message):
    for file, text in files.items():
        (plugin_sandbox / file).write_text(text)
    with pytest.raises(PluginError, match=message) as err:
        load_plugins([name])
    assert err.value.plugin == name and loaded() == []
    assert not any(m in sys.modules for m in ("broken", "needs", "dup"))


def test_a_plugin_registers_with_the_package_s_own_registrations(plugin_sandbox):
    (plugin_sandbox / "myloss.py").write_text(
        "from ablate.training.losses import LOSSES, dice\n\n"
        "@LOSSES.register('my_dice')\n"
        "def my_dice(num_classes, ignore_index):\n"
        "    '''soft Dice, registered by a plugin.'''\n"
        "    return dice(num_classes, ignore_index)\n")
    assert "my_dice" not in LOSSES
    load_plugins(["myloss"])
    assert LOSSES.help("my_dice") == "soft Dice, registered by a plugin"


@pytest.mark.parametrize("value", ["myplug", [""], [1], {"a": 1}])
def test_plugin_names_are_a_list_of_strings(value):
    with pytest.raises(ValueError, match="allowed: a list of module names or .py paths"):
        plugin_names(value)
    assert plugin_names(["a", " b ", "a"]) == ("a", "b")
