"""What a dataset is: the ``DATASETS`` registry, its records and the validated ``DataSpec``.

Each dataset is one function registered in ``DATASETS`` (one module per dataset in this package)
with its on-disk ``layout`` (shown in every error about its files) and its ``options`` (name ->
:class:`Option`: default, parser, allowed values). The function checks the source and returns a
:class:`Source`: a fingerprint of what it reads and a ``decode`` closure that runs only on a
cache miss. Nothing is ever downloaded.

Mask conventions: uint8 class indices, 0 = background, ``DatasetInfo.ignore_index`` (255 where a
dataset has ignore pixels) marks pixels that carry no label. ``num_classes`` counts background.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ..common.checks import not_allowed, refuse_unknown, to_int
from ..common.registry import Registry

DATASETS: Registry = Registry("dataset")

SPLITS = ("train", "val")
IGNORE = 255
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a loss need to know about a dataset.

    ``num_classes`` includes background (a binary task has 2); ``model_outputs`` is the number of
    logits a model should produce (1 sigmoid logit when binary). ``ignore_index`` is 255 where
    masks contain unlabelled pixels, ``None`` when no pixel is ignored.
    """

    name: str
    num_classes: int
    in_channels: int
    ignore_index: int | None
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "palette", tuple(tuple(int(v) for v in c) for c in self.palette))
        if not 2 <= self.num_classes <= 255:
            raise not_allowed("num_classes", self.num_classes,
                              "2..255 (background included; 255 is reserved for ignore)")
        if len(self.class_names) != self.num_classes or len(self.palette) != self.num_classes:
            raise ValueError(f"dataset {self.name!r}: {len(self.class_names)} class names and "
                             f"{len(self.palette)} palette colours for {self.num_classes} classes")
        if self.ignore_index not in (None, IGNORE):
            raise not_allowed("ignore_index", self.ignore_index, f"None or {IGNORE}")

    @property
    def binary(self) -> bool:
        return self.num_classes == 2

    @property
    def model_outputs(self) -> int:
        return 1 if self.binary else self.num_classes


@dataclass(frozen=True, eq=False)
class Split:
    """One decoded, resized split held in memory: images (N, H, W, C) and masks (N, H, W), uint8.

    Compared by identity (``eq=False``): arrays have no single truth value.
    """

    images: np.ndarray
    masks: np.ndarray

    def __post_init__(self) -> None:
        im, mk = self.images, self.masks
        if not isinstance(im, np.ndarray) or im.dtype != np.uint8 or im.ndim != 4:
            raise ValueError(f"Split.images must be a uint8 array (N, H, W, C), got "
                             f"{getattr(im, 'dtype', type(im).__name__)} "
                             f"{getattr(im, 'shape', '')}")
        if not isinstance(mk, np.ndarray) or mk.dtype != np.uint8 or mk.shape != im.shape[:3]:
            raise ValueError(f"Split.masks must be a uint8 array {im.shape[:3]} (N, H, W) to match "
                             f"the images, got {getattr(mk, 'dtype', type(mk).__name__)} "
                             f"{getattr(mk, 'shape', '')}")

    def __len__(self) -> int:
        return len(self.images)


class FrozenOptions(Mapping[str, Any]):
    """A read-only, hashable mapping (so that a ``DataSpec`` stays frozen and hashable)."""

    __slots__ = ("_items",)

    def __init__(self, mapping: Mapping[str, Any]) -> None:
        self._items = tuple(sorted(mapping.items()))

    def __getitem__(self, key: str) -> Any:
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        return repr(dict(self._items))


@dataclass(frozen=True)
class Option:
    """One dataset option: its default, a parser (raises on a bad value) and the allowed values."""

    default: Any
    parse: Callable[[Any], Any]
    allowed: str


@dataclass(frozen=True)
class DataSpec:
    """Which dataset to load and at what size; the data part of an experiment config.

    ``options`` are dataset-specific (see ``DATASETS.meta(name)["options"]``); they are validated
    and stored resolved (defaults filled in), so equal specs compare and hash equal.
    """

    name: str = "shapes"          # a DATASETS name
    root: str | None = None       # dataset folder (voc, pets, folder); must be unset for shapes
    image_size: int = 64          # square side after resize, pixels
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ValueError(f"dataset name {self.name!r} is not allowed; "
                             f"allowed: {', '.join(DATASETS.names())}")
        meta = DATASETS.meta(self.name)
        try:
            size = to_int(self.image_size)
        except (TypeError, ValueError):
            size = None
        if size is None or not 8 <= size <= 4096:
            raise not_allowed("image_size", self.image_size,
                              "an integer number of pixels in 8..4096")
        object.__setattr__(self, "image_size", size)
        if meta["needs_root"]:
            if self.root is None or str(self.root) == "":
                raise ValueError(f"dataset {self.name!r} needs root (its folder), laid out as:\n"
                                 f"{meta['layout']}")
            object.__setattr__(self, "root", os.fspath(self.root))
        elif self.root is not None:
            raise ValueError(f"root={self.root!r} is not allowed for dataset {self.name!r}, "
                             "which reads no files; allowed: None")
        if not isinstance(self.options, Mapping):
            raise not_allowed("options", self.options, "a mapping")
        spec: dict[str, Option] = meta["options"]
        refuse_unknown(self.options, spec, "option", suffix=f" for dataset {self.name!r}")
        resolved = {}
        for key, opt in spec.items():
            value = self.options.get(key, opt.default)
            try:
                resolved[key] = opt.parse(value)
            except (TypeError, ValueError):
                raise not_allowed(f"{self.name} option {key}", value, opt.allowed) from None
        object.__setattr__(self, "options", FrozenOptions(resolved))

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-safe mapping; ``DataSpec.from_dict`` reads it back."""
        return {"name": self.name, "root": self.root, "image_size": self.image_size,
                "options": dict(self.options)}

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> DataSpec:
        """Build from a mapping; unknown keys are refused, missing ones default."""
        refuse_unknown(mapping, [f.name for f in fields(cls)], "data key")
        return cls(**mapping)


@dataclass(frozen=True)
class Source:
    """A checked dataset source: a fingerprint of what ``decode`` reads, and ``decode`` itself."""

    fingerprint: str
    decode: Callable[[], tuple[DatasetInfo, dict[str, Split]]]


# Option parsers: each raises ValueError on a bad value; the Option says what is allowed.


def int_at_least(low: int) -> Callable[[Any], int]:
    def parse(x: Any) -> int:
        value = to_int(x)
        if value < low:
            raise ValueError(x)
        return value

    return parse


def choice(*values: str) -> Callable[[Any], str]:
    def parse(x: Any) -> str:
        if x not in values:
            raise ValueError(x)
        return x

    return parse


def fraction(x: Any) -> float:
    if isinstance(x, bool):
        raise ValueError(x)
    value = float(x)
    if not 0.0 < value < 1.0:
        raise ValueError(x)
    return value


def num_classes_or_none(x: Any) -> int | None:
    if x is None or (isinstance(x, str) and x.strip().lower() in ("", "none", "auto")):
        return None
    value = to_int(x)
    if not 2 <= value <= 255:
        raise ValueError(x)
    return value


SEED = Option(0, int_at_least(0), "a non-negative integer")
