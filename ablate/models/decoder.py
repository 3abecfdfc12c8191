"""U-Net decoder: stages that upsample x2, fuse one encoder skip, and refine with a block.

The decoder reads only the encoder's contract (``ablate.models.encoders.contract``): the
features' channels and strides. Starting from the deepest feature ``e{n-1}``, stage ``i`` (from
1) doubles the resolution and fuses ``e{n-1-i}``, the feature at its new stride, when that skip
is kept; stages past the shallowest feature have no skip, and the last allowed stage reaches full
resolution (ResNet: e3 at 1/16 .. e0 at 1/2, then a fifth stage at 1/1; the U-Net encoder: e3 at
1/8 .. e0 at 1/1, four stages). ``output_stride`` says where the last stage stops.

Each knob value here is one registered function:
    BLOCKS     (in_channels, out_channels, norm, act, **options) -> refine module; ``norm`` and
               ``act`` are names in ``layers.NORMS`` / ``layers.ACTS`` (the ``norm`` and ``act``
               knobs); ``options``: the values of knobs reaching the decoder that ``UNetDecoder``
               does not name (a plugin's), given only when set, and only to a block that takes
               them (``check_block_options``: a ``Variant`` refuses the others when it is made,
               ``UNetDecoder`` again when built)
    UPSAMPLES  (channels) -> x2 upsampling module; a module with ``out_channels`` (a transposed
               convolution) outputs that many channels, any other keeps ``channels``
    FUSIONS    (channels, skip_channels, norm) -> module ``(x, skip) -> fused`` with
               ``out_channels``
    ATTENTIONS (channels, skip_channels or None, fused_channels, out_channels) ->
               ``StageAttention``: modules a stage runs at three points, each optional: ``gate``
               ``(skip, upsampled) -> skip`` before fusion (only where a skip is fused),
               ``fused`` on the fused features (run only where a skip is fused; a value may
               build it on a stage without one too, never run there, to mirror a reference
               implementation's parameters: ``UNetDecoder.unrun``), ``out`` on the block's
               output

A stage: upsample; if it has a skip: gate the skip, fuse, attend the fused features; refine with
the block; attend the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..common.checks import refuse_untaken
from ..common.registry import Registry
from .encoders.contract import Contract
from .layers import NORMS, conv_bn_relu, double_conv

BLOCKS: Registry = Registry("block", unique=("token",))
UPSAMPLES: Registry = Registry("upsample", unique=("token",))
FUSIONS: Registry = Registry("fusion", unique=("token",))
ATTENTIONS: Registry = Registry("attention", unique=("token",))

#: scSE's channel reduction (smp's ``SCSEModule`` default, Roy et al. 2018).
SCSE_REDUCTION = 16


@BLOCKS.register("conv", token="cv")
def conv_block(in_ch: int, out_ch: int, norm: str = "bn", act: str = "relu") -> nn.Module:
    """3x3 conv-BN-ReLU twice (the U-Net block), convolutions without bias."""
    return double_conv(in_ch, out_ch, norm=norm, act=act)


@BLOCKS.register("conv_bias", token="cvb")
def conv_bias_block(in_ch: int, out_ch: int, norm: str = "bn", act: str = "relu") -> nn.Module:
    """3x3 conv-BN-ReLU twice, convolutions with bias (seed 001's DoubleConv)."""
    return double_conv(in_ch, out_ch, bias=True, norm=norm, act=act)


@BLOCKS.register("dsconv", token="ds")
def dsconv_block(in_ch: int, out_ch: int, norm: str = "bn", act: str = "relu") -> nn.Module:
    """depthwise 3x3 then pointwise 1x1, each with BN-ReLU (seed 002's refine block)."""
    return nn.Sequential(*conv_bn_relu(in_ch, in_ch, 3, groups=in_ch, norm=norm, act=act),
                         *conv_bn_relu(in_ch, out_ch, 1, norm=norm, act=act))


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

    def __init__(self, channels: int, skip_channels: int, norm: str = "bn") -> None:
        super().__init__()
        self.out_channels = channels + skip_channels

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, skip], dim=1)


class Add(nn.Module):
    """Add the skip to the upsampled features; a 1x1 conv + BN (the ``norm`` knob's; none: a
    conv with bias) projects it when widths differ."""

    def __init__(self, channels: int, skip_channels: int, norm: str = "bn") -> None:
        super().__init__()
        self.out_channels = channels
        if skip_channels == channels:
            self.proj = nn.Identity()
        else:
            norm_layer = NORMS.get(norm)(channels)
            conv = nn.Conv2d(skip_channels, channels, 1, bias=norm_layer is None)
            self.proj = nn.Sequential(conv, *([norm_layer] if norm_layer is not None else []))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return x + self.proj(skip)


FUSIONS.register("concat", token="cat", help="concatenate skip and features (U-Net)")(Concat)
FUSIONS.register("add", token="add",
                 help="add the skip; 1x1 conv + BN projection when channels differ")(Add)


class SCSE(nn.Module):
    """Concurrent spatial and channel squeeze-and-excitation (Roy et al. 2018), as smp's
    ``SCSEModule``: ``x * cSE(x) + x * sSE(x)``; cSE: global average pool, 1x1 conv C -> C/16,
    ReLU, 1x1 conv -> C, sigmoid; sSE: 1x1 conv C -> 1, sigmoid; every conv with bias. The
    hidden width is ``max(1, C // 16)`` (smp's ``C // 16`` is 0, an error, below 16 channels)."""

    def __init__(self, channels: int, reduction: int = SCSE_REDUCTION) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.cSE = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1),
                                 nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1),
                                 nn.Sigmoid())
        self.sSE = nn.Sequential(nn.Conv2d(channels, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.cSE(x) + x * self.sSE(x)


class AttentionGate(nn.Module):
    """Attention U-Net's additive attention gate on one skip (Oktay et al. 2018, eq. 1-2):
    ``skip * sigmoid(psi(relu(W_x skip + W_g g + b_g)) + b_psi)``, ``g`` the gating signal.

    ``W_x``: 1x1 conv skip -> F_int without bias, ``W_g``: 1x1 conv g -> F_int with bias
    ``b_g``, ``psi``: 1x1 conv F_int -> 1 with bias ``b_psi``; F_int = ``max(1, skip // 2)``.
    The gating signal is the decoder's features after this stage's upsampling, so ``g`` and
    the skip share a grid and no resampling of the coefficients is needed (the 2-D
    implementations' choice; the paper gates with the coarser features and resamples).
    """

    def __init__(self, skip_channels: int, gate_channels: int) -> None:
        super().__init__()
        inter = max(1, skip_channels // 2)
        self.w_x = nn.Conv2d(skip_channels, inter, 1, bias=False)
        self.w_g = nn.Conv2d(gate_channels, inter, 1)
        self.psi = nn.Conv2d(inter, 1, 1)

    def forward(self, skip: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return skip * torch.sigmoid(self.psi(torch.relu(self.w_x(skip) + self.w_g(g))))


@dataclass
class StageAttention:
    """What an attention value adds to one decoder stage (see the module docstring)."""

    gate: nn.Module | None = None
    fused: nn.Module | None = None
    out: nn.Module | None = None


@ATTENTIONS.register("none", token="")
def no_attention(channels: int, skip_ch: int | None, fused_ch: int, out_ch: int
                 ) -> StageAttention:
    """no attention (today's decoder; the default)."""
    return StageAttention()


@ATTENTIONS.register("scse", token="scse", help="concurrent spatial and channel squeeze-and-"
                     "excitation (scSE, reduction 16) where smp's U-Net decoder puts it: on the "
                     "fused features of a stage with a skip, and on every stage's output; like "
                     "smp, a stage without a skip builds the first one too and never runs it "
                     "(its params are counted, and the profile says so)")
def scse_attention(channels: int, skip_ch: int | None, fused_ch: int, out_ch: int
                   ) -> StageAttention:
    """scSE on every stage's fused features and output, as smp's ``DecoderBlock`` builds its
    ``attention1`` and ``attention2``: the first runs only where a skip is fused, so the
    parameters, and the parameter delta over ``none``, are smp's exactly."""
    return StageAttention(fused=SCSE(fused_ch), out=SCSE(out_ch))


@ATTENTIONS.register("gate", token="ag", help="Attention U-Net's additive attention gate "
                     "(Oktay et al. 2018) on each fused skip: W_x on the skip, W_g on the "
                     "upsampled decoder features, ReLU, psi 1x1 + sigmoid, times the skip; "
                     "F_int = skip channels // 2")
def gate_attention(channels: int, skip_ch: int | None, fused_ch: int, out_ch: int
                   ) -> StageAttention:
    """An :class:`AttentionGate` on the skip of every stage that fuses one."""
    return StageAttention(gate=AttentionGate(skip_ch, channels) if skip_ch else None)


class DecoderStage(nn.Module):
    """Upsample x2; with a skip: gate it, fuse it, attend the fused features; refine with the
    block; attend the output (the attention points a value leaves empty are skipped)."""

    def __init__(self, in_ch: int, skip_ch: int | None, width: int, block: str,
                 upsample: str, fusion: str, norm: str = "bn", act: str = "relu",
                 attention: str = "none", **block_options: Any) -> None:
        super().__init__()
        self.up = UPSAMPLES.get(upsample)(in_ch)
        up_ch = getattr(self.up, "out_channels", in_ch)
        self.fuse = FUSIONS.get(fusion)(up_ch, skip_ch, norm=norm) if skip_ch else None
        fused_ch = self.fuse.out_channels if self.fuse else up_ch
        self.block = BLOCKS.get(block)(fused_ch, width, norm=norm, act=act, **block_options)
        # absent points stay plain None attributes: no state_dict key of today's models moves
        parts = ATTENTIONS.get(attention)(up_ch, skip_ch, fused_ch, width)
        self.gate, self.attend_fused, self.attend_out = parts.gate, parts.fused, parts.out

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.up(x)
        if self.fuse is not None:
            if self.gate is not None:
                skip = self.gate(skip, x)
            x = self.fuse(x, skip)
            if self.attend_fused is not None:
                x = self.attend_fused(x)
        x = self.block(x)
        if self.attend_out is not None:
            x = self.attend_out(x)
        return x


class UNetDecoder(nn.Module):
    """Stages from the deepest feature up (see the module docstring); ``output_stride`` is the
    stride the last stage reaches (1: full resolution). The keyword-only arguments are the knobs
    the decoder names; ``block_options`` go to every stage's block builder (knobs a plugin added;
    see ``BLOCKS`` in the module docstring)."""

    def __init__(self, contract: Contract, *, widths: tuple[int, ...], skips: tuple[str, ...],
                 block: str, upsample: str, fusion: str, norm: str = "bn",
                 act: str = "relu", attention: str = "none", **block_options: Any) -> None:
        super().__init__()
        check_block_options(block, block_options)
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
            stages.append(DecoderStage(in_ch, skip_ch, width, block, upsample, fusion, norm, act,
                                       attention, **block_options))
            in_ch = width
        self.stages = nn.ModuleList(stages)
        self.out_channels = in_ch
        self.output_stride = contract.output_stride >> len(widths)

    @property
    def unrun(self) -> list[nn.Module]:
        """Attention modules built on stages without a skip, which never run there."""
        return [s.attend_fused for s in self.stages
                if s.fuse is None and s.attend_fused is not None]

    def forward(self, features: list[torch.Tensor], every_stage: bool = False
                ) -> torch.Tensor | list[torch.Tensor]:
        """The last stage's output, or (``every_stage``) each stage's, deepest first."""
        x, outputs = features[-1], []
        for stage, level in zip(self.stages, self.levels):
            x = stage(x, features[level] if stage.fuse is not None else None)
            outputs.append(x)
        return outputs if every_stage else x


def check_block_options(block: str, options: dict[str, Any]) -> None:
    """Refuse options (set knobs a plugin added) that block ``block``'s builder does not take,
    naming the blocks that take them."""
    builders = {name: BLOCKS.get(name) for name in BLOCKS}
    refuse_untaken(options, block, builders, "a decoder block", f"block {block}")
