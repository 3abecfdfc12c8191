"""Variants: a frozen, validated description of one architecture, and the registry of its knobs.

A ``Variant``'s defaults are the baseline (a plain ResNet-18 U-Net); other variants are
``baseline.replace(pool="MAA", ...)``. Every field is a knob registered in ``KNOBS`` with its
parser, its allowed values and its token in the variant id, e.g.
``r18-MAA-w128.64.32.32-k23-cat-ds-bil``:

    r18            encoder (r18 / r34 / r50)
    MAA            pool order (canonical: trailing ResNet-default ``S`` letters dropped)
    w128.64.32.32  decoder widths, deepest stage first
    k23            kept skips (``kx``: none)
    cat            fusion (cat / add)
    ds             decoder block (cv / ds)
    bil            upsampling (bil / nn / tr)
    pt...          only when pretrained: the weights name, or ``ptf`` + a hash of the file path

The number of classes and input channels come from the dataset, never from the variant.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torchvision

from ..checks import not_allowed, refuse_unknown, to_int
from ..registry import Registry
from .decoder import BLOCKS, FUSIONS, MAX_STAGES, SKIP_NAMES, UPSAMPLES
from .encoders import ENCODERS, POOLS, is_weights_file


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

    return Knob(name, help, allowed, parse, lambda v: values.meta(v)["token"], untoken, values)


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
    if not 1 <= len(widths) <= MAX_STAGES:
        raise not_allowed("widths", value, allowed, f"{len(widths)} stages")
    if any(w <= 0 for w in widths):
        raise not_allowed("widths", value, allowed, "widths must be positive")
    return widths


def _parse_skips(value: Any) -> tuple[str, ...]:
    allowed = KNOBS.get("skips").allowed
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "x")):
        return ()
    if isinstance(value, str):
        parts = value.replace(",", " ").split()
        items = parts if len(parts) > 1 or value.strip().startswith("e") else list(value.strip())
    else:
        items = list(value)
    skips = set()
    for item in items:
        digit = isinstance(item, int) or (isinstance(item, str) and item.isdigit())
        name = f"e{item}" if digit else item
        if name not in SKIP_NAMES:
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


_register_knob(_categorical("encoder", ENCODERS, "ResNet encoder from torchvision"))
_register_knob(Knob(
    "pool", "downsampling order: stem pool, layer2, layer3, layer4 entries",
    "1 to 4 letters over M (max-pool), A (average-pool), S (strided conv); "
    "positions not given keep ResNet's own (M at the stem, S after)",
    _parse_pool, lambda v: v, lambda token: token, POOLS))
_register_knob(Knob(
    "widths", "decoder widths, deepest stage first (stage 5 reaches full resolution)",
    f"1 to {MAX_STAGES} positive integers, e.g. 128,64,32,32",
    _parse_widths, lambda v: "w" + ".".join(map(str, v)), _prefixed("w", "widths")))
_register_knob(Knob(
    "skips", "encoder skips fed to the decoder (e3 at 1/16, e2 1/8, e1 1/4, e0 1/2)",
    "any subset of e0, e1, e2, e3 (e.g. e2,e3 or 23), or none",
    _parse_skips, lambda v: "k" + ("".join(s[1] for s in v) or "x"), _prefixed("k", "skips")))
_register_knob(_categorical("fusion", FUSIONS, "how a skip joins the decoder"))
_register_knob(_categorical("block", BLOCKS, "decoder refine block"))
_register_knob(_categorical("upsample", UPSAMPLES, "decoder x2 upsampling"))
_register_knob(Knob(
    "pretrained", "encoder weights, read from local files only",
    "none, a local state_dict file, or a torchvision weights name already in the torch cache "
    "(e.g. IMAGENET1K_V1)",
    _parse_pretrained, _pretrained_token, _untoken_pretrained))


@dataclass(frozen=True)
class Variant:
    """One architecture; the defaults are the baseline. See the module docstring for the id."""

    encoder: str = "resnet18"
    pool: str = "M"
    widths: tuple[int, ...] = (256, 128, 64, 32)
    skips: tuple[str, ...] = SKIP_NAMES
    fusion: str = "concat"
    block: str = "conv"
    upsample: str = "bilinear"
    pretrained: str | None = field(default=None)

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, KNOBS.get(f.name).parse(getattr(self, f.name)))
        stages = len(self.widths)
        for skip in self.skips:
            needed = 4 - int(skip[1])
            if stages < needed:
                raise ValueError(
                    f"skips={list(self.skips)!r} is not allowed with widths={list(self.widths)!r}: "
                    f"{skip} is fused by decoder stage {needed}, but there are only {stages} "
                    "stages; "
                    f"with {stages} stages the skips can be any of "
                    f"{', '.join(f'e{3 - i}' for i in range(min(stages, 4)))}"
                )
        if self.pretrained and not is_weights_file(self.pretrained):
            names = [w.name for w in torchvision.models.get_model_weights(self.encoder)]
            if self.pretrained not in names:
                raise not_allowed("pretrained", self.pretrained,
                           f"a local file path, or one of {', '.join(names)} for {self.encoder}")

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


def list_knobs(pattern: str | None = None) -> list[dict[str, str]]:
    """Every knob (optionally fnmatch-filtered): name, default, allowed values, meaning."""
    defaults = {f.name: f.default for f in fields(Variant)}
    rows = []
    for name in KNOBS.names(pattern):
        knob = KNOBS.get(name)
        allowed = knob.allowed
        if knob.values is not None and knob.values is not POOLS:
            allowed = "; ".join(f"{v} ({knob.values.help(v)})" for v in knob.values)
        rows.append({"knob": name, "default": _show(defaults[name]), "allowed": allowed,
                     "help": knob.help})
    return rows


def _text(value: Any, empty: str = "") -> str:
    """A knob value as text: sequences comma-joined (``empty`` when empty), None as ``""``."""
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or empty
    return "" if value is None else str(value)


def _show(value: Any) -> str:
    return _text(value) or "none"
