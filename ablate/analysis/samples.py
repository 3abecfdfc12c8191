"""The per-run picture: image | ground truth | prediction for a few fixed validation samples.

Drawn on a ``matplotlib.figure.Figure``, never through ``pyplot`` (as in ``ablate.plots``): no
global backend is switched, so importing ablate leaves a notebook's plotting alone. matplotlib
is imported on first use, which keeps it out of every process that trains without samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data import IMAGENET_MEAN, IMAGENET_STD, DatasetInfo, Split
from ..evaluation.evaluate import predict_samples


def colorize(mask: np.ndarray, info: DatasetInfo) -> np.ndarray:
    """Class map -> RGB with the dataset's palette; ignore pixels white."""
    palette = np.zeros((256, 3), np.uint8)
    palette[: len(info.palette)] = np.array(info.palette, np.uint8)
    if info.ignore_index is not None:
        palette[info.ignore_index] = 255
    return palette[mask]


def save_samples(model: nn.Module, split: Split, info: DatasetInfo, path: Path, n: int = 4) -> Path:
    """Draw the first ``n`` samples of ``split`` (fixed, so runs are comparable) to ``path``."""
    n = min(n, len(split))
    images = torch.from_numpy(split.images[:n].copy()).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(IMAGENET_MEAN).view(1, -1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, -1, 1, 1)
    preds = predict_samples(model, (images - mean) / std).numpy()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 2 * n))
    axes = fig.subplots(n, 3, squeeze=False)
    for i in range(n):
        for ax, img, title in zip(axes[i], (split.images[i], colorize(split.masks[i], info),
                                            colorize(preds[i].astype(np.uint8), info)),
                                  ("image", "ground truth", "prediction")):
            ax.imshow(img, interpolation="nearest")
            ax.set_axis_off()
            if i == 0:
                ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path
