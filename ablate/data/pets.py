"""Oxford-IIIT Pet (binary pet / background, trimap border ignored)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .readers import decode_pairs, fingerprint, listed_pairs, lookup_table, read_list, voc_palette
from .spec import DATASETS, IGNORE, SPLITS, DatasetInfo, Source, Split

_PETS_LAYOUT = """\
<root>/
├── images/<id>.jpg
└── annotations/
    ├── trimaps/<id>.png            1 pet, 2 background, 3 border (-> ignore)
    ├── trainval.txt                "<id> <class> <species> <breed>" per line, # comments (train)
    └── test.txt                    same format (val)"""


@DATASETS.register("pets", layout=_PETS_LAYOUT, needs_root=True, options={})
def pets(root: Path, image_size: int, options: Mapping[str, Any]) -> Source:
    """Oxford-IIIT Pet, binary: pet 1, background 0, trimap border 255 (ignore); val = test."""
    lists = {"train": root / "annotations" / "trainval.txt",
             "val": root / "annotations" / "test.txt"}
    pairs = {s: listed_pairs(lists[s], read_list(lists[s], _PETS_LAYOUT, comments=True),
                              lambda i: root / "images" / f"{i}.jpg",
                              lambda i: root / "annotations" / "trimaps" / f"{i}.png", _PETS_LAYOUT)
             for s in SPLITS}
    files = [*lists.values(), *(p for s in SPLITS for pair in pairs[s] for p in pair)]
    lut = lookup_table({1: 1, 2: 0, 3: IGNORE})
    info = DatasetInfo("pets", 2, 3, IGNORE, ("background", "pet"), voc_palette(2))

    def decode() -> tuple[DatasetInfo, dict[str, Split]]:
        return info, {s: decode_pairs(pairs[s], image_size, lut, "1 (pet), 2 (background), "
                                       "3 (border)", _PETS_LAYOUT)[0] for s in SPLITS}

    return Source(fingerprint(root, files), decode)
