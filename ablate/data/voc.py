"""PASCAL VOC 2012 segmentation, read from its own folder layout."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .readers import decode_pairs, fingerprint, listed_pairs, lookup_table, read_list, voc_palette
from .spec import DATASETS, IGNORE, SPLITS, DatasetInfo, Source, Split

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
def voc(root: Path, image_size: int, options: Mapping[str, Any]) -> Source:
    """PASCAL VOC 2012 segmentation: 21 classes (background + 20), 255 = ignore border."""
    lists = {s: root / "ImageSets" / "Segmentation" / f"{s}.txt" for s in SPLITS}
    pairs = {s: listed_pairs(lists[s], read_list(lists[s], _VOC_LAYOUT),
                              lambda i: root / "JPEGImages" / f"{i}.jpg",
                              lambda i: root / "SegmentationClass" / f"{i}.png", _VOC_LAYOUT)
             for s in SPLITS}
    files = [*lists.values(), *(p for s in SPLITS for pair in pairs[s] for p in pair)]
    lut = lookup_table({v: v for v in range(21)} | {IGNORE: IGNORE})
    info = DatasetInfo("voc", 21, 3, IGNORE, _VOC_CLASSES, voc_palette(21))

    def decode() -> tuple[DatasetInfo, dict[str, Split]]:
        return info, {s: decode_pairs(pairs[s], image_size, lut, "0..20 and 255 (ignore)",
                                       _VOC_LAYOUT)[0] for s in SPLITS}

    return Source(fingerprint(root, files), decode)
