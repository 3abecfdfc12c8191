"""Small building blocks shared by encoders and the decoder."""

from __future__ import annotations

from torch import nn


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int, groups: int = 1,
                 bias: bool = False) -> list[nn.Module]:
    """A same-padded convolution, BatchNorm and ReLU, as a list to splice into a Sequential."""
    return [
        nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, groups=groups, bias=bias),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    ]


def double_conv(in_ch: int, out_ch: int, bias: bool = False) -> nn.Sequential:
    """3x3 conv-BN-ReLU twice: the U-Net block (seed 001's ``DoubleConv`` with ``bias=True``)."""
    return nn.Sequential(*conv_bn_relu(in_ch, out_ch, 3, bias=bias),
                         *conv_bn_relu(out_ch, out_ch, 3, bias=bias))
