"""Tests for ablate.data.folder: binary and class-index masks, seeded and listed splits."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SIZE, fixture_spec, make_folder

from ablate.data import DataSpec, load_dataset


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
