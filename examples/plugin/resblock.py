"""An example ``ablate`` plugin: a residual decoder block and a dropout knob for it.

Load it with ``plugins: [examples/plugin/resblock.py]`` in an experiment or search file, or
``--plugin examples/plugin/resblock.py`` on the command line. Importing it makes two one-line
registrations, the same ones the package uses for its own blocks and knobs:

- ``block: res`` (id token ``rs``): two 3x3 conv-norm, an activation between them and after
  the sum, and a shortcut: the identity when the block keeps the channels, else a 1x1 conv-norm
  projection (He et al. 2016's basic block with option B shortcuts). It honours the variant's
  ``norm`` and ``act`` like the built-in blocks (``norm: none``: convolutions keep their bias).
- ``dropout`` (default ``0``, no id token; ``0.1`` -> token ``do10``): channel dropout
  (``Dropout2d``) between the block's two convolutions, as Wide ResNets place it (Zagoruyko &
  Komodakis 2016). It reaches the decoder's block builder, so only blocks that take a
  ``dropout`` argument (here, ``res``) accept a value other than 0 (a variant pairing it with
  another block is refused when it is made). At 0 it adds no module and
  no token: every existing variant, id and run key stays what it was.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ablate.models.decoder import BLOCKS
from ablate.models.layers import ACTS, NORMS
from ablate.models.variant import Knob, register_knob

__version__ = "0.1.0"

#: The dropout values allowed: 0 to 0.5 in steps of 0.05 (the token is the percentage).
DROPOUT_STEP, DROPOUT_MAX = 0.05, 0.5
DROPOUT_LEVELS = tuple(i / 20 for i in range(11))  # 0, 0.05, ..., 0.5


def _conv_norm(in_ch: int, out_ch: int, kernel: int, norm: str) -> nn.Sequential:
    """A same-padded conv and the ``norm`` knob's layer (none: the conv keeps its bias)."""
    norm_layer = NORMS.get(norm)(out_ch)
    conv = nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=norm_layer is None)
    return nn.Sequential(conv, *([norm_layer] if norm_layer is not None else []))


class ResBlock(nn.Module):
    """``act(conv_norm(act(conv_norm(x)) [dropout]) + shortcut(x))``; see the module docstring."""

    def __init__(self, in_ch: int, out_ch: int, norm: str = "bn", act: str = "relu",
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.conv1 = _conv_norm(in_ch, out_ch, 3, norm)
        self.act1 = ACTS.get(act)()
        self.drop = nn.Dropout2d(dropout) if dropout else nn.Identity()
        self.conv2 = _conv_norm(out_ch, out_ch, 3, norm)
        self.shortcut = nn.Identity() if in_ch == out_ch else _conv_norm(in_ch, out_ch, 1, norm)
        self.act2 = ACTS.get(act)()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.drop(self.act1(self.conv1(x))))
        return self.act2(out + self.shortcut(x))


@BLOCKS.register("res", token="rs", help="residual block (resblock plugin): 3x3 conv-norm-act, "
                 "3x3 conv-norm, + identity or 1x1 conv-norm shortcut, act; takes dropout")
def res_block(in_ch: int, out_ch: int, norm: str = "bn", act: str = "relu",
              dropout: float = 0.0) -> nn.Module:
    """A :class:`ResBlock`; ``dropout`` comes from the plugin's knob, only when it is set."""
    return ResBlock(in_ch, out_ch, norm=norm, act=act, dropout=dropout)


def _parse_dropout(value: Any) -> float:
    allowed = f"0 to {DROPOUT_MAX} in steps of {DROPOUT_STEP}, e.g. 0, 0.1, 0.2"
    try:
        p = float(value)
    except (TypeError, ValueError):
        p = None
    if isinstance(value, bool) or p is None or round(p, 2) not in DROPOUT_LEVELS:
        raise ValueError(f"dropout={value!r} is not allowed; allowed: {allowed}")
    return round(p, 2)


def _dropout_token(p: float) -> str:
    return f"do{round(p * 100)}" if p else ""


def _dropout_untoken(token: str) -> float:
    if not token.startswith("do") or not token[2:].isdigit():
        raise ValueError(f"dropout token {token!r} is not do<percent>, e.g. do10")
    return _parse_dropout(int(token[2:]) / 100)


register_knob(Knob(
    "dropout", "Dropout2d between the two convolutions of a decoder block that takes it (the "
    "resblock plugin's res block), as in Wide ResNets; 0: none",
    f"0 to {DROPOUT_MAX} in steps of {DROPOUT_STEP}", _parse_dropout, _dropout_token,
    _dropout_untoken, default=0.0, reaches="decoder", text=lambda p: f"{p:g}",
    levels=lambda: DROPOUT_LEVELS,
    choices=lambda: ["0 (no token): no dropout, the default",
                     "0.05 .. 0.5 (do5 .. do50): channel dropout with that probability"]))
