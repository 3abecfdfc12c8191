"""Tests for ablate.data.voc (and the mask checks of ablate.data.readers) on a VOC tree."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    SIZE,
    VOC_TRAIN,
    VOC_VAL,
    H,
    W,
    _palette_png,
    _voc_mask,
    fixture_spec,
    make_voc,
)
from PIL import Image

from ablate.cli import main
from ablate.config import load_config
from ablate.data import DataSpec, load_dataset
from ablate.models.variant import Variant
from ablate.training.inits import INITS
from ablate.training.loop import train

VOC_BATCH = {f"2011_{i:06d}": 1 + i % 20 for i in range(16)}  # one batch of the quick preset


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


def test_the_quick_preset_trains_on_voc(tmp_path):
    """The quick preset's loss (ce+dice) serves a 21-class task with ignore pixels."""
    spec = DataSpec("voc", root=str(make_voc(tmp_path / "voc", train=VOC_BATCH)), image_size=32)
    res = train(Variant(widths=(16, 8, 8, 8), block="dsconv"), spec,
                load_config("quick", epochs=1, device="cpu", encoder_init=None), seed=0,
                cache_dir=tmp_path / "cache", progress=False)
    assert res.status == "ok", res.error
    assert res.epochs_run == 1 and math.isfinite(res.metrics["dice"])


@pytest.mark.slow
def test_cli_trains_voc_with_the_quick_preset(tmp_path, monkeypatch, capsys):
    """``ablate train --data voc --preset quick``, as the README gives it, encoder init included
    (the preset's recipe made from 16 images instead of 4,096: tests/training/test_pretrain)."""
    root = make_voc(tmp_path / "voc", train=VOC_BATCH)
    recipe = INITS.get("shapes-clean")
    monkeypatch.setitem(INITS._entries, "shapes-clean", dataclasses.replace(
        recipe, options={**recipe.options, "n_train": 16, "n_val": 4},
        train={**recipe.train, "epochs": 1}))
    monkeypatch.chdir(tmp_path)  # .cache/ablate (the encoder init) and results/ land here
    assert main(["train", "--data", "voc", "--root", str(root), "--preset", "quick",
                 "--epochs", "1", "--json"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (row["status"], row["dataset"], row["loss"], row["epochs_run"]) == \
        ("ok", "voc", "ce+dice", 1)
