"""The ResNet family: torchvision ResNets with a configurable downsampling ("pool") order.

Features ``e0..e4`` at strides 2, 4, 8, 16, 32: the stem (conv1 + BN + ReLU), then layer1..4.

Pool order: one letter per downsampling point after ``conv1``, in order the stem pool, the entry
of layer2, of layer3, of layer4. Letters not given keep ResNet's own choice (stem max-pool,
strided convolution in each stage's first block):

    M  max-pool     stem: 3x3 stride 2 (ResNet's); stage: 2x2 stride 2 before the stage
    A  avg-pool     stem: 3x3 stride 2;            stage: 2x2 stride 2 before the stage
    S  strided conv stem: 3x3 stride-2 conv + BN + ReLU; stage: ResNet's own strided block

When a stage downsamples with a pool, the pool comes first and the stage's first block,
shortcut included, runs at stride 1. Weights are loaded before the strides change, and a
stride does not change a weight's shape, so pretrained weights load for every pool order.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from ...common.registry import Registry
from .contract import ENCODERS, Contract, EncoderFamily, is_weights_file

POOLS: Registry = Registry("pool letter")

#: name: (id token, torchvision constructor, feature channels e0..e4)
RESNETS = {
    "resnet18": ("r18", torchvision.models.resnet18, (64, 64, 128, 256, 512)),
    "resnet34": ("r34", torchvision.models.resnet34, (64, 64, 128, 256, 512)),
    "resnet50": ("r50", torchvision.models.resnet50, (64, 256, 512, 1024, 2048)),
}
STRIDES = (2, 4, 8, 16, 32)


@POOLS.register("M")
def max_pool(channels: int, stem: bool) -> nn.Module:
    """max-pool (stem: 3x3 stride 2, ResNet's own; stage: 2x2 stride 2)."""
    return nn.MaxPool2d(3, 2, 1) if stem else nn.MaxPool2d(2, 2)


@POOLS.register("A")
def avg_pool(channels: int, stem: bool) -> nn.Module:
    """average-pool (stem: 3x3 stride 2; stage: 2x2 stride 2)."""
    return nn.AvgPool2d(3, 2, 1, count_include_pad=False) if stem else nn.AvgPool2d(2, 2)


@POOLS.register("S")
def strided_conv(channels: int, stem: bool) -> nn.Module | None:
    """strided convolution (stem: 3x3 stride-2 conv+BN+ReLU; stage: ResNet's strided block)."""
    if not stem:
        return None  # the stage keeps its own stride-2 first block
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, 2, 1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
    )


def weights_cache_path(encoder: str, weights_name: str) -> Path:
    """Where torchvision keeps a named weights entry's file (``$TORCH_HOME/hub/checkpoints``)."""
    weights = torchvision.models.get_model_weights(encoder)[weights_name]
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def load_pretrained(net: nn.Module, encoder: str, spec: str) -> None:
    """Load a state_dict into a torchvision ResNet; never downloads.

    ``spec`` is a local state_dict file, or a torchvision weights name (``IMAGENET1K_V1``) that
    must already be in the local torch cache. The classifier (``fc``) may be missing or differ.
    """
    if is_weights_file(spec):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"pretrained weights file {str(path)!r} for {encoder} does not exist; "
                "pass the path of a saved state_dict (ablate downloads nothing)"
            )
    else:
        path = weights_cache_path(encoder, spec)
        if not path.is_file():
            raise FileNotFoundError(
                f"pretrained={spec!r} for {encoder} is not in the local torch cache; "
                f"put the file at {path} (ablate downloads nothing)"
            )
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise ValueError(f"pretrained weights {str(path)!r} do not fit {encoder}: {exc}") from None
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise ValueError(
            f"pretrained weights {str(path)!r} do not fit {encoder}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )


def _adapt_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A copy of ``conv`` taking ``in_channels`` inputs; RGB weights are cycled and rescaled."""
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                    conv.padding, bias=conv.bias is not None)
    with torch.no_grad():
        idx = torch.arange(in_channels) % conv.in_channels
        new.weight.copy_(conv.weight[:, idx] * (conv.in_channels / in_channels))
    return new


def _unstride(block: nn.Module) -> None:
    """Make every stride-2 convolution of a residual block (shortcut included) stride 1."""
    for m in block.modules():
        if isinstance(m, nn.Conv2d) and m.stride == (2, 2):
            m.stride = (1, 1)


class ResNetEncoder(nn.Module):
    """A torchvision ResNet as a five-level feature extractor (see the module docstring)."""

    strides = STRIDES
    output_stride = STRIDES[-1]

    def __init__(self, name: str, pool: str = "M", in_channels: int = 3,
                 pretrained: str | None = None) -> None:
        super().__init__()
        net = RESNETS[name][1](weights=None)
        if pretrained:
            load_pretrained(net, name, pretrained)
        if in_channels != 3:
            net.conv1 = _adapt_first_conv(net.conv1, in_channels)
        letters = pool + "S" * (4 - len(pool))
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu)
        self.pool1 = POOLS.get(letters[0])(channels=net.conv1.out_channels, stem=True)
        self.layer1 = net.layer1
        stages = []
        for letter, layer in zip(letters[1:], (net.layer2, net.layer3, net.layer4)):
            in_ch = layer[0].conv1.in_channels
            down = POOLS.get(letter)(channels=in_ch, stem=False)
            if down is not None:
                _unstride(layer[0])
            stages += [down or nn.Identity(), layer]
        self.pool2, self.layer2, self.pool3, self.layer3, self.pool4, self.layer4 = stages
        self.out_channels = (
            net.conv1.out_channels,
            *(_block_out_channels(layer)
              for layer in (net.layer1, net.layer2, net.layer3, net.layer4)),
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        e0 = self.stem(x)
        e1 = self.layer1(self.pool1(e0))
        e2 = self.layer2(self.pool2(e1))
        e3 = self.layer3(self.pool3(e2))
        e4 = self.layer4(self.pool4(e3))
        return [e0, e1, e2, e3, e4]


def _block_out_channels(layer: nn.Sequential) -> int:
    last = layer[-1]
    return (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features


ENCODERS.register("resnet", help="torchvision ResNet; pool letters choose its downsampling",
                  pools=POOLS)(EncoderFamily(
    contract=lambda name: Contract(RESNETS[name][2], STRIDES),
    build=ResNetEncoder,
    weights=lambda name: tuple(w.name for w in torchvision.models.get_model_weights(name)),
    names=tuple(RESNETS),
    tokens=tuple(token for token, _, _ in RESNETS.values()),
))
