"""User modules that extend the registries: ``load_plugins(names)``.

A plugin is a module that registers things with the package's own one-line registrations
(``@LOSSES.register("my_loss")``, ``@register_metric(...)``, a dataset, an encoder, a decoder
block...); importing it is all it takes. Each name is either

- a dotted module name importable from ``sys.path`` (the working directory is searched too,
  after the installed packages), e.g. ``myplug`` or ``lab.blocks``; or
- a path to a ``.py`` file (it ends in ``.py`` or holds a ``/``), relative to the working
  directory; it is imported alone, under its file stem as module name.

Each module is imported once per process: naming it again, or naming its file and its module
name, returns what the first import recorded. For each plugin ``PluginInfo`` records its
version (``__version__``, or the version of the installed distribution whose files hold it) or
else the sha256 of its source: of the file for a module (what ``sha256sum`` prints), of every
``.py`` file of a package in path order (each file's relative path, a NUL, its bytes, a NUL).
``column()`` is the row's ``plugins`` field, e.g. ``myplug==1.2;blocks.py@sha256:3f2a9c81d0e4``.

A plugin that cannot be imported raises ``PluginError`` (a ``ValueError``: exit 2 on the command
line) naming the plugin and the cause: not found, an error inside the module (a missing
dependency included), a name a registry already holds, or an entry that would change existing
models (``ablate.common.registry.ChangesExistingModels``). The registrations a failed plugin made
before failing stay in this process; start a new one.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from .registry import ChangesExistingModels, RegistrationError

#: Hex digits of a source hash written into rows (48 bits: enough to tell two edits apart).
SHORT_HASH = 12
ALLOWED = "a list of module names or .py paths, e.g. [myplug, plugins/blocks.py]"


class PluginError(ValueError):
    """A plugin that cannot be imported; ``plugin`` is the name given, the message says why."""

    def __init__(self, plugin: str, message: str) -> None:
        super().__init__(f"plugin {plugin!r}: {message}")
        self.plugin = plugin


@dataclass(frozen=True)
class PluginInfo:
    """One imported plugin: the name given, its module, and its version or source hash."""

    name: str
    module: str
    version: str | None = None
    sha256: str | None = None  # of the source file(s), when there is no version
    files: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """``name==version``, else ``name@sha256:<12 hex>``, else the name alone (no source)."""
        if self.version:
            return f"{self.name}=={self.version}"
        if self.sha256:
            return f"{self.name}@sha256:{self.sha256[:SHORT_HASH]}"
        return self.name


_BY_NAME: dict[str, PluginInfo] = {}    # every name given -> what its import recorded
_BY_SOURCE: dict[str, PluginInfo] = {}  # resolved source file (or module name) -> the same


def load_plugins(names: Iterable[str]) -> list[PluginInfo]:
    """Import each plugin once per process (see the module docstring); return their records."""
    return [_load(name) for name in plugin_names(names)]


def loaded() -> list[PluginInfo]:
    """Every plugin this process imported, in import order."""
    return list(dict.fromkeys(_BY_SOURCE.values()))


def column(infos: Iterable[PluginInfo] | None = None) -> str:
    """The row's ``plugins`` field: labels joined by ``;`` (default: every loaded plugin)."""
    return ";".join(i.label for i in (loaded() if infos is None else infos))


def plugin_names(value: Any) -> tuple[str, ...]:
    """A ``plugins`` value checked: a list of non-empty strings (repeats dropped)."""
    if not isinstance(value, (list, tuple)) or \
            not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{value!r} is not allowed; allowed: {ALLOWED}")
    return tuple(dict.fromkeys(v.strip() for v in value))


def _is_path(name: str) -> bool:
    return name.endswith(".py") or "/" in name or os.sep in name


def _load(name: str) -> PluginInfo:
    if name in _BY_NAME:
        return _BY_NAME[name]
    module = _import_file(name) if _is_path(name) else _import_module(name)
    source = _source(module)
    info = _BY_SOURCE.get(source)
    if info is None:
        files = _files(module)
        version = _version(module, files)
        info = PluginInfo(name, module.__name__, version,
                          None if version or not files else _sha256(files),
                          tuple(str(f) for f in files))
        _BY_SOURCE[source] = info
    _BY_NAME[name] = info
    return info


def _import_module(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # as ``python -m`` would find it, after installed packages
    importlib.invalidate_caches()
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(f"{exc.name}.")):
            raise PluginError(name, f"not found: no module named {exc.name!r} on sys.path (the "
                                    f"working directory {os.getcwd()} included); give a module "
                                    "name or a path to a .py file") from None
        raise _inside(name, exc, _spec_root(name)) from exc
    except Exception as exc:
        raise _inside(name, exc, _spec_root(name)) from exc


def _spec_root(name: str) -> Path | None:
    """The file of module ``name``, or the folder of a package (None when it cannot be told)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        return None
    origin = Path(spec.origin).resolve()
    return origin.parent if spec.submodule_search_locations else origin


def _import_file(name: str) -> ModuleType:
    path = Path(name).expanduser().resolve()
    if not path.is_file():
        raise PluginError(name, f"not found: no such file {path}")
    for module in list(sys.modules.values()):  # imported already, by its module name
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and Path(file).name == path.name and _origin(module) == path:
            return module
    stem = path.stem if path.stem.isidentifier() else "plugin"
    modname = stem if stem not in sys.modules else \
        f"_ablate_plugin_{stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise PluginError(name, f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        del sys.modules[modname]
        if not isinstance(exc, Exception):
            raise
        raise _inside(name, exc, path) from exc
    return module


def _inside(name: str, exc: Exception, root: Path | None) -> PluginError:
    """The error of a plugin whose code raised ``exc`` while it was imported."""
    where = _where(exc, root)
    if isinstance(exc, RegistrationError):
        said = str(exc) if repr(exc.name) in str(exc) else f"{exc.kind} {exc.name!r}: {exc}"
        rule = ("existing models must build as before" if isinstance(exc, ChangesExistingModels)
                else "a plugin adds new names: pick another")
        return PluginError(name, f"{said}{where}; {rule}")
    what = "a module it imports is missing: " if isinstance(exc, ModuleNotFoundError) else ""
    return PluginError(name, f"error inside the module{where}: {what}{type(exc).__name__}: "
                             f"{exc}")


def _where(exc: Exception, root: Path | None) -> str:
    """`` (file, line N)``: the innermost line of the plugin (``root``: its file, or its
    package's folder) in the traceback, else the last line."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" ({exc.filename}, line {exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    frames = [f for f in frames if "importlib" not in f.filename] or frames
    mine = [f for f in frames if root is not None
            and (Path(f.filename) == root or root in Path(f.filename).parents)]
    frame = (mine or frames or [None])[-1]
    return f" ({frame.filename}, line {frame.lineno})" if frame else ""


def _origin(module: ModuleType) -> Path | None:
    file = getattr(module, "__file__", None)
    return Path(file).resolve() if file else None


def _source(module: ModuleType) -> str:
    """What identifies a module's code: its resolved file, else its name."""
    origin = _origin(module)
    return str(origin) if origin else module.__name__


def _files(module: ModuleType) -> list[Path]:
    """The source files of a module: its file, or every ``.py`` file of a package."""
    roots = [Path(p) for p in getattr(module, "__path__", ()) or ()]
    if roots:
        return sorted({f.resolve() for root in roots for f in root.rglob("*.py")})
    origin = _origin(module)
    return [origin] if origin and origin.suffix == ".py" and origin.is_file() else []


def _sha256(files: list[Path]) -> str:
    if len(files) == 1:
        return hashlib.sha256(files[0].read_bytes()).hexdigest()
    root = Path(os.path.commonpath(files))
    digest = hashlib.sha256()
    for f in files:
        digest.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()


@functools.cache
def _distributions() -> dict[str, list[str]]:
    """Top-level module name -> the installed distributions that provide it (read once)."""
    return importlib.metadata.packages_distributions()


def _version(module: ModuleType, files: list[Path]) -> str | None:
    """``__version__``, else the version of the installed distribution that ships its file."""
    version = getattr(module, "__version__", None)
    if isinstance(version, str) and version:
        return version
    top = module.__name__.split(".")[0]
    mine = set(files) or ({_origin(module)} - {None})
    for dist_name in _distributions().get(top, ()):
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            continue
        shipped = {Path(dist.locate_file(f)).resolve() for f in dist.files or ()}
        if mine and mine <= shipped:
            return dist.version
    return None
