"""Tests for ablate.samples: the per-run picture, drawn without touching pyplot's global state."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ablate.analysis.samples import colorize, save_samples
from ablate.data import IGNORE, DatasetInfo, DataSpec, Split, load_dataset
from ablate.models.model import build_model
from ablate.models.variant import Variant


def test_save_samples_draws_one_row_per_sample(tmp_path):
    info, splits = load_dataset(DataSpec("shapes", image_size=32,
                                         options={"n_train": 2, "n_val": 3}), cache_dir=None)
    model = build_model(Variant(widths=(16, 8), skips=("e2", "e3")), info.model_outputs)
    path = save_samples(model, splits["val"], info, tmp_path / "s" / "samples.png", n=5)
    width, height = Image.open(path).size
    assert (width, height) == (6 * 80, 2 * 3 * 80)  # 3 samples (all there are) x 3 panels, 80 dpi


def test_colorize_uses_the_palette_and_paints_ignore_white():
    info, _ = load_dataset(DataSpec("shapes", image_size=32, options={"n_train": 2, "n_val": 2}),
                           cache_dir=None)
    mask = np.array([[0, 1]], np.uint8)
    rgb = colorize(mask, info)
    assert rgb.tolist() == [[list(info.palette[0]), list(info.palette[1])]]


def _info(ignore_index):
    return DatasetInfo("tiny", num_classes=3, in_channels=3, ignore_index=ignore_index,
                       class_names=("background", "a", "b"),
                       palette=((0, 0, 0), (200, 10, 10), (10, 200, 10)))


def test_colorize_paints_ignore_pixels_white_and_classes_with_the_palette():
    mask = np.array([[0, 1, IGNORE], [2, IGNORE, 0]], np.uint8)
    white, black = [255, 255, 255], [0, 0, 0]
    rgb = colorize(mask, _info(IGNORE))
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    assert rgb.tolist() == [[black, [200, 10, 10], white], [[10, 200, 10], white, black]]
    # without an ignore index, 255 is no class of the palette: not painted white
    assert colorize(mask, _info(None))[0, 2].tolist() == black


def test_save_samples_draws_a_split_with_ignore_pixels(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    masks = rng.integers(0, 3, (2, 32, 32), dtype=np.uint8)
    masks[:, :4] = IGNORE  # an unlabelled border, as VOC has
    info = _info(IGNORE)
    model = build_model(Variant(widths=(16, 8), skips=("e2", "e3")), info.model_outputs)
    path = save_samples(model, Split(images, masks), info, tmp_path / "samples.png", n=2)
    assert Image.open(path).size == (6 * 80, 2 * 2 * 80)


@pytest.mark.slow
def test_drawing_samples_leaves_the_matplotlib_backend_alone(tmp_path):
    code = (
        "import matplotlib; matplotlib.use('svg')\n"
        "from ablate.data import IGNORE, DatasetInfo, DataSpec, Split, load_dataset\n"
        "from ablate.models.model import build_model\n"
        "from ablate.analysis.samples import save_samples\n"
        "from ablate.models.variant import Variant\n"
        "info, s = load_dataset(DataSpec('shapes', image_size=32, options={'n_train': 2, "
        "'n_val': 2}), cache_dir=None)\n"
        "m = build_model(Variant(widths=(16, 8), skips=('e2', 'e3')), info.model_outputs)\n"
        "from pathlib import Path\n"
        f"save_samples(m, s['val'], info, Path({str(tmp_path)!r}) / 'x.png')\n"
        "print(matplotlib.get_backend())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "svg"
