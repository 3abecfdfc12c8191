"""Validation at the boundary: the checks every config, option and knob parser shares.

Each error names the bad value and what is allowed, in one wording across the package:
``name=value is not allowed; allowed: ...`` and ``unknown <what> 'x'; allowed: a, b``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

#: Which way is better, the one word pair of every registry (metrics, costs) and YAML key; prose
#: says "higher" or "lower" (:func:`better_word`), Optuna's words are made at the Optuna call.
BETTER = ("max", "min")


def to_int(value: Any) -> int:
    """An integer from an int, an integral float or a numeric string; bools are refused.

    Raises ``ValueError`` (or ``TypeError``) for anything else; callers add the allowed values.
    """
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(value)
    return int(value.strip()) if isinstance(value, str) else int(value)


def is_int(value: Any) -> bool:
    """A real ``int`` (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def positive_number(name: str, value: Any, allowed: str = "a number > 0") -> float:
    """A finite number > 0 as a float; bools, strings, NaN and infinities are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value <= 0:
        raise not_allowed(name, value, allowed)
    return float(value)


def not_allowed(name: str, value: Any, allowed: str, why: str = "") -> ValueError:
    """The package's one wording for a bad value."""
    why = f" ({why})" if why else ""
    return ValueError(f"{name}={value!r} is not allowed{why}; allowed: {allowed}")


def refuse_unknown(keys: Iterable[Any], allowed: Iterable[str], what: str,
                   error: type[Exception] = ValueError, prefix: str = "",
                   suffix: str = "") -> None:
    """Raise ``error`` naming every key not in ``allowed`` (unknown keys are never ignored)."""
    allowed = list(allowed)
    unknown = sorted(set(keys) - set(allowed), key=str)
    if unknown:
        raise error(f"{prefix}unknown {what} {', '.join(map(repr, unknown))}{suffix}; "
                    f"allowed: {', '.join(allowed) or 'none'}")


def untaken(builder: Callable[..., Any], names: Iterable[str]) -> list[str]:
    """The ``names`` that ``builder`` has no keyword parameter for (none: it takes ``**kwargs``)."""
    params = inspect.signature(builder).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return []
    keywords = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return [n for n in names if n not in keywords]


def refuse_untaken(options: Mapping[str, Any], picked: str,
                   builders: Mapping[str, Callable[..., Any]], needs: str, label: str) -> None:
    """Refuse ``options`` (values for keyword arguments) that ``builders[picked]`` does not take:
    a ``ValueError`` naming the first such option and its value, what it ``needs`` (e.g. "a
    decoder block") with every entry of ``builders`` whose builder takes it, and ``label`` (e.g.
    "block conv"), the one that does not, with its builder."""
    builder = builders[picked]
    for name in untaken(builder, options):
        able = [value for value, other in builders.items() if not untaken(other, (name,))]
        own = getattr(builder, "__qualname__", type(builder).__name__)
        raise ValueError(f"{name}={options[name]!r} needs {needs} that takes `{name}` "
                         f"({', '.join(able) or 'none is registered'}); {label} does not (its "
                         f"builder {own} has no `{name}` argument)")


def check_better(better: Any) -> str:
    """``better`` if it is one of :data:`BETTER`; otherwise the package's error."""
    if better not in BETTER:
        raise not_allowed("better", better, ", ".join(BETTER))
    return better


def better_word(better: str) -> str:
    """``"higher"`` or ``"lower"`` (is better): ``better`` in a sentence."""
    return {"max": "higher", "min": "lower"}[check_better(better)]


def oriented(better: str) -> float:
    """+1.0 for ``max``, -1.0 for ``min``: a value times it is larger when it is better."""
    return 1.0 if check_better(better) == "max" else -1.0
