"""Variants: a frozen, validated description of one architecture, and the registry of its knobs.

A ``Variant``'s defaults are the baseline (a plain ResNet-18 U-Net); other variants are
``baseline.replace(pool="MAA", ...)``. Every field is a knob registered in ``KNOBS`` with its
parser, its allowed values and its token in the variant id, e.g.
``r18-MAA-w128.64.32.32-k23-cat-ds-bil``:

    r18            encoder (r18 / r34 / r50 / unet / unet16 / timm.<timm name>)
    MAA            pool order (canonical: trailing ResNet-default ``S`` letters dropped; ``M``
                   for encoders without pool points)
    w128.64.32.32  decoder widths, deepest stage first
    k23            kept skips (``kx``: none), named after the encoder's features
    cat            fusion (cat / add)
    ds             decoder block (cv / cvb / ds)
    bil            upsampling (bil / nn / tr / trh)
    pt...          only when pretrained: the weights name, or ``ptf`` + a hash of the file path

Which skips exist, and how many decoder stages fit, depends on the encoder's stride contract
(``ablate.models.encoders.contract``); the variant is checked against it when made.

The number of classes and input channels come from the dataset, never from the variant.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ..common.checks import not_allowed, refuse_unknown, to_int
from ..common.registry import Registry
from .decoder import BLOCKS, FUSIONS, UPSAMPLES
from .encoders import (
    ENCODERS,
    POOLS,
    allowed_encoders,
    check_pool,
    encoder_contract,
    encoder_from_token,
    encoder_token,
    encoder_weights,
    family_of,
    is_weights_file,
    list_encoders,
)

#: The ``skips`` value "every skip of the encoder that the decoder's stages reach" (resolved when
#: a variant is made: e0..e3 for a ResNet with four or five stages).
ALL_SKIPS = ("all",)


@dataclass(frozen=True)
class Knob:
    """One architecture knob: how to read a value, what is allowed, its id token and how that
    token reads back (``untoken``: token -> a value ``parse`` accepts)."""

    name: str
    help: str
    allowed: str
    parse: Callable[[Any], Any]
    token: Callable[[Any], str]
    untoken: Callable[[str], Any]
    values: Registry | None = None
    choices: Callable[[], list[str]] | None = None  # one line per allowed value, for listings


#: Every knob in id-token order (= the ``Variant`` fields, = the result columns' order).
KNOBS: Registry = Registry("knob", ordered=True)


def _register_knob(knob: Knob) -> None:
    KNOBS.register(knob.name, help=knob.help)(knob)


def _categorical(name: str, values: Registry, help: str) -> Knob:
    allowed = ", ".join(values.names())

    def parse(value: Any) -> str:
        if value not in values:
            raise not_allowed(name, value, allowed)
        return value

    def untoken(token: str) -> str:
        for value in values:
            if values.meta(value)["token"] == token:
                return value
        tokens = ", ".join(values.meta(v)["token"] for v in values)
        raise ValueError(f"{name} token {token!r} is not one of {tokens}")

    def choices() -> list[str]:
        return [f"{v} ({values.meta(v)['token']}): {values.help(v)}" for v in values]

    return Knob(name, help, allowed, parse, lambda v: values.meta(v)["token"], untoken, values,
                choices)


def _parse_encoder(value: Any) -> str:
    family_of(value)
    encoder_contract(value)  # a timm name is checked against timm here
    return value


def _encoder_choices() -> list[str]:
    lines, headed = [], set()
    for row in list_encoders():
        if row["example"] and row["family"] not in headed:
            family = ENCODERS.get(row["family"])
            headed.add(row["family"])
            lines.append(f"{family.prefix}<name> (token {family.token_prefix}<name>): "
                         f"{ENCODERS.help(row['family'])}; for example")
        pools = f"pool letters {row['pool']}" if row["pool"] != "none" else "no pool points"
        lines.append(f"{'  ' * row['example']}{row['encoder']} ({row['token']}): "
                     f"{row['features']}; {pools}")
    return lines


def _parse_pool(value: Any) -> str:
    allowed = KNOBS.get("pool").allowed
    if not isinstance(value, str) or not 1 <= len(value) <= 4:
        raise not_allowed("pool", value, allowed, "need 1 to 4 letters")
    pool = value.upper()
    for letter in pool:
        if letter not in POOLS:
            raise not_allowed("pool", value, allowed,
                              f"letter {letter!r} is not one of {', '.join(POOLS)}")
    # Positions not given keep ResNet's strided conv, so trailing S letters name nothing new.
    return pool[0] + pool[1:].rstrip("S")


def _parse_widths(value: Any) -> tuple[int, ...]:
    allowed = KNOBS.get("widths").allowed
    items = value.replace(".", ",").split(",") if isinstance(value, str) else value
    try:
        widths = tuple(to_int(w) for w in items)
    except (TypeError, ValueError):
        raise not_allowed("widths", value, allowed, "not a sequence of integers") from None
    if not widths:
        raise not_allowed("widths", value, allowed, "0 stages")
    if any(w <= 0 for w in widths):
        raise not_allowed("widths", value, allowed, "widths must be positive")
    return widths


def _parse_skips(value: Any) -> tuple[str, ...]:
    allowed = KNOBS.get("skips").allowed
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "x")):
        return ()
    if value in ("all", ["all"], ALL_SKIPS):
        return ALL_SKIPS
    if isinstance(value, str):
        parts = value.replace(",", " ").split()
        items = parts if len(parts) > 1 or value.strip().startswith("e") else list(value.strip())
    else:
        items = list(value)
    skips = set()
    for item in items:
        digit = isinstance(item, int) or (isinstance(item, str) and item.isdigit())
        name = f"e{item}" if digit else item
        if not isinstance(name, str) or not re.fullmatch(r"e\d", name):
            raise not_allowed("skips", value, allowed, f"unknown skip {item!r}")
        skips.add(name)
    return tuple(sorted(skips))


def _parse_pretrained(value: Any) -> str | None:
    if value is None or value == "" or value is False:
        return None
    if not isinstance(value, str):
        raise not_allowed("pretrained", value, KNOBS.get("pretrained").allowed)
    return value


def _pretrained_token(value: str | None) -> str:
    if value is None:
        return ""
    if is_weights_file(value):
        return "ptf" + hashlib.sha1(value.encode()).hexdigest()[:8]
    return "pt" + value


def _prefixed(prefix: str, knob: str) -> Callable[[str], str]:
    """Read back a token made of ``prefix`` + the value's text."""

    def untoken(token: str) -> str:
        if not token.startswith(prefix):
            raise ValueError(f"{knob} token {token!r} does not start with {prefix!r}")
        return token[len(prefix):]

    return untoken


def _untoken_pretrained(token: str) -> str:
    if token.startswith("ptf") or not token.startswith("pt"):
        raise ValueError(f"pretrained token {token!r} cannot be read back (a hashed file path, "
                         "or not pt<weights name>)")
    return token[2:]


_register_knob(Knob(
    "encoder", "encoder: a name from a registered family (features and strides per encoder below)",
    allowed_encoders(), _parse_encoder, encoder_token, encoder_from_token,
    choices=_encoder_choices))
_register_knob(Knob(
    "pool", "downsampling order of a ResNet: stem pool, layer2, layer3, layer4 entries",
    "1 to 4 letters over M (max-pool), A (average-pool), S (strided conv); "
    "positions not given keep ResNet's own (M at the stem, S after); encoders without pool "
    "points take only M (their own downsampling)",
    _parse_pool, lambda v: v, lambda token: token, POOLS))
_register_knob(Knob(
    "widths", "decoder widths, deepest stage first (the last allowed stage reaches full "
    "resolution: 5 for ResNets, 4 for the U-Net encoder)",
    "1 to log2(the encoder's output stride) positive integers, e.g. 128,64,32,32",
    _parse_widths, lambda v: "w" + ".".join(map(str, v)), _prefixed("w", "widths")))
_register_knob(Knob(
    "skips", "encoder features fed to the decoder, e0 the shallowest (which exist, at what "
    "stride: see the encoder knob)",
    "all, none, or any subset of the encoder's skips (ResNets: e0..e3, e.g. e2,e3 or 23)",
    _parse_skips, lambda v: "k" + ("".join(s[1] for s in v) or "x"), _prefixed("k", "skips")))
_register_knob(_categorical("fusion", FUSIONS, "how a skip joins the decoder"))
_register_knob(_categorical("block", BLOCKS, "decoder refine block"))
_register_knob(_categorical("upsample", UPSAMPLES, "decoder x2 upsampling"))
_register_knob(Knob(
    "pretrained", "encoder weights, read from local files only",
    "none, a local weights file, or a weights name already in the local cache: torchvision's "
    "for ResNets (e.g. IMAGENET1K_V1), a timm pretrained tag for timm-* (e.g. ra_in1k)",
    _parse_pretrained, _pretrained_token, _untoken_pretrained))


@dataclass(frozen=True)
class Variant:
    """One architecture; the defaults are the baseline. See the module docstring for the id."""

    encoder: str = "resnet18"
    pool: str = "M"
    widths: tuple[int, ...] = (256, 128, 64, 32)
    skips: tuple[str, ...] = ALL_SKIPS   # every skip the stages reach (ResNets: e0..e3)
    fusion: str = "concat"
    block: str = "conv"
    upsample: str = "bilinear"
    pretrained: str | None = field(default=None)

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, KNOBS.get(f.name).parse(getattr(self, f.name)))
        contract = encoder_contract(self.encoder)
        stages = len(self.widths)
        if self.skips == ALL_SKIPS:
            reached = tuple(s for s in contract.skips if contract.stage_of(s) <= stages)
            object.__setattr__(self, "skips", reached)
        check_pool(self.encoder, self.pool)
        if stages > contract.max_stages:
            raise not_allowed(
                "widths", self.widths,
                f"1 to {contract.max_stages} positive integers for encoder {self.encoder}",
                f"{stages} stages, but {self.encoder}'s deepest feature is at "
                f"1/{contract.output_stride}: {contract.max_stages} stages reach full resolution")
        for skip in self.skips:
            if skip not in contract.skips:
                raise not_allowed(
                    "skips", list(self.skips),
                    f"all, none, or any subset of {', '.join(contract.skips)} "
                    f"({contract.describe()})",
                    f"unknown skip {skip!r} for encoder {self.encoder}")
            needed = contract.stage_of(skip)
            if stages < needed:
                reached = [s for s in contract.skips if contract.stage_of(s) <= stages]
                raise ValueError(
                    f"skips={list(self.skips)!r} is not allowed with widths={list(self.widths)!r}: "
                    f"{skip} is fused by decoder stage {needed}, but there are only {stages} "
                    f"stages; with {stages} stages the skips can be any of "
                    f"{', '.join(reached) or 'none'}"
                )
        if self.pretrained and not is_weights_file(self.pretrained):
            names = encoder_weights(self.encoder)
            if self.pretrained not in names:
                named = f"one of {', '.join(names)} for {self.encoder}" if names else \
                    f"nothing else: {self.encoder} has no published weights"
                raise not_allowed("pretrained", self.pretrained, f"a local file path, or {named}")

    @property
    def id(self) -> str:
        """Stable, file-safe short id; equal variants share it, different ones never do."""
        tokens = (KNOBS.get(f.name).token(getattr(self, f.name)) for f in fields(self))
        return "-".join(t for t in tokens if t)

    def replace(self, **overrides: Any) -> Variant:
        """A copy with some knobs changed (validated like any variant)."""
        _check_keys(overrides)
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-safe mapping; ``Variant.from_dict`` reads it back."""
        d = dataclasses.asdict(self)
        d["widths"], d["skips"] = list(self.widths), list(self.skips)
        return d

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> Variant:
        """Build from a mapping of knob values; unknown keys are refused, missing ones default."""
        _check_keys(mapping)
        return cls(**mapping)

    @classmethod
    def from_id(cls, variant_id: str) -> Variant:
        """Parse an id made by :attr:`id` (not one whose weights are a hashed file path).

        Tokens come in knob order; a knob whose default has no token (``pretrained``) may be
        left out at the end.
        """
        names = KNOBS.names()
        required = [n for n in names if KNOBS.get(n).token(getattr(cls(), n))]
        tokens = variant_id.split("-")
        if not len(required) <= len(tokens) <= len(names):
            count = (f"{len(required)}" if len(required) == len(names)
                     else f"{len(required)} or {len(names)}")
            raise ValueError(f"variant id {variant_id!r} does not have {count} '-'-separated "
                             f"tokens (e.g. {cls().replace(pool='MAA').id})")
        values = {}
        for name, token in zip(names, tokens):
            try:
                values[name] = KNOBS.get(name).untoken(token)
            except ValueError as exc:
                raise ValueError(f"variant id {variant_id!r}: {exc}") from None
        return cls(**values)

    def columns(self) -> dict[str, str]:
        """The knob values as result-table text, one column per knob in ``KNOBS`` order
        (sequences comma-joined, no skips ``none``, no weights empty)."""
        return {name: _text(getattr(self, name), empty="none") for name in KNOBS.names()}


def _check_keys(mapping: Mapping[str, Any]) -> None:
    refuse_unknown(mapping, KNOBS.names(), "knob")


def list_knobs(pattern: str | None = None) -> list[dict[str, Any]]:
    """Every knob (optionally fnmatch-filtered): name, default, allowed values, meaning, and
    ``choices``: one line per value (per encoder: its token, skips and their strides)."""
    defaults = {f.name: f.default for f in fields(Variant)}
    rows = []
    for name in KNOBS.names(pattern):
        knob = KNOBS.get(name)
        allowed = knob.allowed
        if knob.values is not None and knob.values is not POOLS:
            allowed = "; ".join(f"{v} ({knob.values.help(v)})" for v in knob.values)
        rows.append({"knob": name, "default": _show(defaults[name]), "allowed": allowed,
                     "help": knob.help, "choices": knob.choices() if knob.choices else []})
    return rows


def _text(value: Any, empty: str = "") -> str:
    """A knob value as text: sequences comma-joined (``empty`` when empty), None as ``""``."""
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or empty
    return "" if value is None else str(value)


def _show(value: Any) -> str:
    return _text(value) or "none"
