"""The timm family: any timm backbone as an encoder, ``encoder: timm-<name>``.

timm builds the model with ``features_only=True``; its ``feature_info`` reports each feature's
channels and reduction, which become the contract's ``out_channels`` and ``strides``. Most
backbones give five features at 2..32 (MobileNet, EfficientNet, RegNet: ``e0`` at 1/2);
ConvNeXt-style ones start at stride 4 (four features, ``e0`` at 1/4, skips ``e0..e2``). A
backbone whose features do not halve the resolution step by step (a plain ViT) is refused.
The contract is read from a model built on the ``meta`` device (no memory, no weights), once
per name. The id token is ``timm.<name>`` (names never contain ``-``).

Weights are read from local files only, never downloaded: ``pretrained`` is a local checkpoint
of the timm model (as timm saves it), or a timm pretrained tag (``timm-efficientnet_b0`` with
``pretrained: ra_in1k``) whose file is already in the local Hugging Face or torch hub cache.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn

from ...common.checks import not_allowed
from .contract import ENCODERS, Contract, EncoderFamily, is_weights_file

PREFIX = "timm-"
TOKEN_PREFIX = "timm."
EXAMPLES = ("timm-mobilenetv3_large_100", "timm-efficientnet_b0", "timm-regnety_004",
            "timm-convnext_tiny")


def architecture(name: str) -> str:
    """The timm model name inside an encoder name (``timm-efficientnet_b0`` -> efficientnet_b0)."""
    return name[len(PREFIX):]


@functools.cache
def timm_contract(name: str) -> Contract:
    """The contract of ``timm-<arch>`` from timm's ``feature_info``; refuses unknown names."""
    import timm

    arch = architecture(name)
    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch[:4]}*")[:5] if len(arch) >= 4 else []
        hint = f"; close names: {', '.join(PREFIX + c for c in close)}" if close else ""
        raise not_allowed("encoder", name, f"{PREFIX}<name> for a model timm.list_models() "
                                           f"knows, e.g. {', '.join(EXAMPLES)}",
                          f"timm has no model {arch!r}{hint}")
    try:
        with torch.device("meta"):
            model = timm.create_model(arch, features_only=True, pretrained=False)
    except (RuntimeError, ValueError, TypeError, AssertionError) as exc:
        raise not_allowed("encoder", name, "a timm model that supports features_only",
                          f"timm cannot build it as a feature extractor: {exc}") from None
    info = model.feature_info
    try:
        return Contract(tuple(info.channels()), tuple(info.reduction()))
    except ValueError as exc:
        raise ValueError(f"encoder {name!r} cannot feed a U-Net decoder: {exc}") from None


def timm_weights(name: str) -> tuple[str, ...]:
    """The pretrained tags timm lists for this architecture (e.g. ``ra_in1k``)."""
    import timm

    arch = architecture(name)
    return tuple(n.split(".", 1)[1] for n in timm.list_pretrained(f"{arch}.*"))


class TimmEncoder(nn.Module):
    """A timm ``features_only`` model; ``forward`` returns its feature list."""

    def __init__(self, name: str, in_channels: int = 3, pretrained: str | None = None) -> None:
        super().__init__()
        import timm

        arch = architecture(name)
        kwargs = {"features_only": True, "in_chans": in_channels}
        if pretrained:
            path, tagged = _weights_file(name, pretrained)
            self.body = timm.create_model(tagged, pretrained=True,
                                          pretrained_cfg_overlay={"file": str(path)}, **kwargs)
        else:
            self.body = timm.create_model(arch, pretrained=False, **kwargs)
        self.out_channels = tuple(self.body.feature_info.channels())
        self.strides = tuple(self.body.feature_info.reduction())
        self.output_stride = self.strides[-1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x))


def _weights_file(name: str, spec: str) -> tuple[Path, str]:
    """The local file to load and the timm name to load it as (``arch`` or ``arch.tag``)."""
    arch = architecture(name)
    if is_weights_file(spec):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights file {str(path)!r} for {name} does not "
                                    "exist; pass a local timm checkpoint (ablate downloads "
                                    "nothing)")
        return path, arch
    tagged = f"{arch}.{spec}"
    places = _cache_places(tagged)
    for path in places:
        if path.is_file():
            return path, tagged
    raise FileNotFoundError(f"pretrained={spec!r} for {name} is not in the local cache; put the "
                            f"file at {places[-1]} or pass a local file path (ablate downloads "
                            "nothing)")


def _cache_places(tagged: str) -> list[Path]:
    """Where timm would have cached ``arch.tag``: the Hugging Face hub cache, then torch hub."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(tagged)
    places = []
    if cfg is not None and cfg.hf_hub_id:
        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(found, str):
                places.append(Path(found))
    url = cfg.url if cfg is not None else None
    if url:
        places.append(Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name)
    return places or [Path(torch.hub.get_dir()) / "checkpoints" / f"{tagged}.pth"]


ENCODERS.register("timm", help="any model timm.list_models() names that builds with "
                               "features_only, skips at the reductions timm reports; weights from "
                               "local files only", pools=None)(EncoderFamily(
    contract=timm_contract,
    build=TimmEncoder,
    weights=timm_weights,
    prefix=PREFIX,
    token_prefix=TOKEN_PREFIX,
    examples=EXAMPLES,
))
