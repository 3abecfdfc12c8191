"""Name -> object registries, the one mechanism behind knobs, datasets, losses and presets.

A registry maps a name to a function (a builder). Registering is a decorator; an unknown name
raises a ``ValueError`` that names the registry and lists what exists; a duplicate name raises
instead of silently replacing the first.

A refused registration raises a :class:`RegistrationError` (a ``ValueError``) that carries the
registry's ``kind`` and the entry's ``name``, so a caller importing user code
(``ablate.common.plugins``) can say which module tried to register what: ``DuplicateName``
here, ``ChangesExistingModels`` from a registry that checks an entry against what exists (a
knob whose default would change existing variants).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class RegistrationError(ValueError):
    """A registration a registry refuses; ``kind`` and ``name`` say which entry."""

    def __init__(self, kind: str, name: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.name = kind, name


class DuplicateName(RegistrationError):
    """The name is registered already (entries are never silently replaced)."""


class ChangesExistingModels(RegistrationError):
    """The entry would change what existing names build: e.g. a new knob whose default is not
    today's behaviour, so every existing variant id would build another model. Raise it from
    the registering function, e.g.
    ``raise ChangesExistingModels("knob", name, f"knob {name!r}: its default ...")``."""


def _natural_key(name: str) -> list:
    """Sort key that puts ``resnet18`` before ``resnet101``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


class Registry(Generic[T]):
    """A named table of builders.

    ``kind`` is what the entries are (``"encoder"``, ``"dataset"``...), used in error messages.
    Names are listed naturally sorted, or in registration order with ``ordered=True`` (for
    entries that become columns, whose order is part of a table's layout). ``unique`` names meta
    keys whose non-empty values no two entries may share (a knob value's id ``token``: two
    values with one token would make ids ambiguous).
    """

    def __init__(self, kind: str, ordered: bool = False, unique: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.ordered = ordered
        self.unique = tuple(unique)
        self._entries: dict[str, T] = {}
        self._help: dict[str, str] = {}
        self._meta: dict[str, dict] = {}

    def register(self, name: str, help: str | None = None, **meta) -> Callable[[T], T]:
        """Decorator: ``@REG.register("name")`` adds the decorated object under ``name``.

        ``help`` defaults to the first line of the object's docstring; ``meta`` is free-form
        data about the entry (an id token, channel counts...) read back with :meth:`meta`.
        """

        def deco(obj: T) -> T:
            if name in self._entries:
                raise DuplicateName(self.kind, name,
                                    f"{self.kind} {name!r} is already registered")
            for key in self.unique:
                taken = [n for n, m in self._meta.items()
                         if meta.get(key) and m.get(key) == meta[key]]
                if taken:
                    raise DuplicateName(self.kind, name,
                                        f"{self.kind} {name!r}: {key} {meta[key]!r} is already "
                                        f"used by {self.kind} {taken[0]!r}")
            self._entries[name] = obj
            doc = help if help is not None else (getattr(obj, "__doc__", None) or "")
            self._help[name] = doc.strip().splitlines()[0].rstrip(".") if doc.strip() else ""
            self._meta[name] = dict(meta)
            return obj

        return deco

    def unregister(self, name: str) -> T:
        """Remove an entry and return it (e.g. a throw-away entry a test registered)."""
        entry = self.get(name)
        del self._entries[name], self._help[name], self._meta[name]
        return entry

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}"
            ) from None

    def help(self, name: str) -> str:
        self.get(name)
        return self._help[name]

    def meta(self, name: str) -> dict:
        self.get(name)
        return self._meta[name]

    def names(self, pattern: str | None = None) -> list[str]:
        """Registered names (naturally sorted unless ``ordered``), optionally fnmatch-filtered."""
        names = list(self._entries) if pattern is None else fnmatch.filter(self._entries, pattern)
        return names if self.ordered else sorted(names, key=_natural_key)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        rows = "\n".join(f"  {n:<14} {self._help[n]}" for n in self.names())
        return f"Registry[{self.kind}] ({len(self)} entries)\n{rows}"
