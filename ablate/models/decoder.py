"""U-Net decoder: stages that upsample x2, fuse one encoder skip, and refine with a block.

The decoder reads only the encoder's contract (``ablate.models.encoders.contract``): the
features' channels and strides. Starting from the deepest feature ``e{n-1}``, stage ``i`` (from
1) doubles the resolution and fuses ``e{n-1-i}``, the feature at its new stride, when that skip
is kept; stages past the shallowest feature have no skip, and the last allowed stage reaches full
resolution (ResNet: e3 at 1/16 .. e0 at 1/2, then a fifth stage at 1/1; the U-Net encoder: e3 at
1/8 .. e0 at 1/1, four stages). ``output_stride`` says where the last stage stops.

Each knob value here is one registered function:
    BLOCKS     (in_channels, out_channels) -> refine module
    UPSAMPLES  (channels) -> x2 upsampling module; a module with ``out_channels`` (a transposed
               convolution) outputs that many channels, any other keeps ``channels``
    FUSIONS    (channels, skip_channels) -> module ``(x, skip) -> fused`` with ``out_channels``
"""

from __future__ import annotations

import torch
from torch import nn

from ..common.registry import Registry
from .encoders.contract import Contract
from .layers import conv_bn_relu, double_conv

BLOCKS: Registry = Registry("block")
UPSAMPLES: Registry = Registry("upsample")
FUSIONS: Registry = Registry("fusion")


@BLOCKS.register("conv", token="cv")
def conv_block(in_ch: int, out_ch: int) -> nn.Module:
    """3x3 conv-BN-ReLU twice (the U-Net block), convolutions without bias."""
    return double_conv(in_ch, out_ch)


@BLOCKS.register("conv_bias", token="cvb")
def conv_bias_block(in_ch: int, out_ch: int) -> nn.Module:
    """3x3 conv-BN-ReLU twice, convolutions with bias (seed 001's DoubleConv)."""
    return double_conv(in_ch, out_ch, bias=True)


@BLOCKS.register("dsconv", token="ds")
def dsconv_block(in_ch: int, out_ch: int) -> nn.Module:
    """depthwise 3x3 then pointwise 1x1, each with BN-ReLU (seed 002's refine block)."""
    return nn.Sequential(*conv_bn_relu(in_ch, in_ch, 3, groups=in_ch),
                         *conv_bn_relu(in_ch, out_ch, 1))


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


@UPSAMPLES.register("transpose_half", token="trh")
def transpose_half(channels: int) -> nn.Module:
    """ConvTranspose2d 2x2 stride 2 to half the channels (the U-Net paper's, seed 001's up-conv)."""
    return nn.ConvTranspose2d(channels, max(1, channels // 2), 2, stride=2)


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
        up_ch = getattr(self.up, "out_channels", in_ch)
        self.fuse = FUSIONS.get(fusion)(up_ch, skip_ch) if skip_ch else None
        self.block = BLOCKS.get(block)(self.fuse.out_channels if self.fuse else up_ch, width)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.up(x)
        if self.fuse is not None:
            x = self.fuse(x, skip)
        return self.block(x)


class UNetDecoder(nn.Module):
    """Stages from the deepest feature up (see the module docstring); ``output_stride`` is the
    stride the last stage reaches (1: full resolution)."""

    def __init__(self, contract: Contract, widths: tuple[int, ...], skips: tuple[str, ...],
                 block: str, upsample: str, fusion: str) -> None:
        super().__init__()
        if not 1 <= len(widths) <= contract.max_stages:
            raise ValueError(f"{len(widths)} decoder stages do not fit an encoder whose deepest "
                             f"feature is at 1/{contract.output_stride}; allowed: 1 to "
                             f"{contract.max_stages}")
        unknown = [s for s in skips if s not in contract.skips]
        unreached = [s for s in skips if s in contract.skips and contract.stage_of(s) > len(widths)]
        if unknown or unreached:
            reached = [s for s in contract.skips if contract.stage_of(s) <= len(widths)]
            raise ValueError(f"skips {unknown + unreached} are not fused by {len(widths)} stages "
                             f"of this encoder's decoder; allowed: {', '.join(reached) or 'none'}")
        deepest = len(contract.channels) - 1
        self.levels = [deepest - i for i in range(1, len(widths) + 1)]  # < 0: past e0, no skip
        in_ch = contract.channels[-1]
        stages = []
        for level, width in zip(self.levels, widths):
            skip_ch = contract.channels[level] if f"e{level}" in skips else None
            stages.append(DecoderStage(in_ch, skip_ch, width, block, upsample, fusion))
            in_ch = width
        self.stages = nn.ModuleList(stages)
        self.out_channels = in_ch
        self.output_stride = contract.output_stride >> len(widths)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for stage, level in zip(self.stages, self.levels):
            x = stage(x, features[level] if stage.fuse is not None else None)
        return x
