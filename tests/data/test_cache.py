"""Tests for ablate.data.cache: hits do not decode, keys follow files, size and options."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import SIZE, H, W, fixture_spec
from PIL import Image

from ablate.data import DataSpec, load_dataset, readers, shapes


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
