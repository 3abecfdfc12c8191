"""The U-Net family: seed 001's contracting path as an encoder.

A double 3x3 conv-BN-ReLU block per level (its convolutions keep their bias, as in seed 001's
``DoubleConv``), a 2x2 max-pool before every level but the first; the last level is the
bottleneck. Features ``e0..e4`` at strides 1, 2, 4, 8, 16, so the decoder's stage 4 is at full
resolution and a fifth stage is refused. ``unet`` has seed 001's widths (64 .. 1024); ``unet16``
a quarter of them (1/16 of the MACs), for CPU studies. No pool points: the 2x2 max-pools are the
architecture, so ``pool`` stays at its default.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..layers import double_conv
from .contract import ENCODERS, Contract, EncoderFamily

#: name: feature channels e0..e4 (the last is the bottleneck); the name is its own id token
UNETS = {
    "unet": (64, 128, 256, 512, 1024),
    "unet16": (16, 32, 64, 128, 256),
}
STRIDES = (1, 2, 4, 8, 16)


class UNetEncoder(nn.Module):
    """Seed 001's ``enc1..enc4`` and ``bottleneck`` with the max-pools between them."""

    strides = STRIDES
    output_stride = STRIDES[-1]

    def __init__(self, name: str = "unet", in_channels: int = 3,
                 pretrained: str | None = None) -> None:
        super().__init__()
        widths = UNETS[name]
        levels, previous = [], in_channels
        for level, width in enumerate(widths):
            pool = [nn.MaxPool2d(2)] if level else []
            levels.append(nn.Sequential(*pool, *double_conv(previous, width, bias=True)))
            previous = width
        self.levels = nn.ModuleList(levels)
        self.out_channels = widths
        if pretrained:
            _load_file(self, name, pretrained)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for level in self.levels:
            x = level(x)
            features.append(x)
        return features


def _load_file(encoder: nn.Module, name: str, spec: str) -> None:
    """Load a state_dict saved from this encoder (``model.encoder.state_dict()``)."""
    path = Path(spec).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file {str(path)!r} for {name} does not "
                                "exist; pass the path of a saved state_dict (ablate downloads "
                                "nothing)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        encoder.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"pretrained weights {str(path)!r} do not fit {name}: {exc}") from None


ENCODERS.register("unet", help="seed 001's U-Net encoder (double conv + max-pool); no pool "
                               "points", pools=None)(EncoderFamily(
    contract=lambda name: Contract(UNETS[name], STRIDES),
    build=UNetEncoder,
    weights=lambda name: (),
    names=tuple(UNETS),
    tokens=tuple(UNETS),
))
