"""Small building blocks shared by encoders and the decoder, and the ``norm`` and ``act`` values.

Each value of the ``norm`` and ``act`` knobs is one registered function (token: its id token,
empty for the default, which keeps every existing id):
    NORMS  (channels) -> normalisation module, or None for no normalisation (the convolution
           before it then keeps its bias)
    ACTS   () -> activation module
Encoders keep BatchNorm and ReLU; the knobs reach the decoder only.
"""

from __future__ import annotations

from torch import nn

from ..common.registry import Registry

NORMS: Registry = Registry("norm", unique=("token",))
ACTS: Registry = Registry("act", unique=("token",))

#: GroupNorm's ceiling on the group count (Wu & He 2018 use 32 groups).
MAX_GROUPS = 32


def gn_groups(channels: int) -> int:
    """GroupNorm groups for ``channels``: the largest divisor of ``channels`` not above 32, so
    every width is valid (32 for multiples of 32; 45 -> 15, 90 -> 30, 7 -> 7)."""
    return max(g for g in range(1, min(channels, MAX_GROUPS) + 1) if channels % g == 0)


@NORMS.register("bn", token="")
def batch_norm(channels: int) -> nn.Module:
    """BatchNorm2d (today's decoder; the default)."""
    return nn.BatchNorm2d(channels)


@NORMS.register("gn", token="gn", help="GroupNorm, groups = the largest divisor of the width "
                "not above 32 (32 for multiples of 32; 45 -> 15, 90 -> 30, 8 -> 8), so every "
                "width is valid; affine, 2 params per channel like BN")
def group_norm(channels: int) -> nn.Module:
    """GroupNorm over :func:`gn_groups` groups, affine."""
    return nn.GroupNorm(gn_groups(channels), channels)


@NORMS.register("in", token="in")
def instance_norm(channels: int) -> nn.Module:
    """InstanceNorm2d with affine weight and bias (2 params per channel), no running stats."""
    return nn.InstanceNorm2d(channels, affine=True)


@NORMS.register("none", token="nx")
def no_norm(channels: int) -> None:
    """no normalisation; the convolutions keep their bias (1 param per channel instead of 2)."""
    return None


@ACTS.register("relu", token="")
def relu() -> nn.Module:
    """ReLU (today's decoder; the default)."""
    return nn.ReLU(inplace=True)


@ACTS.register("gelu", token="gelu")
def gelu() -> nn.Module:
    """GELU (exact, erf form)."""
    return nn.GELU()


@ACTS.register("silu", token="silu")
def silu() -> nn.Module:
    """SiLU / swish, x * sigmoid(x)."""
    return nn.SiLU(inplace=True)


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int, groups: int = 1, bias: bool = False,
                 norm: str = "bn", act: str = "relu") -> list[nn.Module]:
    """A same-padded convolution, a normalisation and an activation, as a list to splice into a
    Sequential (BatchNorm and ReLU by default). ``norm="none"``: no normalisation layer, and the
    convolution keeps its bias."""
    norm_layer = NORMS.get(norm)(out_ch)
    conv = nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, groups=groups,
                     bias=bias or norm_layer is None)
    return [conv, *([norm_layer] if norm_layer is not None else []), ACTS.get(act)()]


def double_conv(in_ch: int, out_ch: int, bias: bool = False, norm: str = "bn",
                act: str = "relu") -> nn.Sequential:
    """3x3 conv-BN-ReLU twice: the U-Net block (seed 001's ``DoubleConv`` with ``bias=True``)."""
    return nn.Sequential(*conv_bn_relu(in_ch, out_ch, 3, bias=bias, norm=norm, act=act),
                         *conv_bn_relu(out_ch, out_ch, 3, bias=bias, norm=norm, act=act))
