"""Variants: a frozen, validated description of one architecture, and the registry of its knobs.

A knob is one registration, ``register_knob(Knob(...))`` (or the ``categorical`` and ``flag``
helpers): its parser, allowed values, default, id token and the builder it reaches. Everything
else is derived from ``KNOBS``: ``Variant``'s attributes and defaults, ``id`` and ``from_id``,
``to_dict``, the result table's knob columns (``Variant.columns``, in ``KNOBS`` order), the CLI's
``--<knob>`` flags, search-space and experiment keys, and ``ablate knobs`` (``list_knobs``).

A ``Variant``'s defaults are the baseline (a plain ResNet-18 U-Net); other variants are
``baseline.replace(pool="MAA", ...)``. The id joins the knobs' tokens in ``KNOBS`` order, e.g.
``r18-MAA-w128.64.32.32-k23-cat-ds-bil``:

    r18            encoder (r18 / r34 / r50 / unet / unet16 / timm.<timm name>)
    MAA            pool order (canonical: trailing ResNet-default ``S`` letters dropped; ``M``
                   for encoders without pool points)
    w128.64.32.32  decoder widths, deepest stage first
    k23            kept skips (``kx``: none), named after the encoder's features
    cat            fusion (cat / add)
    ds             decoder block (cv / cvb / ds)
    bil            upsampling (bil / nn / tr / trh)

then one token per knob NOT at its default, in ``KNOBS`` order; at their defaults these knobs
add nothing, so ids made before they existed are unchanged:

    pt...          pretrained: the weights name, or ``ptf`` + a hash of the file path
    gn / in / nx   norm in the decoder: GroupNorm / InstanceNorm / none (default bn)
    gelu / silu    act in the decoder (default relu)
    scse / ag      attention: smp's scSE / Attention U-Net's gate on the skips (default none)
    dsv            deep_supervision on (default off)

e.g. ``r18-M-w256.128.64.32-k0123-cat-cv-bil-gn-silu-ag-dsv``.

Once one knob has no token at its default, every knob registered after it must have none either
(a token at the default would change every existing id), and its tokens must not be readable by
an earlier such knob: ``register_knob`` refuses both. Likewise ``to_dict`` (what run keys hash)
lists a knob registered with ``listed_at_default=False`` only when it is set, so adding a knob
changes no stored run key.

Which skips exist, and how many decoder stages fit, depends on the encoder's stride contract
(``ablate.models.encoders.contract``); the variant is checked against it when made.

The number of classes and input channels come from the dataset, never from the variant.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..common.checks import not_allowed, refuse_unknown, to_int
from ..common.registry import ChangesExistingModels, Registry
from .decoder import ATTENTIONS, BLOCKS, FUSIONS, UPSAMPLES, UNetDecoder, check_block_options
from .encoders import (
    ENCODERS,
    POOLS,
    allowed_encoders,
    build_encoder,
    check_encoder_options,
    check_pool,
    encoder_contract,
    encoder_from_token,
    encoder_token,
    encoder_weights,
    family_of,
    is_weights_file,
    list_encoders,
)
from .head import build_heads
from .layers import ACTS, NORMS

#: The ``skips`` value "every skip of the encoder that the decoder's stages reach" (resolved when
#: a variant is made: e0..e3 for a ResNet with four or five stages).
ALL_SKIPS = ("all",)

#: Where a knob's value goes when the model is built (``Knob.reaches``): the builder whose
#: keyword-only arguments are the knobs it names (the ``encoder`` knob: ``build_encoder``'s first
#: argument, the encoder's name); its positional arguments come from the model.
BUILDERS: dict[str, Callable[..., Any]] = {
    "encoder": build_encoder, "decoder": UNetDecoder, "head": build_heads}
REACHES = tuple(BUILDERS)

#: A knob reaching the encoder or the decoder that its builder does not name (a plugin's) goes,
#: only when set, as a keyword to the builder a knob value picks: the encoder family's ``build``
#: (picked by ``encoder``) or the decoder block's (``block``); the check refuses a builder that
#: does not take it. No value picks the heads' builder, so ``register_knob`` refuses a knob
#: reaching the head that ``build_heads`` does not name (it would be ignored).
PICKED_BY: dict[str, tuple[str, Callable[[str, dict[str, Any]], None]]] = {
    "encoder": ("encoder", check_encoder_options), "decoder": ("block", check_block_options)}


def _text(value: Any, empty: str = "") -> str:
    """A knob value as text: sequences comma-joined (``empty`` when empty), None as ``""``."""
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or empty
    return "" if value is None else str(value)


def _column_text(value: Any) -> str:
    return _text(value, empty="none")


@dataclass(frozen=True)
class Knob:
    """One architecture knob, registered once with :func:`register_knob`.

    ``parse`` reads a value (from YAML, the CLI, an id's ``untoken``) or raises ``ValueError``
    naming the knob and what is allowed; ``token`` is the value's part of the variant id (``""``:
    none) and ``untoken`` reads it back (token -> a value ``parse`` accepts, ``ValueError`` for a
    token that is not this knob's); ``default`` is the baseline's value; ``reaches`` says which
    builder receives it (``BUILDERS``, ``PICKED_BY``); ``text`` is the value in a result column
    (``parse`` reads it back); ``levels`` lists every value when there are finitely many;
    ``choices`` gives one line per allowed value for ``ablate knobs``; ``values`` is the
    registry of a categorical knob's values. ``listed_at_default``: ``Variant.to_dict`` lists
    the knob even at its default (only the eight original knobs, whose stored run keys hash
    them).
    """

    name: str
    help: str
    allowed: str
    parse: Callable[[Any], Any]
    token: Callable[[Any], str]
    untoken: Callable[[str], Any]
    default: Any = None
    reaches: str = "decoder"
    values: Registry | None = None
    choices: Callable[[], list[str]] | None = None
    text: Callable[[Any], str] = _column_text
    levels: Callable[[], Sequence[Any]] | None = None
    listed_at_default: bool = False


#: Every knob in id-token order (= ``Variant``'s attributes, = the result columns' order).
KNOBS: Registry = Registry("knob", ordered=True)


def _reads(knob: Knob, token: str) -> bool:
    try:
        knob.untoken(token)
    except ValueError:
        return False
    return True


def _parameters(where: str, *kinds: Any) -> set[str]:
    """The names of the parameters of ``where``'s builder of these ``inspect.Parameter`` kinds."""
    params = inspect.signature(BUILDERS[where]).parameters.values()
    return {p.name for p in params if p.kind in kinds}


def _named(where: str) -> set[str]:
    """The knobs the builder of ``where`` names (passed always; see ``BUILDERS``)."""
    picker = PICKED_BY.get(where, ("",))[0]
    return _parameters(where, inspect.Parameter.KEYWORD_ONLY) | ({picker} - {""})


def _options(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The set knobs reaching ``where`` that its builder does not name (a plugin's): they go to
    the builder a knob value picks (``PICKED_BY``)."""
    named = _named(where)
    return {n: values[n] for n in KNOBS.names() if KNOBS.get(n).reaches == where
            and n not in named and values[n] != KNOBS.get(n).default}


def register_knob(knob: Knob) -> Knob:
    """Add ``knob`` to ``KNOBS``: the one registration that makes it a ``Variant`` attribute, an
    id token, a result column, a CLI flag, a search-space and experiment key and a row of
    ``ablate knobs``. Refused with a ``ValueError`` naming the knob: a duplicate or a name that
    is not an identifier or is a ``Variant`` method, a ``reaches`` outside ``REACHES``, a knob
    reaching the head that ``build_heads`` does not name, a name its builder gets from the model
    (``in_channels``), and a token an earlier knob without a default token would also read; with
    ``ChangesExistingModels`` (a ``ValueError``) a default its own parser changes or a token at
    the default after a knob without one (every existing id would change)."""
    name = knob.name
    if not name.isidentifier() or name.startswith("_") or hasattr(Variant, name):
        raise ValueError(f"knob name {name!r} is not allowed; allowed: an identifier not "
                         "starting with '_' and not a Variant method")
    if knob.reaches not in REACHES:
        raise not_allowed(f"knob {name!r}: reaches", knob.reaches, ", ".join(REACHES))
    builder = BUILDERS[knob.reaches].__qualname__
    if knob.reaches not in PICKED_BY and name not in _named(knob.reaches):
        takes = ", ".join(sorted(_named(knob.reaches))) or "no knob"
        pickers = " or ".join(picker for picker, _ in PICKED_BY.values())
        raise not_allowed(
            f"knob {name!r}: reaches", knob.reaches,
            f"{' or '.join(PICKED_BY)} (set, the knob goes to the builder the {pickers} value "
            "picks, which must take it)",
            f"the {knob.reaches} has one builder, {builder}, which takes only {takes}; no knob "
            "value picks another, so the knob would be ignored")
    supplied = _parameters(knob.reaches, inspect.Parameter.POSITIONAL_ONLY,
                           inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if name in supplied:
        raise ValueError(f"knob name {name!r} is not allowed: {builder} gets {name} from the "
                         f"model, not from a knob; allowed: a name other than "
                         f"{', '.join(sorted(supplied))}")
    optional = [KNOBS.get(n) for n in KNOBS.names() if not KNOBS.get(n).token(KNOBS.get(n).default)]
    default_token = knob.token(knob.default)
    if default_token and optional:
        raise ChangesExistingModels(
            "knob", name,
            f"knob {name!r}: its default {knob.default!r} has the id token {default_token!r}, "
            f"but it comes after {', '.join(k.name for k in optional)}, which have none at their "
            "defaults: a knob added now must have no token at its default, or every existing "
            "variant id would change")
    if not default_token:
        mine = [t for t in map(knob.token, knob.levels() if knob.levels else ()) if t]
        for other in optional:
            theirs = [t for t in map(other.token, other.levels() if other.levels else ()) if t]
            clash = [t for t in mine if _reads(other, t)] + [t for t in theirs if _reads(knob, t)]
            if clash:
                raise ValueError(f"knob {name!r}: id token {clash[0]!r} would also be read by "
                                 f"knob {other.name!r}; give it another token")
    KNOBS.register(name, help=knob.help)(knob)
    try:  # registered first: a parser may read its own registration (e.g. for ``allowed``)
        parsed = knob.parse(knob.default)
        if parsed != knob.default:
            raise ValueError(f"its default {knob.default!r} reads as {parsed!r}; register the "
                             "parsed value")
    except ValueError as exc:
        KNOBS.unregister(name)
        raise ChangesExistingModels("knob", name,
                                    f"knob {name!r}: its default is not allowed: {exc}") from None
    return knob


def categorical(name: str, values: Registry, help: str, default: str,
                reaches: str = "decoder", listed_at_default: bool = False) -> Knob:
    """A knob whose values are the names of ``values``; each value's id token is the
    registration's ``token`` meta (``""`` for a default that adds no token)."""

    def parse(value: Any) -> str:
        if value not in values:
            raise not_allowed(name, value, ", ".join(values.names()))
        return value

    def untoken(token: str) -> str:
        for value in values:
            if token and values.meta(value)["token"] == token:
                return value
        tokens = ", ".join(t for v in values if (t := values.meta(v)["token"]))
        raise ValueError(f"{name} token {token!r} is not one of {tokens}")

    def choices() -> list[str]:
        return [f"{v} ({values.meta(v)['token'] or 'no token'}): {values.help(v)}"
                for v in values]

    return Knob(name, help, ", ".join(values.names()), parse, lambda v: values.meta(v)["token"],
                untoken, default=default, reaches=reaches, values=values, choices=choices,
                levels=values.names, listed_at_default=listed_at_default)


_TRUE, _FALSE = ("on", "true", "yes", "1"), ("off", "false", "no", "0")


def flag(name: str, token: str, help: str, reaches: str = "decoder") -> Knob:
    """An off/on knob, off by default (no token), ``token`` when on; a ``bool`` on the variant,
    ``off``/``on`` in result columns; reads bools and on/off, true/false, yes/no, 1/0."""
    if not isinstance(token, str) or not token.isalnum():
        raise not_allowed(f"flag {name!r}: token", token,
                          "letters and digits, at least one (the id says the flag is on)")

    def parse(value: Any) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise not_allowed(name, value, "off or on (also false/true, no/yes, 0/1)")

    def untoken(text: str) -> bool:
        if text != token:
            raise ValueError(f"{name} token {text!r} is not {token!r}")
        return True

    return Knob(name, help, "off or on", parse, lambda v: token if v else "", untoken,
                default=False, reaches=reaches, text=lambda v: "on" if v else "off",
                levels=lambda: (False, True),
                choices=lambda: ["off (no token): the default", f"on ({token}): see above"])


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


class Variant:
    """One architecture: a frozen, hashable value with one attribute per registered knob
    (``KNOBS``); a knob not given takes its default, so ``Variant()`` is the baseline. See the
    module docstring for the id.

    ``Variant(pool="MAA")`` and ``Variant.from_dict({...})`` validate every value and the knobs
    together (the encoder's contract decides which skips and how many stages exist); a copy with
    some knobs changed is ``variant.replace(...)``.
    """

    __slots__ = ("_values",)

    def __init__(self, **knobs: Any) -> None:
        _check_keys(knobs)
        values = {}
        for name in KNOBS.names():
            knob = KNOBS.get(name)
            values[name] = knob.parse(knobs[name]) if name in knobs else knob.default
        _check_together(values)
        object.__setattr__(self, "_values", values)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        values = self._values
        if name in values:
            return values[name]
        if name in KNOBS:  # a knob registered after this variant was made: at its default
            return KNOBS.get(name).default
        raise AttributeError(f"Variant has no knob {name!r}; knobs: {', '.join(KNOBS.names())}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(
            f"cannot assign to {name!r}: a Variant is frozen; use .replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete {name!r}: a Variant is frozen")

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *KNOBS.names()]

    def _key(self) -> tuple:
        return tuple(getattr(self, name) for name in KNOBS.names())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Variant) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Variant({', '.join(f'{n}={getattr(self, n)!r}' for n in KNOBS.names())})"

    def __reduce__(self):
        return _restore, (dict(self._values),)

    @property
    def id(self) -> str:
        """Stable, file-safe short id; equal variants share it, different ones never do."""
        tokens = (KNOBS.get(name).token(getattr(self, name)) for name in KNOBS.names())
        return "-".join(t for t in tokens if t)

    def replace(self, **overrides: Any) -> Variant:
        """A copy with some knobs changed (validated like any variant)."""
        _check_keys(overrides)
        return Variant(**{**self._values, **overrides})

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-safe mapping; ``Variant.from_dict`` reads it back. A knob registered
        with ``listed_at_default=False`` appears only when not at its default (run keys hash
        this mapping, so adding such a knob changes no stored run key)."""
        out = {}
        for name in KNOBS.names():
            knob, value = KNOBS.get(name), getattr(self, name)
            if knob.listed_at_default or value != knob.default:
                out[name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> Variant:
        """Build from a mapping of knob values; unknown keys are refused, missing ones default."""
        _check_keys(mapping)
        return cls(**mapping)

    @classmethod
    def from_id(cls, variant_id: str) -> Variant:
        """Parse an id made by :attr:`id` (not one whose weights are a hashed file path).

        The knobs whose defaults have a token come first, one token each, in ``KNOBS`` order;
        then one token per other knob that is not at its default, in ``KNOBS`` order.
        """
        names = KNOBS.names()
        required = [n for n in names if KNOBS.get(n).token(KNOBS.get(n).default)]
        optional = [n for n in names if n not in required]
        tokens = variant_id.split("-")
        if not len(required) <= len(tokens) <= len(names):
            raise ValueError(
                f"variant id {variant_id!r} does not have {len(required)} to {len(names)} "
                f"'-'-separated tokens ({len(required)} for {', '.join(required)}, then one per "
                f"knob not at its default; e.g. {cls().replace(pool='MAA').id})")
        values = {}
        for name, token in zip(required, tokens):
            try:
                values[name] = KNOBS.get(name).untoken(token)
            except ValueError as exc:
                raise ValueError(f"variant id {variant_id!r}: {exc}") from None
        rest = tokens[len(required):]
        errors = []
        for name in optional:
            if not rest:
                break
            try:
                values[name] = KNOBS.get(name).untoken(rest[0])
                rest.pop(0)
            except ValueError as exc:
                errors.append(str(exc))
        if rest:
            raise ValueError(f"variant id {variant_id!r}: token {rest[0]!r} is not read by any "
                             f"knob after {required[-1]} in order ({'; '.join(errors)})")
        return cls(**values)

    def columns(self) -> dict[str, str]:
        """The knob values as result-table text, one column per knob in ``KNOBS`` order
        (sequences comma-joined, no skips ``none``, no weights empty)."""
        return {name: KNOBS.get(name).text(getattr(self, name)) for name in KNOBS.names()}

    def reaching(self, where: str) -> dict[str, Any]:
        """The knob keywords of ``where``'s builder (one of ``REACHES``, see ``BUILDERS``):
        every knob it names, and each other knob reaching it (a plugin's) only when set, so at
        its default the model builds as before the knob existed."""
        if where not in REACHES:
            raise not_allowed("where", where, ", ".join(REACHES))
        named = _named(where)
        return {**{n: getattr(self, n) for n in KNOBS.names()
                   if n in named and KNOBS.get(n).reaches == where},
                **_options({n: getattr(self, n) for n in KNOBS.names()}, where)}


def _restore(values: dict[str, Any]) -> Variant:
    """Unpickle a variant (its values were validated when it was made)."""
    variant = object.__new__(Variant)
    object.__setattr__(variant, "_values", values)
    return variant


def _check_keys(mapping: Mapping[str, Any]) -> None:
    refuse_unknown(mapping, KNOBS.names(), "knob")


def _check_together(values: dict[str, Any]) -> None:
    """Checks across knobs (the encoder's contract; a plugin's set knob against the builder
    it goes to), resolving ``skips: all`` in ``values``."""
    encoder, widths, skips = values["encoder"], values["widths"], values["skips"]
    contract = encoder_contract(encoder)
    stages = len(widths)
    if skips == ALL_SKIPS:
        skips = values["skips"] = tuple(s for s in contract.skips if contract.stage_of(s) <= stages)
    check_pool(encoder, values["pool"])
    if stages > contract.max_stages:
        raise not_allowed(
            "widths", widths,
            f"1 to {contract.max_stages} positive integers for encoder {encoder}",
            f"{stages} stages, but {encoder}'s deepest feature is at "
            f"1/{contract.output_stride}: {contract.max_stages} stages reach full resolution")
    for skip in skips:
        if skip not in contract.skips:
            raise not_allowed(
                "skips", list(skips),
                f"all, none, or any subset of {', '.join(contract.skips)} "
                f"({contract.describe()})",
                f"unknown skip {skip!r} for encoder {encoder}")
        needed = contract.stage_of(skip)
        if stages < needed:
            reached = [s for s in contract.skips if contract.stage_of(s) <= stages]
            raise ValueError(
                f"skips={list(skips)!r} is not allowed with widths={list(widths)!r}: "
                f"{skip} is fused by decoder stage {needed}, but there are only {stages} "
                f"stages; with {stages} stages the skips can be any of "
                f"{', '.join(reached) or 'none'}"
            )
    pretrained = values["pretrained"]
    if pretrained and not is_weights_file(pretrained):
        names = encoder_weights(encoder)
        if pretrained not in names:
            named = f"one of {', '.join(names)} for {encoder}" if names else \
                f"nothing else: {encoder} has no published weights"
            raise not_allowed("pretrained", pretrained, f"a local file path, or {named}")
    for where, (picker, check) in PICKED_BY.items():
        options = _options(values, where)
        if options:
            check(values[picker], options)


def list_knobs(pattern: str | None = None) -> list[dict[str, Any]]:
    """Every knob (optionally fnmatch-filtered): name, default, allowed values, meaning, where
    it reaches the model, and ``choices``: one line per value with its id token (per encoder:
    its token, skips and their strides)."""
    rows = []
    for name in KNOBS.names(pattern):
        knob = KNOBS.get(name)
        allowed = knob.allowed
        if knob.values is not None and knob.levels is not None:
            allowed = "; ".join(f"{v} ({knob.values.help(v)})" for v in knob.values)
        rows.append({"knob": name, "default": knob.text(knob.default) or "none",
                     "allowed": allowed, "help": knob.help, "reaches": knob.reaches,
                     "choices": knob.choices() if knob.choices else []})
    return rows


# The built-in knobs, in id-token order (= result-column order).
register_knob(Knob(
    "encoder", "encoder: a name from a registered family (features and strides per encoder below)",
    allowed_encoders(), _parse_encoder, encoder_token, encoder_from_token, default="resnet18",
    reaches="encoder", choices=_encoder_choices, listed_at_default=True))
register_knob(Knob(
    "pool", "downsampling order of a ResNet: stem pool, layer2, layer3, layer4 entries",
    "1 to 4 letters over M (max-pool), A (average-pool), S (strided conv); "
    "positions not given keep ResNet's own (M at the stem, S after); encoders without pool "
    "points take only M (their own downsampling)",
    _parse_pool, lambda v: v, lambda token: token, default="M", reaches="encoder", values=POOLS,
    listed_at_default=True))
register_knob(Knob(
    "widths", "decoder widths, deepest stage first (the last allowed stage reaches full "
    "resolution: 5 for ResNets, 4 for the U-Net encoder)",
    "1 to log2(the encoder's output stride) positive integers, e.g. 128,64,32,32",
    _parse_widths, lambda v: "w" + ".".join(map(str, v)), _prefixed("w", "widths"),
    default=(256, 128, 64, 32), listed_at_default=True))
register_knob(Knob(
    "skips", "encoder features fed to the decoder, e0 the shallowest (which exist, at what "
    "stride: see the encoder knob)",
    "all, none, or any subset of the encoder's skips (ResNets: e0..e3, e.g. e2,e3 or 23)",
    _parse_skips, lambda v: "k" + ("".join(s[1] for s in v) or "x"), _prefixed("k", "skips"),
    default=ALL_SKIPS, listed_at_default=True))
register_knob(categorical("fusion", FUSIONS, "how a skip joins the decoder", "concat",
                          listed_at_default=True))
register_knob(categorical("block", BLOCKS, "decoder refine block", "conv", listed_at_default=True))
register_knob(categorical("upsample", UPSAMPLES, "decoder x2 upsampling", "bilinear",
                          listed_at_default=True))
register_knob(Knob(
    "pretrained", "encoder weights, read from local files only",
    "none, a local weights file, or a weights name already in the local cache: torchvision's "
    "for ResNets (e.g. IMAGENET1K_V1), a timm pretrained tag for timm-* (e.g. ra_in1k)",
    _parse_pretrained, _pretrained_token, _untoken_pretrained, default=None, reaches="encoder",
    listed_at_default=True))
register_knob(categorical("norm", NORMS, "normalisation in the decoder: its blocks and the add "
                          "fusion's projection (the encoder keeps its own)", "bn"))
register_knob(categorical("act", ACTS, "activation in the decoder blocks (the encoder keeps its "
                          "own)", "relu"))
register_knob(categorical("attention", ATTENTIONS, "attention in the decoder stages", "none"))
register_knob(flag(
    "deep_supervision", "dsv",
    "on: a 1x1 auxiliary head on every decoder stage but the last; the training loss is the "
    "weighted sum over the heads, weights halving per stage from the final head (nnU-Net's "
    "1, 1/2, 1/4, ...) normalised to sum 1 (4 stages: 8/15, 4/15, 2/15, 1/15), every head's "
    "logits upsampled to the input; evaluation, latency and the profile use the final head "
    "alone (the auxiliary heads' params are counted)", reaches="head"))
