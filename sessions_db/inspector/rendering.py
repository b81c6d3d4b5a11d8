"""Pages from templates: the Jinja2 environment, its filters, and links inside the app.

Autoescaping is on for every template, SVG included: stored text (payloads,
user IDs, metadata) is data and is written as text, never as markup.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse

from ..cli._common import plain
from ..cli._render import content_text

#: Characters JSON leaves as they are that reorder or hide text on screen.
_UNSEEN = re.compile(r"[\x7f-\x9f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")

#: Pretty payloads longer than this (characters or lines) are folded.
FOLD_CHARS = 800
FOLD_LINES = 16


def pretty(value: Any) -> str:
    r"""Return ``value`` as indented JSON, with invisible characters as ``\uXXXX`` escapes."""
    text = json.dumps(value, ensure_ascii=False, indent=2, sort_keys=False)
    return _UNSEEN.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def compact(value: Any) -> str:
    """Return ``value`` as JSON on one line."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def content(payload: dict[str, Any]) -> str:
    """Return what a person reads of a message payload (its text, else its JSON)."""
    return content_text(payload)


def folds(text: str) -> bool:
    """Whether a pretty payload is long enough to be folded."""
    return len(text) > FOLD_CHARS or text.count("\n") >= FOLD_LINES


def when(value: datetime | None) -> str:
    """Return a time for people: UTC, to the second."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso(value: datetime) -> str:
    """Return a machine-readable time (for ``<time datetime=...>``)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def shown(value: object) -> str:
    r"""Return stored text to show: control and bidirectional characters as escapes (``\x1b``)."""
    return plain(str(value), lines=True)


def cut(value: object, limit: int = 80) -> str:
    """Return text on one line, cut to ``limit`` characters."""
    flat = " ".join(shown(value).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@cache
def environment() -> Environment:
    """Return the templates' environment (built once)."""
    env = Environment(
        loader=PackageLoader("sessions_db.inspector", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        pretty=pretty,
        compact=compact,
        content=content,
        when=when,
        iso=iso,
        shown=shown,
        cut=cut,
        folds=folds,
    )
    return env


class Links:
    """Paths inside the app for one request, under the prefix it is mounted at."""

    def __init__(self, request: Request) -> None:
        self._root = str(request.scope.get("root_path", "")).rstrip("/")

    def __call__(self, path: str, /, **query: object) -> str:
        """Return ``path`` (``/sessions/...``) with ``query`` (``None`` values left out)."""
        pairs = [(k, str(v)) for k, v in query.items() if v is not None and v != ""]
        tail = f"?{urlencode(pairs)}" if pairs else ""
        return f"{self._root}{quote(path)}{tail}"


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Return the page ``template`` renders with ``context``."""
    page = environment().get_template(template)
    body = page.render({"link": Links(request), "request_path": request.url.path, **context})
    return HTMLResponse(body, status_code=status, headers=headers)
