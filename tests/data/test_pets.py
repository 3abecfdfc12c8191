"""Tests for ablate.data.pets: trimap mapping, list files, layout errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SIZE, H, W, fixture_spec
from PIL import Image

from ablate.data import DataSpec, load_dataset


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


def test_missing_root_shows_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere does not exist(.|\n)*trimaps"):
        load_dataset(DataSpec("pets", root=str(tmp_path / "nowhere")), cache_dir=None)
