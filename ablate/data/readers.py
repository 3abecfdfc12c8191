"""File decoding shared by the file datasets (voc, pets, folder): lists, images, masks."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .spec import Split

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_WORKERS = min(8, os.cpu_count() or 1)


def layout_error(kind: type[Exception], layout: str, message: str) -> Exception:
    return kind(f"{message}\nexpected layout:\n{layout}")


def voc_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """The PASCAL VOC colour map: the class index bits spread over R, G, B, high bit first."""
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


def read_list(path: Path, layout: str, comments: bool = False) -> list[str]:
    """Ids of a list file: the first token of each non-blank line (``#`` lines skipped if asked)."""
    if not path.is_file():
        raise layout_error(FileNotFoundError, layout, f"list file {path} does not exist")
    ids: list[str] = []
    seen: set[str] = set()
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or (comments and line.startswith("#")):
            continue
        item = line.split()[0]
        if item in seen:
            raise layout_error(ValueError, layout, f"list file {path} lists {item!r} twice")
        seen.add(item)
        ids.append(item)
    if not ids:
        raise layout_error(ValueError, layout, f"list file {path} lists no images")
    return ids


def listed_pairs(list_file: Path, ids: Sequence[str], image_of: Callable[[str], Path],
                  mask_of: Callable[[str], Path], layout: str) -> list[tuple[Path, Path]]:
    pairs = []
    for item in ids:
        pair = image_of(item), mask_of(item)
        for path in pair:
            if not path.is_file():
                raise layout_error(FileNotFoundError, layout,
                             f"{list_file} lists {item!r} but {path} does not exist")
        pairs.append(pair)
    return pairs


def fingerprint(root: Path, files: Sequence[Path]) -> str:
    """Hash of the relative path, size and mtime of each file, in the order given."""
    h = hashlib.sha256()
    for path in files:
        st = path.stat()
        h.update(f"{path.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def read_image(path: Path, size: int) -> tuple[tuple[int, int], np.ndarray]:
    """Decode to RGB and resize bilinearly to (size, size, 3) uint8; also the original (w, h)."""
    try:
        with Image.open(path) as im:
            original = im.size
            im.draft("RGB", (size, size))  # JPEG: decode at a reduced DCT scale, still >= size
            rgb = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    except OSError as e:
        raise ValueError(f"cannot decode image {path}: {e}") from None
    return original, np.asarray(rgb, dtype=np.uint8)


def read_mask(path: Path) -> np.ndarray:
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


def decode_pairs(pairs: Sequence[tuple[Path, Path]], size: int, lut: np.ndarray,
                  allowed: str, layout: str) -> tuple[Split, np.ndarray]:
    """Decode (image, mask) files into a Split; masks are mapped through ``lut``.

    ``lut[v] < 0`` marks a mask value that is not allowed. Also returns, per file, which raw mask
    values occur (N, 256) bool, checked at full resolution before the nearest-neighbour resize.
    """

    def one(pair: tuple[Path, Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        image_path, mask_path = pair
        original, image = read_image(image_path, size)
        raw = read_mask(mask_path)
        if raw.shape[::-1] != original:
            raise layout_error(ValueError, layout,
                         f"mask {mask_path} is {raw.shape[1]}x{raw.shape[0]} but its image "
                         f"{image_path} is {original[0]}x{original[1]}")
        present = np.bincount(raw.ravel(), minlength=256) > 0
        bad = np.flatnonzero(present & (lut < 0))
        if bad.size:
            raise layout_error(ValueError, layout,
                         f"mask {mask_path} has value {bad[0]}; allowed: {allowed}")
        small = np.asarray(Image.fromarray(raw).resize((size, size), Image.Resampling.NEAREST))
        return image, lut[small].astype(np.uint8), present

    images, masks, present = zip(*parallel(one, pairs))  # lists are never empty
    return Split(np.stack(images), np.stack(masks)), np.stack(present)


def parallel(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
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


def lookup_table(mapping: Mapping[int, int]) -> np.ndarray:
    lut = np.full(256, -1, dtype=np.int16)
    for src, dst in mapping.items():
        lut[src] = dst
    return lut
