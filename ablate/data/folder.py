"""Any folder of images and masks, binary or class indices."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .readers import (
    IMAGE_SUFFIXES,
    decode_pairs,
    fingerprint,
    layout_error,
    lookup_table,
    read_list,
    voc_palette,
)
from .spec import (
    DATASETS,
    IGNORE,
    SEED,
    SPLITS,
    DatasetInfo,
    Option,
    Source,
    Split,
    fraction,
    num_classes_or_none,
)

_FOLDER_LAYOUT = """\
<root>/
├── images/<stem>.png|.jpg|.jpeg|.bmp|.tif|.tiff
├── masks/<stem>.png                binary {0,255} or {0,1}, or class indices 0..K-1 (255 ignore)
├── train.txt                       optional, with val.txt: one stem per line;
└── val.txt                         without them a seeded split_ratio share goes to val"""


@DATASETS.register("folder", layout=_FOLDER_LAYOUT, needs_root=True, options={
    "num_classes": Option(None, num_classes_or_none,
                           "none (inferred from the masks) or an integer 2..255"),
    "split_ratio": Option(0.2, fraction, "the share of images held out for val, in (0, 1)"),
    "seed": SEED,
})
def folder(root: Path, image_size: int, options: Mapping[str, Any]) -> Source:
    """Any images/ + masks/ folder pair; masks binary ({0,255} or {0,1}) or class indices.

    Masks whose values (over the whole dataset) are all in {0, 255} are binary, 255 meaning
    foreground, unless ``num_classes`` > 2 is given. Otherwise values are class indices with
    255 = ignore, and ``num_classes`` defaults to the largest index + 1 (at least 2).
    """
    layout = _FOLDER_LAYOUT
    images_dir, masks_dir = root / "images", root / "masks"
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise layout_error(FileNotFoundError, layout, f"folder {d} does not exist")
    images: dict[str, Path] = {}
    for path in sorted(images_dir.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in images:
            raise layout_error(ValueError, layout, f"two images share the stem {path.stem!r}: "
                                             f"{images[path.stem]} and {path}")
        images[path.stem] = path
    if not images:
        raise layout_error(FileNotFoundError, layout, f"no images ({', '.join(IMAGE_SUFFIXES)}) "
                                                f"in {images_dir}")
    masks = {p.stem: p for p in sorted(masks_dir.glob("*.png")) if not p.name.startswith(".")}
    for stem, path in images.items():
        if stem not in masks:
            raise layout_error(FileNotFoundError, layout,
                         f"image {path} has no mask {masks_dir / (stem + '.png')}")
    for stem, path in masks.items():
        if stem not in images:
            raise layout_error(ValueError, layout,
                               f"mask {path} has no image {images_dir / stem}.*")

    lists = [root / "train.txt", root / "val.txt"]
    if any(p.is_file() for p in lists):
        stems = {s: read_list(p, layout) for s, p in zip(SPLITS, lists)}
        for s, p in zip(SPLITS, lists):
            for stem in stems[s]:
                if stem not in images:
                    raise layout_error(FileNotFoundError, layout,
                                 f"{p} lists {stem!r} but there is no {images_dir / stem}.*")
        both = sorted(set(stems["train"]) & set(stems["val"]))
        if both:
            raise layout_error(ValueError, layout,
                         f"{both[0]!r} is listed in both {lists[0]} and {lists[1]}")
    else:
        lists = []
        order = sorted(images)
        if len(order) < 2:
            raise layout_error(ValueError, layout, f"{images_dir} holds {len(order)} image; "
                                             "a train/val split needs at least 2")
        perm = np.random.default_rng(options["seed"]).permutation(len(order))
        n_val = min(len(order) - 1, max(1, round(len(order) * options["split_ratio"])))
        stems = {"val": [order[i] for i in perm[:n_val]], "train": [order[i] for i in perm[n_val:]]}
    pairs = {s: [(images[t], masks[t]) for t in stems[s]] for s in SPLITS}
    files = [*lists, *(p for s in SPLITS for pair in pairs[s] for p in pair)]

    def decode() -> tuple[DatasetInfo, dict[str, Split]]:
        identity = lookup_table({v: v for v in range(256)})
        decoded = {s: decode_pairs(pairs[s], image_size, identity, "0..255", layout)
                   for s in SPLITS}
        present = {s: decoded[s][1] for s in SPLITS}
        values = {int(v) for s in SPLITS for v in np.flatnonzero(present[s].any(0))}
        given = options["num_classes"]
        if given in (None, 2) and values <= {0, IGNORE}:
            lut, num_classes, ignore = lookup_table({0: 0, IGNORE: 1}), 2, None
        else:
            labels = values - {IGNORE}
            num_classes = given or max(2, max(labels, default=0) + 1)
            rows = sorted((m, row) for s in SPLITS for (_, m), row in zip(pairs[s], present[s]))
            for mask_path, row in rows:
                bad = [int(v) for v in np.flatnonzero(row) if num_classes <= v != IGNORE]
                if bad:
                    raise layout_error(ValueError, layout,
                                 f"mask {mask_path} has value {bad[0]}; allowed with "
                                 f"num_classes={num_classes}: 0..{num_classes - 1} and "
                                 f"{IGNORE} (ignore)")
            lut = lookup_table({v: v for v in range(256)})
            ignore = IGNORE if IGNORE in values else None
        splits = {s: Split(decoded[s][0].images, lut[decoded[s][0].masks].astype(np.uint8))
                  for s in SPLITS}
        names = (("background", "foreground") if num_classes == 2 else
                 ("background", *(f"class{k}" for k in range(1, num_classes))))
        info = DatasetInfo("folder", num_classes, 3, ignore, names, voc_palette(num_classes))
        return info, splits

    return Source(fingerprint(root, files), decode)
