"""Checking ``a{sv}`` option dictionaries (already unwrapped to Python values)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from snapd_vss.errors import InvalidArgs


def check_options(
    options: Mapping[str, Any], allowed: Mapping[str, type], call: str
) -> dict[str, Any]:
    """Return the options if every key is known and every value has the right type."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise InvalidArgs(
            f"{call}: unknown option {', '.join(repr(k) for k in unknown)}; known options: {known}"
        )
    for key, value in options.items():
        wanted = allowed[key]
        if not isinstance(value, wanted) or (wanted is int and isinstance(value, bool)):
            raise InvalidArgs(
                f"{call}: option {key!r} must be of type {wanted.__name__}, "
                f"not {type(value).__name__}"
            )
    return dict(options)
