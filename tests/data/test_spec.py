"""Tests for ablate.data.spec: DataSpec, the DATASETS registry, Split and DatasetInfo."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SIZE, fixture_spec

from ablate.data import DATASETS, DatasetInfo, DataSpec, Split, load_dataset


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
