"""The model factory: a ``Variant`` in, a plain ``nn.Module`` out (encoder + decoder + head)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..common.checks import is_int, not_allowed
from .decoder import UNetDecoder
from .encoders import Contract, build_encoder
from .head import build_heads
from .variant import Variant


class SegmentationModel(nn.Module):
    """An encoder from the registry, the U-Net decoder and a 1x1 head; logits have the input's
    height and width.

    Inputs of any size work: they are zero-padded on the bottom and right to a multiple of the
    encoder's output stride (32 for ResNets, 16 for the U-Net encoder) and the logits are cropped
    back. When the decoder stops above full resolution (``decoder.output_stride > 1``: fewer
    stages than the encoder's strides allow) the head's logits are bilinearly upsampled to the
    input size.

    Deep supervision (``variant.deep_supervision``): a 1x1 auxiliary head on every decoder stage
    but the last (which has the main head). In training mode the forward returns a tuple of
    logits, the main head's first, then the stages upward from the last (each coarser one
    next), every one bilinearly upsampled to the input size; the training loss weights them
    (``ablate.training.losses.deep_supervision_weights``). In eval mode it returns the main
    head's logits alone, so evaluation, latency and the profile see the final head only.
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
        # no auxiliary heads: a plain None attribute, so no state_dict key of today's models moves
        self.head, self.aux_heads = build_heads(self.decoder.out_channels, num_classes,
                                                variant.widths, **variant.reaching("head"))

    @property
    def profile_note(self) -> str:
        """What a profile of this model (eval mode, one forward) leaves out."""
        notes = []
        if self.aux_heads:
            params = sum(p.numel() for p in self.aux_heads.parameters())
            notes.append(f"deep supervision: {len(self.aux_heads)} auxiliary 1x1 heads ({params} "
                         "params, counted) run in training only; MACs and latency are of the "
                         "final head alone")
        unrun = self.decoder.unrun
        if unrun:
            params = sum(p.numel() for m in unrun for p in m.parameters())
            notes.append(f"attention: {len(unrun)} module(s) on decoder stages without a skip "
                         f"({params} params, counted) never run, as in smp's U-Net decoder")
        return "; ".join(notes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        h, w = x.shape[-2:]
        stride = self.encoder.output_stride
        pad_h, pad_w = -h % stride, -w % stride
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        features = self.encoder(x)
        if self.aux_heads and self.training:
            stages = self.decoder(features, every_stage=True)
            logits = [self.head(stages[-1])]
            logits += [head(s) for head, s in zip(reversed(self.aux_heads), stages[-2::-1])]
            return tuple(self._to_input(out, x, h, w) for out in logits)
        return self._to_input(self.head(self.decoder(features)), x, h, w)

    @staticmethod
    def _to_input(logits: torch.Tensor, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Logits at the (padded) input's size, cropped to the original ``h`` x ``w``."""
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
