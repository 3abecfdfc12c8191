"""The heads on the decoder: the 1x1 head to the classes, and deep supervision's auxiliary heads.

``build_heads`` is the heads' one builder: its positional arguments come from the model, its
keyword-only arguments are the knobs that reach the head (``Knob.reaches == "head"``). No knob
value picks another head builder, so a knob reaching the head must be one it names:
``register_knob`` refuses any other, which would otherwise be ignored.
"""

from __future__ import annotations

from torch import nn


def build_heads(in_channels: int, num_classes: int, widths: tuple[int, ...], *,
                deep_supervision: bool = False) -> tuple[nn.Conv2d, nn.ModuleList | None]:
    """The main head (a 1x1 conv from the last decoder stage's ``in_channels``), and with
    ``deep_supervision`` a 1x1 auxiliary head on every other stage (their ``widths``, deepest
    first); without it None. Built in that order, so a seed gives the same weights as ever."""
    head = nn.Conv2d(in_channels, num_classes, 1)
    aux = (nn.ModuleList(nn.Conv2d(w, num_classes, 1) for w in widths[:-1])
           if deep_supervision else None)
    return head, aux
