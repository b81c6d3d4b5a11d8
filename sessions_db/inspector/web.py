"""The inspector's ASGI app: its routes, its error pages, and the guard around it."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Scope

from ..cli._common import CLIError
from ..errors import (
    CheckpointNotFoundError,
    EntryNotFoundError,
    InvalidArgumentError,
    InvalidIDError,
    SessionNotFoundError,
    SessionsDBError,
    StorageTimeoutError,
    StorageUnavailableError,
)
from ..manager import Manager
from . import pages, session_pages
from .rendering import Links, environment, render
from .security import Guard

log = logging.getLogger("sessions_db.inspector")

STATIC = Path(__file__).parent / "static"

TITLES = {
    400: "Bad request",
    401: "Token needed",
    404: "Not found",
    405: "Read-only",
    500: "Internal error",
    503: "Store unavailable",
}


def _status(error: SessionsDBError) -> int:
    if isinstance(
        error, SessionNotFoundError | CheckpointNotFoundError | EntryNotFoundError | InvalidIDError
    ):
        return 404
    if isinstance(error, InvalidArgumentError):
        return 400
    if isinstance(error, StorageUnavailableError | StorageTimeoutError):
        return 503
    return 500


def _page(request: Request, status: int, message: str) -> Response:
    title = TITLES.get(status, "Error")
    return render(
        request, "error.html", {"status": status, "title": title, "message": message}, status=status
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _page(request, exc.status_code, str(exc.detail))


async def _store_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SessionsDBError)
    status = _status(exc)
    if status == 500:
        log.error("the store failed: %s: %s", type(exc).__name__, exc)
        return _page(request, 500, "The store could not answer this request.")
    return _page(request, status, str(exc))


async def _busy(request: Request, exc: Exception) -> Response:
    return _page(request, 503, str(exc))


async def _internal(request: Request, exc: Exception) -> Response:
    log.error("the inspector failed on %s", request.url.path, exc_info=exc)
    return _page(request, 500, "The inspector could not show this page.")


def error_body(scope: Scope, status: int, message: str) -> tuple[bytes, str]:
    """Render the error page for the guard (before any route runs)."""
    title = TITLES.get(status, "Error")
    page = environment().get_template("error.html")
    links = Links(Request(scope))
    body = page.render(
        {"status": status, "title": title, "message": message, "link": links, "request_path": ""}
    )
    return body.encode("utf-8"), "text/html; charset=utf-8"


def routes() -> list[BaseRoute]:
    """Return the routes: every one reads (``GET``, and ``HEAD`` with it)."""
    return [
        Route("/", pages.agents, methods=["GET"]),
        Route("/sessions", pages.sessions, methods=["GET"]),
        Route("/find", pages.find, methods=["GET"]),
        Route("/search", pages.search, methods=["GET"]),
        Route("/stats", pages.stats, methods=["GET"]),
        Route("/sessions/{session_id}", session_pages.session, methods=["GET"]),
        Route("/sessions/{session_id}/messages", session_pages.messages, methods=["GET"]),
        Route("/sessions/{session_id}/entries/{entry_id}", session_pages.entry, methods=["GET"]),
        Route("/sessions/{session_id}/verify", session_pages.verify, methods=["GET"]),
        Route("/sessions/{session_id}/export.jsonl", session_pages.export, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC)),
    ]


def build(
    manager: Manager, *, token: str | None = None, allowed_hosts: Iterable[str] | None = None
) -> ASGIApp:
    """Return the inspector of ``manager`` (see :func:`sessions_db.inspector.app`)."""
    inner = Starlette(
        routes=routes(),
        exception_handlers={
            HTTPException: _http_error,
            SessionsDBError: _store_error,
            CLIError: _busy,
            Exception: _internal,
        },
    )
    inner.state.manager = manager
    return Guard(inner, token=token, allowed_hosts=allowed_hosts, error_page=error_body)
