"""A read-only web inspector of a sessions_db store (extra ``sessions_db[inspector]``).

:func:`app` returns an ASGI app that shows a store's agents, their sessions,
each session's entry tree, messages and checkpoints, a search over a user's
messages and statistics; ``sessions-db serve`` runs it with uvicorn. Pages are
rendered on the server and work without JavaScript. No route changes data.

Mount it in a Starlette or FastAPI service behind that service's own
authentication::

    from starlette.routing import Mount
    from sessions_db.inspector import app

    routes = [Mount("/inspector", app=app(manager))]
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp

from ..manager import Manager

__all__ = ["app"]


def app(
    manager: Manager, *, token: str | None = None, allowed_hosts: Iterable[str] | None = None
) -> ASGIApp:
    """Return the inspector of ``manager`` as an ASGI app.

    With ``token``, every request must carry it (``Authorization: Bearer``, or
    the cookie ``?token=`` sets). With ``allowed_hosts``, requests naming another
    host in ``Host`` are refused. The app never closes ``manager``.
    """
    from .web import build  # noqa: PLC0415 - the app's modules load with the app

    return build(manager, token=token, allowed_hosts=allowed_hosts)
