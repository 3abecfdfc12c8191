"""Tests for ablate.data: tiny fixture trees in the real on-disk layouts, shapes, cache, loader."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ablate.data import (
    DATASETS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Augment,
    BatchLoader,
    DatasetInfo,
    DataSpec,
    Split,
    load_dataset,
    readers,
    shapes,
)
from ablate.data.readers import voc_palette

SIZE = 32
W, H = 48, 40  # source files are not square and not SIZE, so everything is resized


# ---------------------------------------------------------------------------------------------
# Fixture trees


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


def make_voc(root: Path) -> Path:
    for i, (item, cls) in enumerate({**VOC_TRAIN, **VOC_VAL}.items()):
        _jpeg(root / "JPEGImages" / f"{item}.jpg", 40 * i + 20)
        _palette_png(root / "SegmentationClass" / f"{item}.png", _voc_mask(cls))
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("".join(f"{i}\n" for i in VOC_TRAIN))
    (sets / "val.txt").write_text("".join(f"{i}\n" for i in VOC_VAL) + "\n")
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


# ---------------------------------------------------------------------------------------------
# DataSpec and the registry


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_loads_in_the_split_contract(name, tmp_path):
    info, splits = load_dataset(fixture_spec(name, tmp_path), cache_dir=None)
    assert isinstance(info, DatasetInfo) and info.name == name and info.in_channels == 3
    assert set(splits) == {"train", "val"}
    allowed = set(range(info.num_classes)) | ({info.ignore_index} - {None})
    for split in splits.values():
        assert split.images.dtype == np.uint8 and split.images.shape[1:] == (SIZE, SIZE, 3)
        assert split.masks.dtype == np.uint8 and split.masks.shape == split.images.shape[:3]
        assert set(np.unique(split.masks)) <= allowed
    assert len(info.class_names) == len(info.palette) == info.num_classes
    assert info.model_outputs == (1 if info.num_classes == 2 else info.num_classes)


@pytest.mark.parametrize("name", DATASETS.names())
def test_unknown_option_lists_the_allowed_ones(name, tmp_path):
    root = None if name == "shapes" else str(tmp_path)
    with pytest.raises(ValueError, match="unknown option 'colour'") as err:
        DataSpec(name, root=root, options={"colour": 1})
    for key in DATASETS.meta(name)["options"]:
        assert key in str(err.value)


def test_unknown_dataset_lists_the_registered_ones():
    with pytest.raises(ValueError, match="unknown dataset 'coco'") as err:
        DataSpec("coco")
    assert "voc" in str(err.value) and "shapes" in str(err.value)


def test_dataspec_is_resolved_hashable_and_round_trips():
    spec = DataSpec("shapes", options={"n_train": "16"})
    assert spec.options["n_train"] == 16 and spec.options["mode"] == "binary"
    assert spec == DataSpec("shapes", options={"n_train": 16, "mode": "binary", "seed": 0})
    assert hash(spec) == hash(DataSpec("shapes", options={"n_train": 16}))
    assert spec != DataSpec("shapes", options={"n_train": 17})
    plain = json.loads(json.dumps(spec.to_dict()))
    assert DataSpec.from_dict(plain) == spec
    with pytest.raises(ValueError, match="unknown data key 'size'"):
        DataSpec.from_dict({"name": "shapes", "size": 32})
    with pytest.raises(TypeError):
        spec.options["seed"] = 1  # type: ignore[index]


@pytest.mark.parametrize("kwargs, message", [
    (dict(image_size=0), "image_size=0"),
    (dict(image_size=32.5), "image_size=32.5"),
    (dict(options={"n_train": -1}), "n_train=-1"),
    (dict(options={"mode": "binry"}), "mode='binry'.*binary.*multiclass"),
    (dict(options={"seed": True}), "seed=True"),
    (dict(root="/data"), "root='/data' is not allowed"),
    (dict(name="voc"), "needs root(.|\n)*JPEGImages"),
    (dict(name="folder", root="x", options={"split_ratio": 1.0}), "split_ratio=1.0"),
    (dict(name="folder", root="x", options={"num_classes": 1}), "num_classes=1"),
])
def test_dataspec_refuses_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DataSpec(**kwargs)


def test_split_and_info_validate_their_fields():
    with pytest.raises(ValueError, match="uint8"):
        Split(np.zeros((2, 8, 8, 3), np.float32), np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="masks"):
        Split(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 8, 9), np.uint8))
    with pytest.raises(ValueError, match="class names"):
        DatasetInfo("x", 3, 3, None, ("a", "b"), ((0, 0, 0),) * 3)


# ---------------------------------------------------------------------------------------------
# VOC


def test_voc_classes_ignore_and_split_membership(tmp_path):
    spec = fixture_spec("voc", tmp_path)
    info, splits = load_dataset(spec, cache_dir=None)
    assert (info.num_classes, info.ignore_index, info.binary) == (21, 255, False)
    assert info.class_names[15] == "person" and len(info.class_names) == 21
    assert info.palette[:3] == ((0, 0, 0), (128, 0, 0), (0, 128, 0))
    assert info.palette[15] == (192, 128, 128)
    for name, listed in (("train", VOC_TRAIN), ("val", VOC_VAL)):
        split = splits[name]
        assert len(split) == len(listed)
        for k, cls in enumerate(listed.values()):  # list order, class from the palette PNG
            assert set(np.unique(split.masks[k])) == {0, cls, 255}
            assert split.masks[k, 0, 0] == cls and split.masks[k, 0, -1] == 0
            assert split.masks[k, SIZE // 2, 0] == 255
    means = [float(im.mean()) for im in splits["val"].images]
    assert means == pytest.approx([140, 180], abs=3)  # the 4th and 5th JPEGs, in val.txt order


def test_voc_missing_jpeg_names_the_file_and_shows_the_layout(tmp_path):
    spec = fixture_spec("voc", tmp_path)
    (Path(spec.root) / "JPEGImages" / "2007_000002.jpg").unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_dataset(spec, cache_dir=None)
    msg = str(err.value)
    assert "train.txt lists '2007_000002'" in msg and "2007_000002.jpg does not exist" in msg
    assert "expected layout" in msg and "├── JPEGImages/<id>.jpg" in msg


def test_voc_missing_image_set_file(tmp_path):
    spec = fixture_spec("voc", tmp_path)
    (Path(spec.root) / "ImageSets" / "Segmentation" / "val.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"val\.txt does not exist(.|\n)*ImageSets"):
        load_dataset(spec, cache_dir=None)


def test_missing_root_shows_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere does not exist(.|\n)*trimaps"):
        load_dataset(DataSpec("pets", root=str(tmp_path / "nowhere")), cache_dir=None)


def test_voc_bad_mask_value_names_the_mask(tmp_path):
    spec = fixture_spec("voc", tmp_path)
    bad = _voc_mask(3)
    bad[0, 0] = 30  # one pixel: found at full resolution, even if the resize would drop it
    _palette_png(Path(spec.root) / "SegmentationClass" / "2009_000004.png", bad)
    with pytest.raises(ValueError, match=r"2009_000004\.png has value 30; allowed: 0\.\.20"):
        load_dataset(spec, cache_dir=None)


def test_mask_size_differing_from_its_image_is_refused(tmp_path):
    spec = fixture_spec("voc", tmp_path)
    _palette_png(Path(spec.root) / "SegmentationClass" / "2008_000003.png", np.zeros((20, 20)))
    with pytest.raises(ValueError, match=r"2008_000003\.png is 20x20 but its image .* is 48x40"):
        load_dataset(spec, cache_dir=None)


def test_colour_mask_is_refused(tmp_path):
    spec = fixture_spec("voc", tmp_path)
    Image.new("RGB", (W, H), (128, 0, 0)).save(
        Path(spec.root) / "SegmentationClass" / "2007_000001.png")
    with pytest.raises(ValueError, match=r"2007_000001\.png is a colour \(RGB\) image"):
        load_dataset(spec, cache_dir=None)


# ---------------------------------------------------------------------------------------------
# Pets


def test_pets_trimap_mapping_and_lists(tmp_path):
    info, splits = load_dataset(fixture_spec("pets", tmp_path), cache_dir=None)
    assert (info.num_classes, info.ignore_index, info.binary,
            info.model_outputs) == (2, 255, True, 1)
    assert (len(splits["train"]), len(splits["val"])) == (2, 1)  # comment lines skipped
    for split in splits.values():
        m = split.masks
        assert (m[:, :, 0] == 1).all()       # trimap 1 (pet)
        assert (m[:, :, SIZE // 2] == 0).all()  # trimap 2 (background)
        assert (m[:, :, -1] == 255).all()    # trimap 3 (border) -> ignore
        assert set(np.unique(m)) == {0, 1, 255}


def test_pets_unexpected_trimap_value(tmp_path):
    spec = fixture_spec("pets", tmp_path)
    Image.fromarray(np.zeros((H, W), np.uint8), mode="L").save(
        Path(spec.root) / "annotations" / "trimaps" / "Bombay_3.png")
    with pytest.raises(ValueError, match=r"Bombay_3\.png has value 0; allowed: 1 \(pet\)"):
        load_dataset(spec, cache_dir=None)


# ---------------------------------------------------------------------------------------------
# Folder


def test_folder_binary_255_masks_become_0_1(tmp_path):
    info, splits = load_dataset(fixture_spec("folder", tmp_path), cache_dir=None)
    assert (info.num_classes, info.ignore_index) == (2, None)
    assert (len(splits["train"]), len(splits["val"])) == (5, 1)  # round(6 * 0.2) = 1
    for split in splits.values():
        assert set(np.unique(split.masks)) == {0, 1}
        assert (split.masks[:, :, 0] == 1).all()


def test_folder_class_index_masks_infer_classes_and_ignore(tmp_path):
    root = make_folder(tmp_path / "f", values=(0, 2, 255))
    info, splits = load_dataset(DataSpec("folder", root=str(root), image_size=SIZE), cache_dir=None)
    assert (info.num_classes, info.ignore_index) == (3, 255)
    assert info.class_names == ("background", "class1", "class2")
    assert set(np.unique(splits["train"].masks)) == {0, 2, 255}
    with pytest.raises(ValueError, match=r"im0\.png has value 2; allowed with num_classes=2"):
        load_dataset(DataSpec("folder", root=str(root), image_size=SIZE,
                              options={"num_classes": 2}), cache_dir=None)


def test_folder_ratio_split_is_seeded_and_disjoint(tmp_path):
    root = make_folder(tmp_path / "f", n=10)

    def val_values(seed: int) -> list[float]:
        spec = DataSpec("folder", root=str(root), image_size=SIZE,
                        options={"seed": seed, "split_ratio": 0.3})
        _, splits = load_dataset(spec, cache_dir=None)
        values = [round(float(im.mean()) / 20) for s in splits.values() for im in s.images]
        assert sorted(values) == list(range(10))  # every image once, in exactly one split
        return values[-3:]

    assert val_values(0) == val_values(0)
    assert val_values(0) != val_values(1)


def test_folder_list_files_choose_the_split(tmp_path):
    root = make_folder(tmp_path / "f", n=4)
    (root / "train.txt").write_text("im3\nim0\n")
    (root / "val.txt").write_text("im2\n")
    _, splits = load_dataset(DataSpec("folder", root=str(root), image_size=SIZE), cache_dir=None)
    assert [round(float(im.mean()) / 20) for im in splits["train"].images] == [3, 0]
    assert [round(float(im.mean()) / 20) for im in splits["val"].images] == [2]
    (root / "val.txt").write_text("im2\nim9\n")
    with pytest.raises(FileNotFoundError, match=r"val\.txt lists 'im9'(.|\n)*masks/<stem>\.png"):
        load_dataset(DataSpec("folder", root=str(root), image_size=SIZE), cache_dir=None)


def test_folder_image_without_mask_names_it(tmp_path):
    root = make_folder(tmp_path / "f", n=3)
    (root / "masks" / "im1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"im1\.jpg has no mask .*im1\.png"):
        load_dataset(DataSpec("folder", root=str(root), image_size=SIZE), cache_dir=None)


# ---------------------------------------------------------------------------------------------
# Shapes


def _shapes(**options) -> dict[str, Split]:
    spec = DataSpec("shapes", image_size=SIZE, options={"n_train": 8, "n_val": 4, **options})
    return load_dataset(spec, cache_dir=None)[1]


def _shift_all(mask: np.ndarray, pad: bool) -> list[np.ndarray]:
    p = np.pad(mask, ((0, 0), (1, 1), (1, 1)), constant_values=pad)
    return [p[:, 1 + dy: 1 + dy + SIZE, 1 + dx: 1 + dx + SIZE]
            for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def _erode3(mask: np.ndarray) -> np.ndarray:
    return np.logical_and.reduce(_shift_all(mask, False))


def _dilate3(mask: np.ndarray) -> np.ndarray:
    return np.logical_or.reduce(_shift_all(mask, False))


def test_shapes_is_deterministic_per_seed():
    a, b, c = _shapes(seed=3), _shapes(seed=3), _shapes(seed=4)
    for name in ("train", "val"):
        assert np.array_equal(a[name].images, b[name].images)
        assert np.array_equal(a[name].masks, b[name].masks)
        assert not np.array_equal(a[name].images, c[name].images)
    assert not np.array_equal(a["train"].images[:4], a["val"].images)  # val has its own seeds
    longer = _shapes(seed=3, n_train=12)
    assert np.array_equal(longer["train"].images[:8], a["train"].images)  # prefix-stable


def test_shapes_foreground_thin_structures_and_texture():
    split = _shapes(n_train=16)["train"]
    fg = split.masks > 0
    assert 0.03 < fg.mean() < 0.4
    # Thin: foreground that a 3x3 opening removes (no 3x3 all-foreground block covers it).
    # Filled shapes lose only corners and tips (about 5%); 1-3 px lines and rings vanish.
    thin = fg & ~_dilate3(_erode3(fg))
    assert thin.sum() > 0.2 * fg.sum()
    assert fg.reshape(16, -1).any(1).all()
    background = split.images[~fg].astype(float)
    assert background.std(0).min() > 20  # textured, varied backgrounds, not a flat colour


def test_shapes_distractors_are_drawn_and_labelled_background(monkeypatch):
    drawn: list[tuple[str, np.ndarray]] = []
    original = shapes._shape_region

    def recording(kind, *args):
        region = original(kind, *args)
        drawn.append((kind, region))
        return region

    monkeypatch.setattr(shapes, "_shape_region", recording)
    kinds_seen = set()
    for i in range(12):
        drawn.clear()
        image, mask = shapes._shapes_image(np.random.default_rng(i), SIZE)
        kinds = [k for k, _ in drawn]
        kinds_seen.update(kinds)
        assert (set(kinds) & set(shapes._SHAPES_DISTRACTORS)
                and set(kinds) & set(shapes._SHAPES_TARGETS))
        kind, last = drawn[-1]  # drawn last, so fully visible
        label = shapes._SHAPES_TARGETS[kind][1] if kind in shapes._SHAPES_TARGETS else 0
        assert (mask[last] == label).all()
    assert kinds_seen == set(shapes._SHAPES_TARGETS) | set(shapes._SHAPES_DISTRACTORS)


def test_shapes_multiclass_has_four_classes():
    spec = DataSpec("shapes", image_size=SIZE, options={"mode": "multiclass", "n_train": 16})
    info, splits = load_dataset(spec, cache_dir=None)
    assert info.class_names == ("background", "circle", "triangle", "line")
    assert (info.num_classes, info.ignore_index, info.model_outputs) == (4, None, 4)
    assert set(np.unique(splits["train"].masks)) == {0, 1, 2, 3}
    binary = _shapes(n_train=16)["train"].masks  # same images, coarser labels
    assert np.array_equal(binary, (splits["train"].masks > 0).astype(np.uint8))


# ---------------------------------------------------------------------------------------------
# Cache


def test_cache_hit_is_identical_and_does_not_decode(tmp_path, monkeypatch):
    spec = fixture_spec("folder", tmp_path)
    cache = tmp_path / "cache"
    info, first = load_dataset(spec, cache_dir=cache)
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 2 and all(f.startswith("folder-32px-") for f in files)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded on a cache hit")

    monkeypatch.setattr(readers, "read_image", no_decoding)
    with pytest.raises(AssertionError, match="decoded"):
        load_dataset(spec, cache_dir=None)  # the patch reaches the decoder
    info2, second = load_dataset(spec, cache_dir=cache)
    assert info2 == info
    for name in ("train", "val"):
        assert np.array_equal(first[name].images, second[name].images)
        assert np.array_equal(first[name].masks, second[name].masks)


def test_shapes_cache_hit_does_not_generate(tmp_path, monkeypatch):
    spec = DataSpec("shapes", image_size=SIZE, options={"n_train": 3, "n_val": 2})
    _, first = load_dataset(spec, cache_dir=tmp_path)
    monkeypatch.setattr(shapes, "_shapes_image", lambda *a: pytest.fail("generated on a cache hit"))
    _, second = load_dataset(spec, cache_dir=tmp_path)
    assert np.array_equal(first["val"].images, second["val"].images)
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temp files
    assert all(p.stat().st_mode & 0o044 for p in tmp_path.glob("*.npz"))  # readable by others


def test_cache_is_invalidated_when_a_file_changes(tmp_path):
    spec = fixture_spec("folder", tmp_path)
    cache = tmp_path / "cache"
    _, before = load_dataset(spec, cache_dir=cache)
    mask_path = Path(spec.root) / "masks" / "im0.png"
    Image.fromarray(np.zeros((H, W), np.uint8), mode="L").save(mask_path)
    stat = mask_path.stat()
    os.utime(mask_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    _, after = load_dataset(spec, cache_dir=cache)
    both = [np.concatenate([s[n].masks for n in ("train", "val")]) for s in (before, after)]
    assert not np.array_equal(*both)
    assert len(list(cache.iterdir())) == 4  # a second key beside the first


def test_cache_key_depends_on_size_and_options(tmp_path):
    base = DataSpec("shapes", image_size=SIZE, options={"n_train": 2, "n_val": 1})
    for spec in (base, DataSpec("shapes", image_size=40, options=dict(base.options)),
                 DataSpec("shapes", image_size=SIZE, options={**base.options, "seed": 1})):
        load_dataset(spec, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 6


# ---------------------------------------------------------------------------------------------
# BatchLoader


def _indexed_split(n: int = 10, size: int = 8) -> Split:
    """Image k is uniformly k (so the order can be read back); mask k is k % 3."""
    images = np.repeat(np.arange(n, dtype=np.uint8), size * size * 3).reshape(n, size, size, 3)
    masks = np.repeat((np.arange(n) % 3).astype(np.uint8), size * size).reshape(n, size, size)
    return Split(images, masks)


def _order(loader: BatchLoader) -> list[int]:
    std, mean = IMAGENET_STD[0], IMAGENET_MEAN[0]
    return [round(float((im[0, 0, 0] * std + mean) * 255)) for ims, _ in loader for im in ims]


def _denormalize(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return images * std + mean


def test_loader_without_augmentation_returns_exactly_the_normalized_data():
    split = _shapes(n_train=5)["train"]
    loader = BatchLoader(split, batch_size=2)
    batches = list(loader)
    assert len(loader) == len(batches) == 3 and [len(b[0]) for b in batches] == [2, 2, 1]
    images = torch.cat([b[0] for b in batches])
    masks = torch.cat([b[1] for b in batches])
    expected = (split.images.astype(np.float32) / 255 - np.float32(IMAGENET_MEAN)) / np.float32(
        IMAGENET_STD)
    assert images.dtype == torch.float32 and images.shape == (5, 3, SIZE, SIZE)
    assert images.is_contiguous()
    torch.testing.assert_close(images, torch.from_numpy(expected.transpose(0, 3, 1, 2)),
                               rtol=0, atol=1e-6)
    assert masks.dtype == torch.int64 and torch.equal(masks, torch.from_numpy(split.masks).long())


def test_loader_order_is_seeded_per_epoch():
    split = _indexed_split()
    assert _order(BatchLoader(split, 3)) == list(range(10))  # no shuffle: file order
    loader = BatchLoader(split, 3, shuffle=True, seed=5)
    epoch0 = _order(loader)
    assert sorted(epoch0) == list(range(10)) and epoch0 != list(range(10))
    assert _order(loader) == epoch0 == _order(BatchLoader(split, 3, shuffle=True, seed=5))
    loader.set_epoch(1)
    assert _order(loader) != epoch0
    loader.set_epoch(0)
    assert _order(loader) == epoch0
    assert _order(BatchLoader(split, 3, shuffle=True, seed=6)) != epoch0


def test_loader_drop_last_and_bad_arguments():
    split = _indexed_split()
    assert len(BatchLoader(split, 4, drop_last=True)) == 2
    assert len(BatchLoader(split, 4)) == 3
    with pytest.raises(ValueError, match="batch_size=0"):
        BatchLoader(split, 0)
    with pytest.raises(ValueError, match="gives no batch from 10 samples"):
        BatchLoader(split, 11, drop_last=True)
    with pytest.raises(ValueError, match="ignore_index=-1"):
        BatchLoader(split, 2, ignore_index=-1)
    with pytest.raises(ValueError, match="epoch=-1"):
        BatchLoader(split, 2).set_epoch(-1)
    with pytest.raises(ValueError, match=r"scale=\(0\.5, 1\.0\)"):
        Augment(scale=(0.5, 1.0))


def test_augmentation_is_deterministic_and_masks_stay_class_values():
    split = _shapes(n_train=8, mode="multiclass")["train"]

    def run(epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        loader = BatchLoader(split, 4, shuffle=True, augment=True, seed=1, ignore_index=255)
        loader.set_epoch(epoch)
        return list(loader)

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))
    assert not torch.equal(a[0][0], c[0][0])
    masks = torch.cat([m for _, m in a])
    assert masks.dtype == torch.int64
    assert set(masks.unique().tolist()) <= {0, 1, 2, 3, 255}
    original = torch.cat([im for im, _ in BatchLoader(split, 8)])
    assert not torch.equal(torch.cat([im for im, _ in a]).sort(0)[0], original.sort(0)[0])


def test_flip_moves_image_and_mask_together():
    n = 16
    images = np.zeros((n, SIZE, SIZE, 3), np.uint8)
    images[:, :, : SIZE // 2] = 255
    masks = np.zeros((n, SIZE, SIZE), np.uint8)
    masks[:, :, : SIZE // 2] = 1
    loader = BatchLoader(Split(images, masks), n, augment=Augment(scale=(1, 1), rotate=0))
    out_images, out_masks = next(iter(loader))
    white = _denormalize(out_images).mean(1) > 0.5
    assert torch.equal(white, out_masks == 1)
    flipped = out_masks[:, 0, -1] == 1
    assert 0 < int(flipped.sum()) < n  # some flipped, some not
    assert torch.equal(out_masks[flipped], torch.from_numpy(masks[flipped.numpy()]).long().flip(-1))


def test_scale_crop_and_rotation_keep_image_and_mask_aligned():
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 4, (8, 4, 4)).astype(np.uint8)
    masks = blocks.repeat(8, 1).repeat(8, 2)               # 8x8 px class blocks
    images = np.repeat((masks * 60)[..., None], 3, -1)      # grey level = class * 60
    loader = BatchLoader(Split(images, masks), 8, augment=True, seed=3, ignore_index=255)
    out_images, out_masks = next(iter(loader))
    grey = _denormalize(out_images).mean(1) * 255
    labelled = out_masks != 255
    agree = (grey - out_masks * 60).abs() < 3
    assert agree[labelled].float().mean() > 0.7
    misaligned = (grey - out_masks.flip(-1) * 60).abs() < 3  # the same check fails when misaligned
    assert misaligned[labelled].float().mean() < 0.6
    assert not torch.equal(out_masks, torch.from_numpy(masks).long())


@pytest.mark.parametrize("ignore_index, fill", [(255, 255), (None, 0)])
def test_pixels_from_outside_become_ignore_or_background(ignore_index, fill):
    masks = np.full((4, SIZE, SIZE), 2, np.uint8)
    images = np.full((4, SIZE, SIZE, 3), 200, np.uint8)
    loader = BatchLoader(Split(images, masks), 4, ignore_index=ignore_index,
                         augment=Augment(flip=False, scale=(1, 1), rotate=45))
    out_images, out_masks = next(iter(loader))
    corners = out_masks[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners == fill).sum() >= 8  # rotated corners are sampled from outside the image
    assert (out_masks[:, SIZE // 2, SIZE // 2] == 2).all()
    assert set(out_masks.unique().tolist()) == {2, fill}
    inside = out_images.abs().amax(1)[out_masks == 2]
    outside = out_images.abs().amax(1)[out_masks == fill]
    assert inside.median() > 1.5 and outside.median() < 1e-5  # outside: mean colour, 0 normalized
