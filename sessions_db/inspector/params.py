"""Reading the query parameters of a page: each a value, ``None`` when absent, or a 400 page."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from starlette.exceptions import HTTPException
from starlette.requests import Request

from .. import ids
from ..errors import InvalidIDError


def text(request: Request, name: str, *, limit: int = 1000) -> str | None:
    """Return the parameter's text, ``None`` if absent or empty."""
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    if len(value) > limit:
        raise HTTPException(400, f"{name} is longer than {limit} characters")
    return value


def number(request: Request, name: str, default: int, *, low: int, high: int) -> int:
    """Return the parameter as an integer in ``[low, high]`` (``default`` if absent)."""
    value = text(request, name, limit=20)
    if value is None:
        return default
    try:
        found = int(value)
    except ValueError:
        raise HTTPException(400, f"{name} must be a whole number") from None
    if not low <= found <= high:
        raise HTTPException(400, f"{name} must be between {low} and {high}")
    return found


def flag(request: Request, name: str) -> bool:
    """Return whether the parameter is given as ``1``."""
    return request.query_params.get(name) == "1"


def moment(request: Request, name: str, *, end: bool = False) -> datetime | None:
    """Return a date (``2025-06-01``) or a UTC time (``2025-06-01T12:00``) as an aware datetime.

    With ``end``, a date means the end of that day (the next midnight), so that a
    range ``from``-``to`` includes the whole ``to`` day.
    """
    value = text(request, name, limit=40)
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            start = datetime.combine(day, time(), tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        found = datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(
            400, f"{name} must be a date (2025-06-01) or a time (2025-06-01T12:00)"
        ) from None
    return found.replace(tzinfo=UTC) if found.tzinfo is None else found.astimezone(UTC)


def user(request: Request, name: str = "user") -> str | None:
    """Return a user ID parameter, checked (``None`` if absent)."""
    value = text(request, name, limit=ids.MAX_USER_ID + 1)
    if value is None:
        return None
    try:
        return ids.user_id(value)
    except InvalidIDError as exc:
        raise HTTPException(400, str(exc)) from None


def agent(request: Request, name: str = "agent") -> str | None:
    """Return an agent name parameter, checked (``None`` if absent)."""
    value = text(request, name, limit=200)
    if value is None:
        return None
    try:
        return ids.agent_name(value)
    except InvalidIDError as exc:
        raise HTTPException(400, str(exc)) from None
