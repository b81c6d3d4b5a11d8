"""Payload checks and the JSON forms payloads are stored and hashed in.

A payload is accepted only if every backend stores it so that it reads back
equal: JSON objects with string keys, arrays, strings, finite numbers, booleans
and null. Anything else raises :class:`PayloadError` before anything is written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from .errors import PayloadError

#: Deepest nesting of objects and arrays accepted (PostgreSQL's jsonb parser and
#: Python's json module both recurse, so unbounded depth is not storable).
MAX_DEPTH = 256

_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_dumps_sorted = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=True
).encode


def _check_str(value: str, where: str) -> None:
    if "\x00" in value:
        raise PayloadError(f"{where}: NUL characters cannot be stored (PostgreSQL rejects them)")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise PayloadError(f"{where}: lone surrogate characters cannot be stored") from None


def _check(value: Any, where: str, depth: int) -> None:
    kind = type(value)
    if kind is str:
        _check_str(value, where)
    elif kind is bool or kind is int or value is None:
        return
    elif kind is float:
        if not math.isfinite(value):
            raise PayloadError(f"{where}: {value!r} is not a JSON number")
    elif isinstance(value, dict):
        if depth >= MAX_DEPTH:
            raise PayloadError(f"{where}: nested deeper than {MAX_DEPTH} levels")
        for key, item in value.items():
            if type(key) is not str:
                raise PayloadError(
                    f"{where}: object keys must be strings, not {type(key).__name__} ({key!r})"
                )
            _check_str(key, where)
            _check(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list):
        if depth >= MAX_DEPTH:
            raise PayloadError(f"{where}: nested deeper than {MAX_DEPTH} levels")
        for index, item in enumerate(value):
            _check(item, f"{where}[{index}]", depth + 1)
    elif isinstance(value, str):
        _check_str(value, where)
    elif isinstance(value, bool | int):
        return
    elif isinstance(value, float):
        _check(float(value), where, depth)
    else:
        raise PayloadError(
            f"{where}: {type(value).__name__} is not a JSON value "
            "(use dict, list, str, int, float, bool or None)"
        )


def check(value: object, what: str = "payload") -> dict[str, Any]:
    """Return ``value`` if it is a storable JSON object, else raise :class:`PayloadError`."""
    if not isinstance(value, Mapping) or not isinstance(value, dict):
        raise PayloadError(f"{what} must be a dict, not {type(value).__name__}")
    _check(value, what, 0)
    return value


def _normalize_numbers(value: Any) -> Any:
    # PostgreSQL's jsonb keeps numbers as numeric: 1e16 comes back as the integer
    # 10000000000000000 and -0.0 as 0. Equal values must hash alike on every
    # backend, so integral floats are hashed as integers.
    kind = type(value)
    if kind is float:
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {k: _normalize_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalize_numbers(v) for v in value]
    return value


def canonical(value: Any) -> str:
    """Return the canonical JSON text of ``value``, used for checksums.

    Keys are sorted, separators are compact, and numbers that are equal are
    written alike, so the text is the same whichever backend stored the value.
    """
    return _dumps_sorted(_normalize_numbers(value))


def _float_text(value: float) -> str:
    text = repr(value)
    if "e+" in text:
        # An integral float of 1e16 or more: written in full with ".0" so that
        # PostgreSQL's jsonb (which keeps the decimal digits it is given and
        # drops the exponent) hands back a float, equal to this one.
        return f"{int(Decimal(text))}.0"
    return text


def _slow_dumps(value: Any) -> str:
    kind = type(value)
    if kind is float or (isinstance(value, float) and not isinstance(value, bool)):
        return _float_text(float(value))
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(_dumps(key) + ":" + _slow_dumps(item) for key, item in value.items())
            + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(_slow_dumps(item) for item in value) + "]"
    return _dumps(value)


_raw_decode = json.JSONDecoder().raw_decode


def loads(text: str | bytes) -> Any:
    """Parse JSON text as :func:`json.loads` does, faster for the compact text we store.

    ``raw_decode`` skips the two whitespace scans of ``json.loads``; text with
    whitespace around its value (written by others) takes the usual path.
    Bytes (as a driver hands them over) are UTF-8.
    """
    if not isinstance(text, str):
        text = bytes(text).decode("utf-8")
    try:
        value, end = _raw_decode(text)
    except json.JSONDecodeError:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def dumps(value: object) -> str:
    """Return the compact JSON text of an already checked value (no walk).

    Still refuses NaN and non-JSON objects, so a backend can never write them.
    Large integral floats are written so that they read back as the same float
    from every backend (see :func:`_float_text`).
    """
    try:
        text = _dumps(value)
        if "e+" in text:
            text = _slow_dumps(value)
    except (ValueError, TypeError, RecursionError) as exc:
        raise PayloadError(f"cannot be encoded as JSON: {exc}") from exc
    return text
