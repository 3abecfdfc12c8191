"""The model factory: a ``Variant`` in, a plain ``nn.Module`` out (encoder + decoder + head)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..common.checks import is_int, not_allowed
from .decoder import UNetDecoder
from .encoders import Contract, build_encoder
from .variant import Variant


class SegmentationModel(nn.Module):
    """An encoder from the registry, the U-Net decoder and a 1x1 head; logits have the input's
    height and width.

    Inputs of any size work: they are zero-padded on the bottom and right to a multiple of the
    encoder's output stride (32 for ResNets, 16 for the U-Net encoder) and the logits are cropped
    back. When the decoder stops above full resolution (``decoder.output_stride > 1``: fewer
    stages than the encoder's strides allow) the head's logits are bilinearly upsampled to the
    input size.
    """

    def __init__(self, variant: Variant, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.variant = variant
        self.num_classes = num_classes
        # each knob reaches the builder its registration names (``Knob.reaches``)
        encoder_knobs = variant.reaching("encoder")
        self.encoder = build_encoder(encoder_knobs.pop("encoder"), in_channels, **encoder_knobs)
        contract = Contract(self.encoder.out_channels, self.encoder.strides)
        self.decoder = UNetDecoder(contract, **variant.reaching("decoder"))
        self.head = nn.Conv2d(self.decoder.out_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        stride = self.encoder.output_stride
        pad_h, pad_w = -h % stride, -w % stride
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        logits = self.head(self.decoder(self.encoder(x)))
        if logits.shape[-2:] != x.shape[-2:]:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., :h, :w]


def build_model(variant: Variant, num_classes: int, in_channels: int = 3) -> SegmentationModel:
    """Build the model a variant describes.

    ``num_classes`` is the number of output channels: 1 for a binary task (one sigmoid logit),
    C for C-class softmax. ``in_channels`` comes from the dataset.
    """
    if not isinstance(variant, Variant):
        raise TypeError(f"build_model needs an ablate.Variant, got {type(variant).__name__}")
    for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if not is_int(value) or value < 1:
            raise not_allowed(name, value, "a positive integer")
    return SegmentationModel(variant, num_classes, in_channels)
