"""Whether a tag value matches the text of a ``--tag name=value`` filter.

A filter is text; a tag is a value (``tag(1e-4)`` is the float 0.0001). Text tags compare as text;
other tags compare as values: the filter text is read as a JSON value, and numbers compare as
numbers, so ``--tag lr=1e-4`` and ``--tag lr=0.0001`` both select ``lr=tag(0.0001)``, and
``--tag n=3`` selects ``n=tag(3.0)``. Booleans match only booleans (``true``/``false``).
"""

from __future__ import annotations

from typing import Any

import orjson

_UNREADABLE = object()


def _read(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return _UNREADABLE


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def tag_matches(value: Any, wanted: str) -> bool:
    """Whether tag ``value`` is what the filter text ``wanted`` names."""
    if isinstance(value, str):
        return value == wanted
    parsed = _read(wanted.strip())
    if parsed is _UNREADABLE:
        return False
    if _is_number(value) or _is_number(parsed):
        return _is_number(value) and _is_number(parsed) and value == parsed
    if isinstance(value, bool) or isinstance(parsed, bool):
        return value is parsed
    return bool(value == parsed)


__all__ = ["tag_matches"]
