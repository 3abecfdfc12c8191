"""Datasets: decode once, cache the resized splits, and batch them on the training device.

``load_dataset(DataSpec(...))`` returns a ``DatasetInfo`` and ``{"train": Split, "val": Split}``;
a ``Split`` is the whole split decoded and resized to ``image_size`` x ``image_size``, kept in
memory as uint8. Resized splits are cached as ``.npz`` under ``cache_dir``, keyed by dataset name,
image size, split, the resolved options and a fingerprint of the source (for file datasets the
relative path, size and mtime of every file read, list files included; for ``shapes`` the
generation parameters and generator version), so a variant never re-decodes what another decoded.

Each dataset is one function registered in ``DATASETS`` with its on-disk ``layout`` (shown in
every error about its files) and its ``options`` (name -> default, parser, allowed values). The
function checks the source, returns its fingerprint and a ``decode`` closure that runs only on a
cache miss. Nothing is ever downloaded.

Mask conventions: uint8 class indices, 0 = background, ``DatasetInfo.ignore_index`` (255 where a
dataset has ignore pixels) marks pixels that carry no label. ``num_classes`` counts background.

``BatchLoader`` moves a split to a device once and yields ``(images, masks)``: float32 NCHW
normalized with ImageNet mean/std, int64 NHW. Augmentation (``Augment``) runs there, on batched
tensors, jointly on image and mask.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .files import atomic_path
from .registry import Registry

log = logging.getLogger(__name__)

DATASETS: Registry = Registry("dataset")

SPLITS = ("train", "val")
IGNORE = 255
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Bump when a decoder or the cache format changes, so that old caches are not read back.
_CACHE_VERSION = 1
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_WORKERS = min(8, os.cpu_count() or 1)


# ---------------------------------------------------------------------------------------------
# Public records


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
            raise ValueError(f"num_classes={self.num_classes!r} is not allowed; allowed: 2..255 "
                             "(background included; 255 is reserved for ignore)")
        if len(self.class_names) != self.num_classes or len(self.palette) != self.num_classes:
            raise ValueError(f"dataset {self.name!r}: {len(self.class_names)} class names and "
                             f"{len(self.palette)} palette colours for {self.num_classes} classes")
        if self.ignore_index not in (None, IGNORE):
            raise ValueError(f"ignore_index={self.ignore_index!r} is not allowed; "
                             f"allowed: None or {IGNORE}")

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
                             f"{getattr(im, 'dtype', type(im).__name__)} {getattr(im, 'shape', '')}")
        if not isinstance(mk, np.ndarray) or mk.dtype != np.uint8 or mk.shape != im.shape[:3]:
            raise ValueError(f"Split.masks must be a uint8 array {im.shape[:3]} (N, H, W) to match "
                             f"the images, got {getattr(mk, 'dtype', type(mk).__name__)} "
                             f"{getattr(mk, 'shape', '')}")

    def __len__(self) -> int:
        return len(self.images)


class _FrozenOptions(Mapping[str, Any]):
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
class _Option:
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
            size = _to_int(self.image_size)
        except (TypeError, ValueError):
            size = None
        if size is None or not 8 <= size <= 4096:
            raise ValueError(f"image_size={self.image_size!r} is not allowed; "
                             "allowed: an integer number of pixels in 8..4096")
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
            raise ValueError(f"options={self.options!r} is not allowed; allowed: a mapping")
        spec: dict[str, _Option] = meta["options"]
        unknown = sorted(set(self.options) - set(spec), key=str)
        if unknown:
            raise ValueError(f"unknown option {', '.join(map(repr, unknown))} for dataset "
                             f"{self.name!r}; allowed: {', '.join(spec) or 'none'}")
        resolved = {}
        for key, opt in spec.items():
            value = self.options.get(key, opt.default)
            try:
                resolved[key] = opt.parse(value)
            except (TypeError, ValueError):
                raise ValueError(f"{self.name} option {key}={value!r} is not allowed; "
                                 f"allowed: {opt.allowed}") from None
        object.__setattr__(self, "options", _FrozenOptions(resolved))

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-safe mapping; ``DataSpec.from_dict`` reads it back."""
        return {"name": self.name, "root": self.root, "image_size": self.image_size,
                "options": dict(self.options)}

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> "DataSpec":
        """Build from a mapping; unknown keys are refused, missing ones default."""
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(mapping) - set(allowed), key=str)
        if unknown:
            raise ValueError(f"unknown data key {', '.join(map(repr, unknown))}; "
                             f"allowed: {', '.join(allowed)}")
        return cls(**mapping)


# ---------------------------------------------------------------------------------------------
# Option parsers


def _to_int(x: Any) -> int:
    if isinstance(x, bool) or (isinstance(x, float) and not x.is_integer()):
        raise ValueError(x)
    return int(x.strip()) if isinstance(x, str) else int(x)


def _int_at_least(low: int) -> Callable[[Any], int]:
    def parse(x: Any) -> int:
        value = _to_int(x)
        if value < low:
            raise ValueError(x)
        return value

    return parse


def _choice(*values: str) -> Callable[[Any], str]:
    def parse(x: Any) -> str:
        if x not in values:
            raise ValueError(x)
        return x

    return parse


def _fraction(x: Any) -> float:
    if isinstance(x, bool):
        raise ValueError(x)
    value = float(x)
    if not 0.0 < value < 1.0:
        raise ValueError(x)
    return value


def _num_classes_or_none(x: Any) -> int | None:
    if x is None or (isinstance(x, str) and x.strip().lower() in ("", "none", "auto")):
        return None
    value = _to_int(x)
    if not 2 <= value <= 255:
        raise ValueError(x)
    return value


_SEED = _Option(0, _int_at_least(0), "a non-negative integer")


# ---------------------------------------------------------------------------------------------
# Loading and the cache


@dataclass(frozen=True)
class _Source:
    """A checked dataset source: a fingerprint of what ``decode`` reads, and ``decode`` itself."""

    fingerprint: str
    decode: Callable[[], tuple[DatasetInfo, dict[str, Split]]]


def load_dataset(spec: DataSpec, cache_dir: str | Path | None = ".cache/ablate"
                 ) -> tuple[DatasetInfo, dict[str, Split]]:
    """The dataset ``spec`` names: its info and ``{"train": Split, "val": Split}``.

    The source is checked first (missing or malformed files raise ``FileNotFoundError`` or
    ``ValueError`` naming the file and showing the expected layout). Then the cached splits are
    loaded if their key matches, else the source is decoded, resized and written to the cache
    (atomically, through ``ablate.files.atomic_path``). ``cache_dir=None`` decodes now and
    writes nothing.
    """
    if not isinstance(spec, DataSpec):
        raise TypeError(f"load_dataset needs an ablate DataSpec, got {type(spec).__name__}")
    meta = DATASETS.meta(spec.name)
    root = None
    if meta["needs_root"]:
        root = Path(spec.root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"{spec.name}: root folder {root} does not exist\n"
                                    f"expected layout:\n{meta['layout']}")
    source: _Source = DATASETS.get(spec.name)(root, spec.image_size, spec.options)
    if cache_dir is None:
        return source.decode()
    paths = _cache_paths(Path(cache_dir), spec, source.fingerprint)
    cached = _load_cache(paths)
    if cached is not None:
        log.debug("loaded %s from cache %s", spec.name, paths["train"].parent)
        return cached
    info, splits = source.decode()
    _save_cache(paths, info, splits)
    log.info("decoded %s (%s) and cached it in %s", spec.name,
             ", ".join(f"{k} {len(v)}" for k, v in splits.items()), paths["train"].parent)
    return info, splits


def _cache_paths(cache_dir: Path, spec: DataSpec, fingerprint: str) -> dict[str, Path]:
    key = json.dumps({"version": _CACHE_VERSION, "name": spec.name, "image_size": spec.image_size,
                      "options": dict(spec.options), "source": fingerprint}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return {s: cache_dir / f"{spec.name}-{spec.image_size}px-{s}-{digest}.npz" for s in SPLITS}


def _load_cache(paths: dict[str, Path]) -> tuple[DatasetInfo, dict[str, Split]] | None:
    if not all(p.is_file() for p in paths.values()):
        return None
    try:
        splits, info = {}, None
        for name, path in paths.items():
            with np.load(path, allow_pickle=False) as z:
                splits[name] = Split(z["images"], z["masks"])
                info = info or DatasetInfo(**json.loads(str(z["info"])))
        return info, splits
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
        warnings.warn(f"unreadable dataset cache {paths['train'].parent} ({e}); decoding again")
        return None


def _save_cache(paths: dict[str, Path], info: DatasetInfo, splits: dict[str, Split]) -> None:
    info_json = json.dumps(asdict(info))
    for name, path in paths.items():
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, images=splits[name].images, masks=splits[name].masks,
                     info=np.array(info_json))


# ---------------------------------------------------------------------------------------------
# File decoding shared by the file datasets


def _error(kind: type[Exception], layout: str, message: str) -> Exception:
    return kind(f"{message}\nexpected layout:\n{layout}")


def _voc_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """The PASCAL VOC colour map: the bits of the class index spread over R, G, B, high bit first."""
    palette = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette.append((r, g, b))
    return tuple(palette)


def _read_list(path: Path, layout: str, comments: bool = False) -> list[str]:
    """Ids of a list file: the first token of each non-blank line (``#`` lines skipped if asked)."""
    if not path.is_file():
        raise _error(FileNotFoundError, layout, f"list file {path} does not exist")
    ids: list[str] = []
    seen: set[str] = set()
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or (comments and line.startswith("#")):
            continue
        item = line.split()[0]
        if item in seen:
            raise _error(ValueError, layout, f"list file {path} lists {item!r} twice")
        seen.add(item)
        ids.append(item)
    if not ids:
        raise _error(ValueError, layout, f"list file {path} lists no images")
    return ids


def _listed_pairs(list_file: Path, ids: Sequence[str], image_of: Callable[[str], Path],
                  mask_of: Callable[[str], Path], layout: str) -> list[tuple[Path, Path]]:
    pairs = []
    for item in ids:
        pair = image_of(item), mask_of(item)
        for path in pair:
            if not path.is_file():
                raise _error(FileNotFoundError, layout,
                             f"{list_file} lists {item!r} but {path} does not exist")
        pairs.append(pair)
    return pairs


def _fingerprint(root: Path, files: Sequence[Path]) -> str:
    """Hash of the relative path, size and mtime of each file, in the order given."""
    h = hashlib.sha256()
    for path in files:
        st = path.stat()
        h.update(f"{path.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _read_image(path: Path, size: int) -> tuple[tuple[int, int], np.ndarray]:
    """Decode to RGB and resize bilinearly to (size, size, 3) uint8; also the original (w, h)."""
    try:
        with Image.open(path) as im:
            original = im.size
            im.draft("RGB", (size, size))  # JPEG: decode at a reduced DCT scale, still >= size
            rgb = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    except OSError as e:
        raise ValueError(f"cannot decode image {path}: {e}") from None
    return original, np.asarray(rgb, dtype=np.uint8)


def _read_mask(path: Path) -> np.ndarray:
    """Class indices (H, W) uint8 at full size; palette PNGs give indices, never colours."""
    try:
        with Image.open(path) as im:
            mode = im.mode
            arr = np.asarray(im)
    except OSError as e:
        raise ValueError(f"cannot decode mask {path}: {e}") from None
    if mode in ("RGB", "RGBA", "LA"):
        channels = arr[..., :1] if mode == "LA" else arr[..., :3]
        if not (channels == channels[..., :1]).all():
            raise ValueError(f"mask {path} is a colour ({mode}) image; expected single-channel "
                             "class indices (a P or L mode PNG)")
        arr = channels[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"mask {path} has shape {arr.shape}; expected one channel")
    if arr.dtype != np.uint8:
        if arr.min() < 0 or arr.max() > 255:
            raise ValueError(f"mask {path} has values {arr.min()}..{arr.max()}; "
                             "expected class indices 0..255")
        arr = arr.astype(np.uint8)
    return arr


def _decode_pairs(pairs: Sequence[tuple[Path, Path]], size: int, lut: np.ndarray,
                  allowed: str, layout: str) -> tuple[Split, np.ndarray]:
    """Decode (image, mask) files into a Split; masks are mapped through ``lut``.

    ``lut[v] < 0`` marks a mask value that is not allowed. Also returns, per file, which raw mask
    values occur (N, 256) bool, checked at full resolution before the nearest-neighbour resize.
    """

    def one(pair: tuple[Path, Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        image_path, mask_path = pair
        original, image = _read_image(image_path, size)
        raw = _read_mask(mask_path)
        if raw.shape[::-1] != original:
            raise _error(ValueError, layout,
                         f"mask {mask_path} is {raw.shape[1]}x{raw.shape[0]} but its image "
                         f"{image_path} is {original[0]}x{original[1]}")
        present = np.bincount(raw.ravel(), minlength=256) > 0
        bad = np.flatnonzero(present & (lut < 0))
        if bad.size:
            raise _error(ValueError, layout,
                         f"mask {mask_path} has value {bad[0]}; allowed: {allowed}")
        small = np.asarray(Image.fromarray(raw).resize((size, size), Image.Resampling.NEAREST))
        return image, lut[small].astype(np.uint8), present

    images, masks, present = zip(*_parallel(one, pairs))  # lists are never empty
    return Split(np.stack(images), np.stack(masks)), np.stack(present)


def _parallel(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """``[fn(x) for x in items]`` on threads (PIL decodes without the GIL); the first error in
    item order is raised and the rest is cancelled."""
    with ThreadPoolExecutor(_WORKERS) as pool:
        futures = [pool.submit(fn, item) for item in items]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _lut(mapping: Mapping[int, int]) -> np.ndarray:
    lut = np.full(256, -1, dtype=np.int16)
    for src, dst in mapping.items():
        lut[src] = dst
    return lut


# ---------------------------------------------------------------------------------------------
# Datasets


_VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
                "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
                "pottedplant", "sheep", "sofa", "train", "tvmonitor")

_VOC_LAYOUT = """\
<root>/
├── JPEGImages/<id>.jpg
├── SegmentationClass/<id>.png      palette (P mode) PNG: 0..20 class, 255 ignore
└── ImageSets/Segmentation/
    ├── train.txt                   one image id per line
    └── val.txt"""


@DATASETS.register("voc", layout=_VOC_LAYOUT, needs_root=True, options={})
def voc(root: Path, image_size: int, options: Mapping[str, Any]) -> _Source:
    """PASCAL VOC 2012 segmentation: 21 classes (background + 20), 255 = ignore border."""
    lists = {s: root / "ImageSets" / "Segmentation" / f"{s}.txt" for s in SPLITS}
    pairs = {s: _listed_pairs(lists[s], _read_list(lists[s], _VOC_LAYOUT),
                              lambda i: root / "JPEGImages" / f"{i}.jpg",
                              lambda i: root / "SegmentationClass" / f"{i}.png", _VOC_LAYOUT)
             for s in SPLITS}
    files = [*lists.values(), *(p for s in SPLITS for pair in pairs[s] for p in pair)]
    lut = _lut({v: v for v in range(21)} | {IGNORE: IGNORE})
    info = DatasetInfo("voc", 21, 3, IGNORE, _VOC_CLASSES, _voc_palette(21))

    def decode() -> tuple[DatasetInfo, dict[str, Split]]:
        return info, {s: _decode_pairs(pairs[s], image_size, lut, "0..20 and 255 (ignore)",
                                       _VOC_LAYOUT)[0] for s in SPLITS}

    return _Source(_fingerprint(root, files), decode)


_PETS_LAYOUT = """\
<root>/
├── images/<id>.jpg
└── annotations/
    ├── trimaps/<id>.png            1 pet, 2 background, 3 border (-> ignore)
    ├── trainval.txt                "<id> <class> <species> <breed>" per line, # comments (train)
    └── test.txt                    same format (val)"""


@DATASETS.register("pets", layout=_PETS_LAYOUT, needs_root=True, options={})
def pets(root: Path, image_size: int, options: Mapping[str, Any]) -> _Source:
    """Oxford-IIIT Pet, binary: pet 1, background 0, trimap border 255 (ignore); val = test."""
    lists = {"train": root / "annotations" / "trainval.txt",
             "val": root / "annotations" / "test.txt"}
    pairs = {s: _listed_pairs(lists[s], _read_list(lists[s], _PETS_LAYOUT, comments=True),
                              lambda i: root / "images" / f"{i}.jpg",
                              lambda i: root / "annotations" / "trimaps" / f"{i}.png", _PETS_LAYOUT)
             for s in SPLITS}
    files = [*lists.values(), *(p for s in SPLITS for pair in pairs[s] for p in pair)]
    lut = _lut({1: 1, 2: 0, 3: IGNORE})
    info = DatasetInfo("pets", 2, 3, IGNORE, ("background", "pet"), _voc_palette(2))

    def decode() -> tuple[DatasetInfo, dict[str, Split]]:
        return info, {s: _decode_pairs(pairs[s], image_size, lut, "1 (pet), 2 (background), "
                                       "3 (border)", _PETS_LAYOUT)[0] for s in SPLITS}

    return _Source(_fingerprint(root, files), decode)


_FOLDER_LAYOUT = """\
<root>/
├── images/<stem>.png|.jpg|.jpeg|.bmp|.tif|.tiff
├── masks/<stem>.png                binary {0,255} or {0,1}, or class indices 0..K-1 (255 ignore)
├── train.txt                       optional, with val.txt: one stem per line;
└── val.txt                         without them a seeded split_ratio share goes to val"""


@DATASETS.register("folder", layout=_FOLDER_LAYOUT, needs_root=True, options={
    "num_classes": _Option(None, _num_classes_or_none,
                           "none (inferred from the masks) or an integer 2..255"),
    "split_ratio": _Option(0.2, _fraction, "the share of images held out for val, in (0, 1)"),
    "seed": _SEED,
})
def folder(root: Path, image_size: int, options: Mapping[str, Any]) -> _Source:
    """Any images/ + masks/ folder pair; masks binary ({0,255} or {0,1}) or class indices.

    Masks whose values (over the whole dataset) are all in {0, 255} are binary, 255 meaning
    foreground, unless ``num_classes`` > 2 is given. Otherwise values are class indices with
    255 = ignore, and ``num_classes`` defaults to the largest index + 1 (at least 2).
    """
    layout = _FOLDER_LAYOUT
    images_dir, masks_dir = root / "images", root / "masks"
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise _error(FileNotFoundError, layout, f"folder {d} does not exist")
    images: dict[str, Path] = {}
    for path in sorted(images_dir.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in _IMAGE_SUFFIXES:
            continue
        if path.stem in images:
            raise _error(ValueError, layout, f"two images share the stem {path.stem!r}: "
                                             f"{images[path.stem]} and {path}")
        images[path.stem] = path
    if not images:
        raise _error(FileNotFoundError, layout, f"no images ({', '.join(_IMAGE_SUFFIXES)}) "
                                                f"in {images_dir}")
    masks = {p.stem: p for p in sorted(masks_dir.glob("*.png")) if not p.name.startswith(".")}
    for stem, path in images.items():
        if stem not in masks:
            raise _error(FileNotFoundError, layout,
                         f"image {path} has no mask {masks_dir / (stem + '.png')}")
    for stem, path in masks.items():
        if stem not in images:
            raise _error(ValueError, layout, f"mask {path} has no image {images_dir / stem}.*")

    lists = [root / "train.txt", root / "val.txt"]
    if any(p.is_file() for p in lists):
        stems = {s: _read_list(p, layout) for s, p in zip(SPLITS, lists)}
        for s, p in zip(SPLITS, lists):
            for stem in stems[s]:
                if stem not in images:
                    raise _error(FileNotFoundError, layout,
                                 f"{p} lists {stem!r} but there is no {images_dir / stem}.*")
        both = sorted(set(stems["train"]) & set(stems["val"]))
        if both:
            raise _error(ValueError, layout,
                         f"{both[0]!r} is listed in both {lists[0]} and {lists[1]}")
    else:
        lists = []
        order = sorted(images)
        if len(order) < 2:
            raise _error(ValueError, layout, f"{images_dir} holds {len(order)} image; "
                                             "a train/val split needs at least 2")
        perm = np.random.default_rng(options["seed"]).permutation(len(order))
        n_val = min(len(order) - 1, max(1, round(len(order) * options["split_ratio"])))
        stems = {"val": [order[i] for i in perm[:n_val]], "train": [order[i] for i in perm[n_val:]]}
    pairs = {s: [(images[t], masks[t]) for t in stems[s]] for s in SPLITS}
    files = [*lists, *(p for s in SPLITS for pair in pairs[s] for p in pair)]

    def decode() -> tuple[DatasetInfo, dict[str, Split]]:
        identity = _lut({v: v for v in range(256)})
        decoded = {s: _decode_pairs(pairs[s], image_size, identity, "0..255", layout)
                   for s in SPLITS}
        present = {s: decoded[s][1] for s in SPLITS}
        values = {int(v) for s in SPLITS for v in np.flatnonzero(present[s].any(0))}
        given = options["num_classes"]
        if given in (None, 2) and values <= {0, IGNORE}:
            lut, num_classes, ignore = _lut({0: 0, IGNORE: 1}), 2, None
        else:
            labels = values - {IGNORE}
            num_classes = given or max(2, max(labels, default=0) + 1)
            rows = sorted((m, row) for s in SPLITS for (_, m), row in zip(pairs[s], present[s]))
            for mask_path, row in rows:
                bad = [int(v) for v in np.flatnonzero(row) if num_classes <= v != IGNORE]
                if bad:
                    raise _error(ValueError, layout,
                                 f"mask {mask_path} has value {bad[0]}; allowed with "
                                 f"num_classes={num_classes}: 0..{num_classes - 1} and "
                                 f"{IGNORE} (ignore)")
            lut = _lut({v: v for v in range(256)})
            ignore = IGNORE if IGNORE in values else None
        splits = {s: Split(decoded[s][0].images, lut[decoded[s][0].masks].astype(np.uint8))
                  for s in SPLITS}
        names = (("background", "foreground") if num_classes == 2 else
                 ("background", *(f"class{k}" for k in range(1, num_classes))))
        info = DatasetInfo("folder", num_classes, 3, ignore, names, _voc_palette(num_classes))
        return info, splits

    return _Source(_fingerprint(root, files), decode)


# The generator's version is part of the cache key: bump it whenever a drawing changes.
_SHAPES_VERSION = 1
_SHAPES_TARGETS = {"disk": (0.2, 1), "ring": (0.25, 1), "triangle": (0.2, 2),
                   "triangle_outline": (0.15, 2), "line": (0.2, 3)}  # kind: (probability, class)
_SHAPES_DISTRACTORS = {"square": 0.35, "square_outline": 0.3, "cross": 0.35}
_SHAPES_MULTICLASS = ("background", "circle", "triangle", "line")


@DATASETS.register("shapes", layout="(generated in memory; reads no files)", needs_root=False,
                   options={
                       "mode": _Option("binary", _choice("binary", "multiclass"),
                                       "binary (all targets vs background) or multiclass "
                                       "(background, circle, triangle, line)"),
                       "n_train": _Option(512, _int_at_least(1), "a positive integer"),
                       "n_val": _Option(128, _int_at_least(1), "a positive integer"),
                       "seed": _SEED,
                   })
def shapes(root: None, image_size: int, options: Mapping[str, Any]) -> _Source:
    """Procedural shapes on textured noise: targets differ from distractors by shape only.

    Targets: disks and thin rings (circle), filled and outlined triangles (triangle), and 1-3 px
    lines (line). Distractors: filled and outlined squares and crosses, drawn from the same size
    and colour distributions, so only shape tells them apart. Objects overlap (later ones occlude
    earlier ones, in the mask too), some are a few pixels across, and the background is random
    colour plus sinusoids, a gradient and pixel noise. Image ``i`` of a split depends only on
    (seed, split, i), so a larger ``n_train`` extends the same sequence; val uses other seeds.
    """
    multiclass = options["mode"] == "multiclass"

    def decode() -> tuple[DatasetInfo, dict[str, Split]]:
        splits = {}
        for code, (name, count) in enumerate((("train", options["n_train"]),
                                              ("val", options["n_val"]))):
            pairs = [_shapes_image(np.random.default_rng([options["seed"], code, i]), image_size)
                     for i in range(count)]
            masks = np.stack([m for _, m in pairs])
            splits[name] = Split(np.stack([im for im, _ in pairs]),
                                 masks if multiclass else (masks > 0).astype(np.uint8))
        names = _SHAPES_MULTICLASS if multiclass else ("background", "target")
        return DatasetInfo("shapes", len(names), 3, None, names, _voc_palette(len(names))), splits

    params = json.dumps({"version": _SHAPES_VERSION, **dict(options)}, sort_keys=True)
    return _Source(hashlib.sha256(params.encode()).hexdigest(), decode)


def _segment_distance(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = b - a
    t = np.clip(((x - a[0]) * d[0] + (y - a[1]) * d[1]) / max(float(d @ d), 1e-9), 0.0, 1.0)
    return np.hypot(x - a[0] - t * d[0], y - a[1] - t * d[1])


def _shape_region(kind: str, rng: np.random.Generator, size: int, x: np.ndarray,
                  y: np.ndarray) -> np.ndarray:
    """Boolean pixel region of one randomly placed shape of ``kind``."""
    centre = rng.uniform(0, size, 2)
    r_min, r_max = max(2.0, size / 20), size / 4
    r = float(np.exp(rng.uniform(np.log(r_min), np.log(r_max))))
    width = rng.uniform(1.0, 3.0)  # thin strokes: 1-3 px at every image size
    angle = rng.uniform(0, 2 * np.pi)
    dx, dy = x - centre[0], y - centre[1]
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    if kind == "disk":
        return np.hypot(dx, dy) <= r
    if kind == "ring":
        return np.abs(np.hypot(dx, dy) - max(r, r_min + 2)) <= width / 2
    if kind in ("triangle", "triangle_outline"):
        turns = angle + np.array([0.0, 2.1, 4.2]) + rng.uniform(-0.35, 0.35, 3)
        pts = centre + max(r, r_min + 2) * np.stack([np.cos(turns), np.sin(turns)], 1)
        if kind == "triangle_outline":
            dist = np.min([_segment_distance(x, y, pts[i], pts[(i + 1) % 3]) for i in range(3)], 0)
            return dist <= width / 2
        side = [(b[0] - a[0]) * (y - a[1]) - (b[1] - a[1]) * (x - a[0])
                for a, b in ((pts[0], pts[1]), (pts[1], pts[2]), (pts[2], pts[0]))]
        return ((side[0] >= 0) & (side[1] >= 0) & (side[2] >= 0)) | (
            (side[0] <= 0) & (side[1] <= 0) & (side[2] <= 0))
    if kind == "line":
        half = rng.uniform(size / 8, size * 0.35) * np.array([np.cos(angle), np.sin(angle)])
        return _segment_distance(x, y, centre - half, centre + half) <= width / 2
    box = np.maximum(np.abs(u), np.abs(v))
    if kind == "square":
        return box <= 0.85 * r
    if kind == "square_outline":
        return np.abs(box - 0.85 * max(r, r_min + 2)) <= width / 2
    if kind == "cross":
        arm = rng.uniform(1.5, 4.0) / 2
        return ((np.abs(u) <= r) & (np.abs(v) <= arm)) | ((np.abs(v) <= r) & (np.abs(u) <= arm))
    raise ValueError(f"unknown shape kind {kind!r}")


def _shapes_image(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One image (size, size, 3) uint8 and its multiclass mask (0 background, 1..3 targets)."""
    y, x = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5)
    base = rng.uniform(0.15, 0.85, 3)
    image = np.broadcast_to(base, (size, size, 3)).copy()
    for _ in range(3):
        cycles, theta, phase = rng.uniform(1, 8), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        wave = np.sin(2 * np.pi * cycles * (x * np.cos(theta) + y * np.sin(theta)) / size + phase)
        image += wave[..., None] * rng.uniform(-0.1, 0.1, 3)
    theta = rng.uniform(0, 2 * np.pi)
    ramp = ((x - size / 2) * np.cos(theta) + (y - size / 2) * np.sin(theta)) / size
    image += ramp[..., None] * rng.uniform(-0.3, 0.3, 3)

    targets = list(_SHAPES_TARGETS)
    p_targets = [p for p, _ in _SHAPES_TARGETS.values()]
    kinds = [*rng.choice(targets, rng.integers(3, 7), p=p_targets),
             *rng.choice(list(_SHAPES_DISTRACTORS), rng.integers(2, 5),
                         p=list(_SHAPES_DISTRACTORS.values()))]
    mask = np.zeros((size, size), np.uint8)
    for k in rng.permutation(len(kinds)):
        kind = str(kinds[k])
        region = _shape_region(kind, rng, size, x, y)
        colour = rng.uniform(0, 1, 3)
        for _ in range(10):  # keep objects visible against the background's mean colour
            if np.abs(colour - base).max() >= 0.3:
                break
            colour = rng.uniform(0, 1, 3)
        image[region] = colour
        mask[region] = _SHAPES_TARGETS[kind][1] if kind in _SHAPES_TARGETS else 0
    # Uneven lighting over everything, objects included.
    phi, period = rng.uniform(0, 2 * np.pi), rng.uniform(1.5, 4) * size
    light = 1 + rng.uniform(-0.15, 0.15) * np.cos(
        2 * np.pi * (x * np.cos(phi) + y * np.sin(phi)) / period)
    image = image * light[..., None] + rng.normal(0, rng.uniform(0.02, 0.08), image.shape)
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8), mask


# ---------------------------------------------------------------------------------------------
# Batching and augmentation


@dataclass(frozen=True)
class Augment:
    """Joint image/mask augmentation, run per batch on the loader's device.

    Each sample gets: a horizontal flip with probability 1/2; a zoom-in by a factor drawn from
    ``scale`` and a crop back to size at a random position; a rotation drawn from
    +-``rotate`` degrees. Images are resampled bilinearly, masks by nearest neighbour (class
    values stay exact). Pixels whose source lies outside the image become the mean colour
    (0 after normalization) and, in the mask, ``ignore_index`` if the loader has one (they are
    then left out of the loss), else background 0.
    """

    flip: bool = True
    scale: tuple[float, float] = (1.0, 1.5)   # zoom-in factor range, >= 1
    rotate: float = 10.0                      # largest absolute rotation, degrees

    def __post_init__(self) -> None:
        if not isinstance(self.flip, bool):
            raise ValueError(f"flip={self.flip!r} is not allowed; allowed: True or False")
        try:
            low, high = (float(s) for s in self.scale)
        except (TypeError, ValueError):
            low = high = math.nan
        if not 1.0 <= low <= high <= 4.0:
            raise ValueError(f"scale={self.scale!r} is not allowed; allowed: (low, high) with "
                             "1 <= low <= high <= 4")
        object.__setattr__(self, "scale", (low, high))
        if isinstance(self.rotate, bool) or not isinstance(self.rotate, (int, float)) or not (
                0 <= self.rotate <= 45):
            raise ValueError(f"rotate={self.rotate!r} is not allowed; allowed: degrees in 0..45")


class BatchLoader:
    """Batches of (images float32 NCHW ImageNet-normalized, masks int64 NHW) from a Split.

    The split is moved to ``device`` once, as uint8; normalization and augmentation run there.
    Order and augmentation are drawn from a CPU generator seeded by (seed, epoch), so the same
    (seed, epoch) gives identical batches on any device. The epoch changes only through
    :meth:`set_epoch` (as with ``DistributedSampler``): iterating twice replays the same epoch.
    ``augment`` is False, True (the default ``Augment()``) or an ``Augment``.
    """

    def __init__(self, split: Split, batch_size: int, device: torch.device | str = "cpu",
                 shuffle: bool = False, augment: bool | Augment = False, seed: int = 0,
                 drop_last: bool = False, ignore_index: int | None = None) -> None:
        if not isinstance(split, Split):
            raise TypeError(f"BatchLoader needs an ablate Split, got {type(split).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} is not allowed; "
                             "allowed: a positive integer")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed={seed!r} is not allowed; allowed: a non-negative integer")
        if ignore_index not in (None, IGNORE):
            raise ValueError(f"ignore_index={ignore_index!r} is not allowed; "
                             f"allowed: None or {IGNORE}")
        if isinstance(augment, bool):
            augment = Augment() if augment else None
        elif not isinstance(augment, Augment):
            raise ValueError(f"augment={augment!r} is not allowed; "
                             "allowed: True, False or an Augment")
        if drop_last and batch_size > len(split):
            raise ValueError(f"batch_size={batch_size} with drop_last gives no batch from "
                             f"{len(split)} samples; allowed: batch_size <= {len(split)}")
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.seed, self.drop_last, self.ignore_index = seed, drop_last, ignore_index
        self.device = torch.device(device)
        self.num_samples = len(split)
        self.epoch = 0
        self._images = _to_device(split.images, self.device)  # uint8 NHWC
        self._masks = _to_device(split.masks, self.device)    # uint8 NHW
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, -1, 1, 1)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration yields."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch={epoch!r} is not allowed; allowed: a non-negative integer")
        self.epoch = epoch

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        state = np.random.SeedSequence([self.seed, self.epoch]).generate_state(1, np.uint64)[0]
        gen = torch.Generator().manual_seed(int(state))
        n = self.num_samples
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        order = _host_to(order, self.device)  # one copy per epoch, not one per batch
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            idx = order[start:start + self.batch_size]
            images = self._images[idx].permute(0, 3, 1, 2).float().div_(255)
            images = images.sub_(self._mean).div_(self._std).contiguous()
            masks = self._masks[idx].long()
            if self.augment is not None:
                fill = 0 if self.ignore_index is None else self.ignore_index
                images, masks = _augment(images, masks, self.augment, gen, fill)
            yield images, masks


def _host_to(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a small CPU tensor to ``device``; on CUDA through pinned memory without blocking,
    so the host keeps queueing work instead of waiting for the GPU at every batch."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(array if array.flags.writeable else array.copy()).to(device)


def _augment(images: torch.Tensor, masks: torch.Tensor, aug: Augment, gen: torch.Generator,
             fill: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``aug`` to a batch; random amounts are drawn on the CPU from ``gen``."""
    b, _, h, w = images.shape
    device = images.device
    if aug.flip:
        flip = _host_to(torch.rand(b, generator=gen) < 0.5, device)
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
        masks = torch.where(flip.view(-1, 1, 1), masks.flip(-1), masks)
    low, high = aug.scale
    if high == 1.0 and aug.rotate == 0:
        return images, masks
    zoom = low + (high - low) * torch.rand(b, generator=gen, dtype=torch.float64)
    angle = torch.deg2rad(aug.rotate * (2 * torch.rand(b, generator=gen, dtype=torch.float64) - 1))
    shift = (2 * torch.rand(b, 2, generator=gen, dtype=torch.float64) - 1) * (1 - 1 / zoom)[:, None]
    # theta maps output to input in normalized [-1, 1] coordinates; rotating in pixel units
    # (D^-1 R D, D = diag(w, h)) keeps non-square images undistorted.
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin * h / w, shift[:, 0]], 1),
                         torch.stack([sin * w / h, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(_host_to(theta.float(), device), [b, 1, h, w], align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # Sample mask + 1 with zero padding, so that 0 marks pixels from outside the image.
    sampled = F.grid_sample((masks + 1).unsqueeze(1).float(), grid, mode="nearest",
                            padding_mode="zeros", align_corners=False).squeeze(1).long()
    masks = torch.where(sampled == 0, torch.full_like(sampled, fill), sampled - 1)
    return images, masks
