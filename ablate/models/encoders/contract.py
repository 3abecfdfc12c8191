"""The encoder contract, and the registry of encoder families that build encoders to it.

Contract (the decoder and the model read nothing else from an encoder):
    ``forward(x)`` returns a list of feature maps, shallowest first. The encoder declares
    ``out_channels`` (the features' channel counts) and ``strides`` (each feature's reduction of
    the input side). Each feature is at half the resolution of the one before; the first may be at
    full resolution (stride 1, the classic U-Net) or coarser (ResNet's stem: 2, ConvNeXt's: 4).
    ``output_stride`` (also declared) is the deepest feature's stride; the model pads inputs to a
    multiple of it.

Feature ``k`` is named ``e{k}``; every feature but the deepest is a skip the decoder may fuse.
Decoder stage ``i`` (from 1) doubles the deepest feature's resolution ``i`` times and fuses the
skip at its new stride, so ``log2(output_stride)`` stages reach full resolution and no more are
allowed; the head resizes whatever stride the last stage reaches back to the input.

``ENCODERS`` registers one :class:`EncoderFamily` per way of building encoders; every encoder name
(the ``encoder`` knob) belongs to one family. The entry's ``pools`` metadata is the registry of
pool letters the family understands, or None: it has no pool points and refuses any ``pool`` but
the default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ...common.checks import not_allowed, refuse_untaken
from ...common.registry import Registry

ENCODERS: Registry = Registry("encoder family")

#: The ``pool`` knob's default: the encoder's own downsampling (ResNet's max-pool stem and strided
#: stages; the only value an encoder without pool points accepts).
DEFAULT_POOL = "M"


@dataclass(frozen=True)
class Contract:
    """What an encoder declares: its features' channels and strides, shallowest first."""

    channels: tuple[int, ...]
    strides: tuple[int, ...]

    def __post_init__(self) -> None:
        channels, strides = tuple(self.channels), tuple(self.strides)
        object.__setattr__(self, "channels", channels)
        object.__setattr__(self, "strides", strides)
        if len(channels) != len(strides) or len(strides) < 2:
            raise ValueError(f"an encoder declares one channel count per feature and at least two "
                             f"features; got channels {channels} and strides {strides}")
        first = strides[0]
        halving = all(b == 2 * a for a, b in zip(strides, strides[1:]))
        if first < 1 or first & (first - 1) or not halving:
            raise ValueError(f"feature strides {strides} break the encoder contract: each feature "
                             "must be at half the resolution of the one before, the first at "
                             "stride 1, 2, 4, ... (e.g. 2, 4, 8, 16, 32)")
        if any(c < 1 for c in channels):
            raise ValueError(f"feature channels {channels} must be positive")

    @property
    def output_stride(self) -> int:
        """The deepest feature's stride (the decoder's input)."""
        return self.strides[-1]

    @property
    def skips(self) -> tuple[str, ...]:
        """Names of the features the decoder may fuse: all but the deepest."""
        return tuple(f"e{k}" for k in range(len(self.strides) - 1))

    @property
    def max_stages(self) -> int:
        """Decoder stages that reach full resolution from the deepest feature."""
        return self.output_stride.bit_length() - 1

    def stage_of(self, skip: str) -> int:
        """The decoder stage (counted from 1) that fuses ``skip``."""
        return len(self.strides) - 1 - int(skip[1:])

    def describe(self) -> str:
        """e.g. ``e0 1/2, e1 1/4, e2 1/8, e3 1/16; e4 1/32 feeds the decoder``."""
        skips = ", ".join(f"{name} 1/{s}" for name, s in zip(self.skips, self.strides))
        return f"{skips}; e{len(self.strides) - 1} 1/{self.output_stride} feeds the decoder"


@dataclass(frozen=True)
class EncoderFamily:
    """A way to build encoders: the names it answers to, their id tokens, their contract (known
    before any weight exists), the builder and the weights names it can load.

    A family has fixed ``names`` (with ``tokens`` in the same order) and/or a ``prefix``: then any
    name ``prefix + x`` that ``contract`` accepts is its, with the token ``token_prefix + x``.
    ``build(name, in_channels=, pretrained=[, pool=], **options)`` returns an ``nn.Module`` that
    keeps the contract (``pool`` is passed only to families whose registry entry has pool
    letters; ``options``: the knobs a plugin added that reach the encoder, each only when set
    and only to a family whose ``build`` takes it by keyword).
    ``weights(name)`` lists the weights names besides a local file that ``pretrained`` accepts.
    """

    contract: Callable[[str], Contract]
    build: Callable[..., nn.Module]
    weights: Callable[[str], tuple[str, ...]]
    names: tuple[str, ...] = ()
    tokens: tuple[str, ...] = ()
    prefix: str = ""
    token_prefix: str = ""
    examples: tuple[str, ...] = ()          # prefix names shown by ``ablate knobs``

    def owns(self, name: str) -> bool:
        prefixed = bool(self.prefix) and name.startswith(self.prefix) \
            and len(name) > len(self.prefix)
        return name in self.names or prefixed

    def token(self, name: str) -> str:
        if name in self.names:
            return self.tokens[self.names.index(name)]
        return self.token_prefix + name[len(self.prefix):]

    def name_of(self, token: str) -> str | None:
        """The name an id token stands for, or None when the token is not this family's."""
        if token in self.tokens:
            return self.names[self.tokens.index(token)]
        if self.token_prefix and token.startswith(self.token_prefix) \
                and len(token) > len(self.token_prefix):
            return self.prefix + token[len(self.token_prefix):]
        return None


def allowed_encoders() -> str:
    """The encoder names in words, for error messages and ``ablate knobs``."""
    parts = []
    for family in ENCODERS:
        entry: EncoderFamily = ENCODERS.get(family)
        parts += list(entry.names)
        if entry.prefix:
            parts.append(f"{entry.prefix}<name> ({ENCODERS.help(family)})")
    return ", ".join(parts)


def family_of(name: Any) -> str:
    """The family an encoder name belongs to; a name no family owns is refused."""
    if isinstance(name, str):
        for family in ENCODERS:
            if ENCODERS.get(family).owns(name):
                return family
    raise not_allowed("encoder", name, allowed_encoders())


def encoder_contract(name: str) -> Contract:
    """The contract of encoder ``name``, known before building it (validates the name)."""
    return ENCODERS.get(family_of(name)).contract(name)


def encoder_pools(name: str) -> Registry | None:
    """The pool letters encoder ``name`` understands, or None when it has no pool points."""
    return ENCODERS.meta(family_of(name))["pools"]


def encoder_token(name: str) -> str:
    return ENCODERS.get(family_of(name)).token(name)


def encoder_from_token(token: str) -> str:
    """The encoder name an id token stands for."""
    for family in ENCODERS:
        name = ENCODERS.get(family).name_of(token)
        if name is not None:
            return name
    tokens = [t for f in ENCODERS for t in ENCODERS.get(f).tokens]
    prefixes = [f"{ENCODERS.get(f).token_prefix}<name>" for f in ENCODERS
                if ENCODERS.get(f).token_prefix]
    raise ValueError(f"encoder token {token!r} is not one of {', '.join(tokens + prefixes)}")


def encoder_weights(name: str) -> tuple[str, ...]:
    """Weights names (besides a local file) that ``pretrained`` accepts for encoder ``name``."""
    return ENCODERS.get(family_of(name)).weights(name)


def check_pool(name: str, pool: str) -> None:
    """Refuse a non-default ``pool`` for an encoder without pool points (never ignore it)."""
    if encoder_pools(name) is None and pool != DEFAULT_POOL:
        with_pools = [n for f in ENCODERS if ENCODERS.meta(f)["pools"] is not None
                      for n in ENCODERS.get(f).names]
        raise not_allowed("pool", pool, f"{DEFAULT_POOL} (the encoder's own downsampling)",
                          f"encoder {name} has no pool points; pool letters apply to "
                          f"{', '.join(with_pools)}")


def check_encoder_options(name: str, options: dict[str, Any]) -> None:
    """Refuse options (set knobs a plugin added) that the builder of encoder ``name``'s family
    does not take, naming the families whose builder takes them."""
    builders = {family: ENCODERS.get(family).build for family in ENCODERS}
    family = family_of(name)
    refuse_untaken(options, family, builders, "an encoder family",
                   f"encoder {name} (family {family})")


def build_encoder(name: str, in_channels: int = 3, *, pool: str = DEFAULT_POOL,
                  pretrained: str | None = None, **options: Any) -> nn.Module:
    """Build encoder ``name``; checks that it keeps the contract its family declared.

    The keyword-only arguments are the knobs the encoder names; ``options`` (knobs a plugin
    added, given only when set) go to the family's ``build``, refused when it does not take
    them (:func:`check_encoder_options`)."""
    family = family_of(name)
    check_pool(name, pool)
    check_encoder_options(name, options)
    entry: EncoderFamily = ENCODERS.get(family)
    kwargs = {"pool": pool} if ENCODERS.meta(family)["pools"] is not None else {}
    encoder = entry.build(name, in_channels=in_channels, pretrained=pretrained, **kwargs,
                          **options)
    declared = Contract(encoder.out_channels, encoder.strides)
    expected = entry.contract(name)
    if declared != expected or encoder.output_stride != expected.output_stride:
        raise RuntimeError(f"encoder {name} declares {declared} (output stride "
                           f"{encoder.output_stride}), its family promised {expected}")
    return encoder


def is_weights_file(spec: str) -> bool:
    """A ``pretrained`` value that names a file rather than a published weights name."""
    return "/" in spec or "\\" in spec or spec.endswith((".pt", ".pth", ".bin", ".safetensors"))


def list_encoders() -> list[dict[str, Any]]:
    """One row per encoder name, then per example of a prefix family (``example`` true): its id
    token, its skips and their strides, its pool letters (or none), and what its family is."""
    rows = []
    for examples in (False, True):
        for family in ENCODERS:
            entry: EncoderFamily = ENCODERS.get(family)
            pools = ENCODERS.meta(family)["pools"]
            for name in entry.examples if examples else entry.names:
                rows.append({"encoder": name, "token": entry.token(name), "family": family,
                             "features": entry.contract(name).describe(),
                             "pool": ", ".join(pools) if pools is not None else "none",
                             "help": ENCODERS.help(family), "example": examples})
    return rows
