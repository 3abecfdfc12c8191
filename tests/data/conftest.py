"""Tiny fixture trees in the real on-disk layouts (VOC, Pets, folder) shared by the data tests.

Plain builders, imported by the test modules (``from conftest import make_voc``): pytest puts
this directory on ``sys.path`` and imports this file before the modules beside it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ablate.data import DataSpec, Split, load_dataset
from ablate.data.readers import voc_palette

SIZE = 32
W, H = 48, 40  # source files are not square and not SIZE, so everything is resized


def _jpeg(path: Path, value: int, w: int = W, h: int = H) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (value, value, value)).save(path, quality=95)


def _palette_png(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(mask.astype(np.uint8), mode="P")
    im.putpalette([v for c in voc_palette(256) for v in c])
    im.save(path)


def _voc_mask(cls: int) -> np.ndarray:
    """Left half ``cls``, right half background, a 255 border band across the middle rows."""
    mask = np.zeros((H, W), np.uint8)
    mask[:, : W // 2] = cls
    mask[H // 2 - 4: H // 2 + 4] = 255
    return mask


VOC_TRAIN = {"2007_000001": 1, "2007_000002": 7, "2008_000003": 15}
VOC_VAL = {"2009_000004": 20, "2010_000005": 12}


def make_voc(root: Path, train: dict[str, int] = VOC_TRAIN,
             val: dict[str, int] = VOC_VAL) -> Path:
    """A VOC tree; ``train`` and ``val`` map image ids to the class of their left half."""
    for i, (item, cls) in enumerate({**train, **val}.items()):
        _jpeg(root / "JPEGImages" / f"{item}.jpg", (40 * i + 20) % 256)
        _palette_png(root / "SegmentationClass" / f"{item}.png", _voc_mask(cls))
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("".join(f"{i}\n" for i in train))
    (sets / "val.txt").write_text("".join(f"{i}\n" for i in val) + "\n")
    return root


def _trimap() -> np.ndarray:
    """Columns 0..15 pet (1), 16..31 background (2), 32..47 border (3)."""
    return np.repeat(np.repeat(np.array([[1, 2, 3]], np.uint8), H, 0), 16, 1)


def make_pets(root: Path) -> Path:
    ann = root / "annotations"
    for item in ("Abyssinian_1", "beagle_2", "Bombay_3"):
        _jpeg(root / "images" / f"{item}.jpg", 128)
        (ann / "trimaps").mkdir(parents=True, exist_ok=True)
        Image.fromarray(_trimap(), mode="L").save(ann / "trimaps" / f"{item}.png")
    header = "#Image CLASS-ID SPECIES BREED ID\n#ID: 1:37 Class ids\n"
    (ann / "trainval.txt").write_text(header + "Abyssinian_1 1 1 1\nbeagle_2 2 2 1\n")
    (ann / "test.txt").write_text(header + "Bombay_3 3 1 3\n")
    return root


def make_folder(root: Path, n: int = 6, values: tuple[int, ...] = (0, 255)) -> Path:
    """Image i: value 20 * i; mask: its left half ``values[1]``, a right block ``values[-1]``."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        image = Image.new("RGB", (W, H), (20 * i,) * 3)
        image.save(root / "images" / (f"im{i}.jpg" if i % 2 else f"im{i}.png"))
        mask = np.full((H, W), values[0], np.uint8)
        mask[:, : W // 2] = values[1]
        mask[: H // 2, -8:] = values[-1]
        Image.fromarray(mask, mode="L").save(root / "masks" / f"im{i}.png")
    return root


def fixture_spec(name: str, tmp_path: Path, **options) -> DataSpec:
    """A tiny DataSpec for every registered dataset (a new dataset needs an entry here)."""
    if name == "shapes":
        return DataSpec("shapes", image_size=SIZE, options={"n_train": 6, "n_val": 3, **options})
    makers = {"voc": make_voc, "pets": make_pets, "folder": make_folder}
    return DataSpec(name, root=str(makers[name](tmp_path / name)), image_size=SIZE, options=options)


def _shapes(**options) -> dict[str, Split]:
    spec = DataSpec("shapes", image_size=SIZE, options={"n_train": 8, "n_val": 4, **options})
    return load_dataset(spec, cache_dir=None)[1]
