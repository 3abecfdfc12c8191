"""Tests for ablate.data.shapes: the generated dataset (seeded, thin structures, classes)."""

from __future__ import annotations

import numpy as np
from conftest import SIZE, _shapes

from ablate.data import DataSpec, load_dataset, shapes


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
        image, mask = shapes._shapes_image(np.random.default_rng(i), SIZE, shapes.STYLES["hard"])
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


def test_clean_style_draws_targets_only_on_a_quieter_background(monkeypatch):
    drawn: list[str] = []
    original = shapes._shape_region

    def recording(kind, *args):
        drawn.append(kind)
        return original(kind, *args)

    monkeypatch.setattr(shapes, "_shape_region", recording)
    hard, clean = [], []
    for i in range(16):
        drawn.clear()
        image, mask = shapes._shapes_image(np.random.default_rng(i), SIZE, shapes.STYLES["clean"])
        assert drawn and set(drawn) <= set(shapes._SHAPES_TARGETS)  # no distractor
        assert mask.any()
        clean.append(image[mask == 0].astype(float).std(0).mean())
        hard_image, hard_mask = shapes._shapes_image(np.random.default_rng(i), SIZE,
                                                      shapes.STYLES["hard"])
        hard.append(hard_image[hard_mask == 0].astype(float).std(0).mean())
    assert np.mean(clean) < np.mean(hard)  # halved texture, less noise and lighting


def test_style_is_an_option_and_part_of_the_cache_key(tmp_path):
    opts = {"n_train": 2, "n_val": 1}
    _, hard = load_dataset(DataSpec("shapes", image_size=SIZE, options={**opts, "style": "hard"}),
                           tmp_path)
    _, clean = load_dataset(DataSpec("shapes", image_size=SIZE,
                                     options={**opts, "style": "clean"}), tmp_path)
    assert DataSpec("shapes", options=opts).options["style"] == "clean"  # the default
    assert not np.array_equal(hard["train"].images, clean["train"].images)
    assert len(list(tmp_path.glob("*.npz"))) == 4
    try:
        DataSpec("shapes", options={"style": "easy"})
    except ValueError as exc:
        assert "style='easy' is not allowed; allowed: hard or clean" in str(exc)
    else:
        raise AssertionError("style='easy' was accepted")
