"""U-Net decoder: stages that upsample x2, fuse one encoder skip, and refine with a block.

The decoder reads only channel counts from the encoder (``encoder_channels``, the five values of
the encoder contract). Stage ``i`` works at stride ``16 / 2**i`` and fuses skip ``e{3-i}`` when it
is kept (e3 at 1/16, e2 at 1/8, e1 at 1/4, e0 at 1/2); a fifth stage reaches full resolution
and has no skip.

Each knob value here is one registered function:
    BLOCKS     (in_channels, out_channels) -> refine module
    UPSAMPLES  (channels) -> x2 upsampling module (channels unchanged)
    FUSIONS    (channels, skip_channels) -> module ``(x, skip) -> fused`` with ``out_channels``
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import Registry

BLOCKS: Registry = Registry("block")
UPSAMPLES: Registry = Registry("upsample")
FUSIONS: Registry = Registry("fusion")

SKIP_NAMES = ("e0", "e1", "e2", "e3")
MAX_STAGES = 5


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    ]


@BLOCKS.register("conv", token="cv")
def conv_block(in_ch: int, out_ch: int) -> nn.Module:
    """3x3 conv-BN-ReLU twice (the U-Net block)."""
    return nn.Sequential(*_conv_bn_relu(in_ch, out_ch, 3), *_conv_bn_relu(out_ch, out_ch, 3))


@BLOCKS.register("dsconv", token="ds")
def dsconv_block(in_ch: int, out_ch: int) -> nn.Module:
    """depthwise 3x3 then pointwise 1x1, each with BN-ReLU (seed 002's refine block)."""
    return nn.Sequential(*_conv_bn_relu(in_ch, in_ch, 3, groups=in_ch),
                         *_conv_bn_relu(in_ch, out_ch, 1))


@UPSAMPLES.register("bilinear", token="bil")
def bilinear(channels: int) -> nn.Module:
    """bilinear interpolation x2 (align_corners=False); no parameters."""
    return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)


@UPSAMPLES.register("nearest", token="nn")
def nearest(channels: int) -> nn.Module:
    """nearest-neighbour x2; no parameters."""
    return nn.Upsample(scale_factor=2, mode="nearest")


@UPSAMPLES.register("transpose", token="tr")
def transpose(channels: int) -> nn.Module:
    """ConvTranspose2d 2x2 stride 2, channels kept (learned upsampling)."""
    return nn.ConvTranspose2d(channels, channels, 2, stride=2)


class Concat(nn.Module):
    """Concatenate the skip after the upsampled features along channels."""

    def __init__(self, channels: int, skip_channels: int) -> None:
        super().__init__()
        self.out_channels = channels + skip_channels

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, skip], dim=1)


class Add(nn.Module):
    """Add the skip to the upsampled features; a 1x1 conv + BN projects it when widths differ."""

    def __init__(self, channels: int, skip_channels: int) -> None:
        super().__init__()
        self.out_channels = channels
        self.proj = (
            nn.Identity() if skip_channels == channels
            else nn.Sequential(nn.Conv2d(skip_channels, channels, 1, bias=False),
                               nn.BatchNorm2d(channels))
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return x + self.proj(skip)


FUSIONS.register("concat", token="cat", help="concatenate skip and features (U-Net)")(Concat)
FUSIONS.register("add", token="add",
                 help="add the skip; 1x1 conv + BN projection when channels differ")(Add)


class DecoderStage(nn.Module):
    """Upsample x2, fuse the skip (if any), refine."""

    def __init__(self, in_ch: int, skip_ch: int | None, width: int, block: str,
                 upsample: str, fusion: str) -> None:
        super().__init__()
        self.up = UPSAMPLES.get(upsample)(in_ch)
        self.fuse = FUSIONS.get(fusion)(in_ch, skip_ch) if skip_ch else None
        self.block = BLOCKS.get(block)(self.fuse.out_channels if self.fuse else in_ch, width)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.up(x)
        if self.fuse is not None:
            x = self.fuse(x, skip)
        return self.block(x)


class UNetDecoder(nn.Module):
    """Stages from the deepest feature (e4, stride 32) up; output stride 2**(5 - len(widths))."""

    def __init__(self, encoder_channels: tuple[int, ...], widths: tuple[int, ...],
                 skips: tuple[str, ...], block: str, upsample: str, fusion: str) -> None:
        super().__init__()
        self.levels = [3 - i for i in range(len(widths))]  # skip index per stage; -1: none
        in_ch = encoder_channels[4]
        stages = []
        for level, width in zip(self.levels, widths):
            skip_ch = encoder_channels[level] if f"e{level}" in skips else None
            stages.append(DecoderStage(in_ch, skip_ch, width, block, upsample, fusion))
            in_ch = width
        self.stages = nn.ModuleList(stages)
        self.out_channels = in_ch
        self.output_stride = 2 ** (MAX_STAGES - len(widths))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[4]
        for stage, level in zip(self.stages, self.levels):
            x = stage(x, features[level] if stage.fuse is not None else None)
        return x
