"""What every response of the inspector gets, and what every request must pass.

* Only ``GET`` and ``HEAD``: the inspector never changes data, so any other
  method is refused (405) before it reaches a route.
* With a token, every request carries it: ``Authorization: Bearer <token>``, or
  a cookie that ``?token=<token>`` sets once (``HttpOnly; SameSite=Strict``),
  after which the browser is sent to the same address without the token.
  Only the static files (stylesheet, script, icon) are served without it.
  Tokens are compared in constant time; the cookie holds an HMAC of the token,
  not the token.
* With ``allowed_hosts`` (what ``sessions-db serve`` gives when it serves
  127.0.0.1 without a token), a request whose ``Host`` is not one of them is
  refused, so that a web page cannot reach the inspector through a DNS name
  rebound to 127.0.0.1.
* Every response carries a strict Content-Security-Policy (scripts, styles and
  images from the inspector only; no inline script; no framing), and
  ``nosniff``, ``no-referrer`` and ``no-store`` headers.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterable
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The policy of every response: nothing but what the pages use, from the inspector itself.
CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}

#: The cookie that carries the token (as an HMAC) after ``?token=``.
COOKIE = "sessions_db_inspector"

#: Paths served without the token: the stylesheet, script and icon, which hold no data
#: (so that the page asking for the token is drawn like the others).
PUBLIC = "/static/"

#: Methods that read.
READ_METHODS = frozenset({"GET", "HEAD"})

#: Renders a plain error page: (scope, status, message) -> (body, content type).
ErrorPage = Callable[[Scope, int, str], tuple[bytes, str]]


def _plain_error(scope: Scope, status: int, message: str) -> tuple[bytes, str]:
    return message.encode("utf-8") + b"\n", "text/plain; charset=utf-8"


def cookie_value(token: str) -> str:
    """Return what the cookie holds for ``token``: an HMAC, so the cookie is not the token."""
    return hmac.new(token.encode("utf-8"), b"sessions_db inspector", hashlib.sha256).hexdigest()


def same(given: str, expected: str) -> bool:
    """Compare two secrets in constant time."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _host_name(host: str) -> str:
    """Return the host of a ``Host`` header without its port (``[::1]:80`` -> ``[::1]``)."""
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """ASGI middleware: read-only methods, the token, the host check, the security headers."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None = None,
        allowed_hosts: Iterable[str] | None = None,
        error_page: ErrorPage = _plain_error,
    ) -> None:
        self.app = app
        self.token = token
        self.allowed_hosts = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}
        self.error_page = error_page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the request, then pass it on with the headers added to its response."""
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)  # lifespan
            return
        secured = _secured(send)
        headers = Headers(scope=scope)
        if self.allowed_hosts is not None:
            host = _host_name(headers.get("host", "").lower())
            if host not in self.allowed_hosts:
                await self._error(scope, secured, 400, "This host name is not served here.")
                return
        if scope["method"] not in READ_METHODS:
            await self._error(
                scope, secured, 405, "The inspector only reads: use GET.", {"Allow": "GET, HEAD"}
            )
            return
        route = _route_path(scope)
        public = route.startswith(PUBLIC) and ".." not in route
        if (
            self.token is not None
            and not public
            and not await self._authorized(scope, headers, secured)
        ):
            return
        await self.app(scope, receive, secured)

    async def _authorized(self, scope: Scope, headers: Headers, send: Send) -> bool:
        assert self.token is not None
        expected_cookie = cookie_value(self.token)
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = [value for name, value in query if name == "token"]
        if given:
            if len(given) == 1 and same(given[0], self.token):
                rest = urlencode([(n, v) for n, v in query if n != "token"])
                path = scope.get("root_path", "") + _route_path(scope)
                cookie_path = scope.get("root_path", "") or "/"
                cookie = (
                    f"{COOKIE}={expected_cookie}; Path={cookie_path}; HttpOnly; SameSite=Strict"
                )
                if scope.get("scheme") == "https":
                    cookie += "; Secure"
                await _send(
                    send,
                    303,
                    b"",
                    "text/plain; charset=utf-8",
                    {"Location": path + (f"?{rest}" if rest else ""), "Set-Cookie": cookie},
                )
                return False
            await self._error(scope, send, 401, "Wrong token.")
            return False
        authorization = headers.get("authorization", "")
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and same(value.strip(), self.token):
            return True
        jar = SimpleCookie()
        try:
            jar.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header carries no token
            jar = SimpleCookie()
        morsel = jar.get(COOKIE)
        if morsel is not None and same(morsel.value, expected_cookie):
            return True
        await self._error(
            scope,
            send,
            401,
            "This inspector needs its token: open it with ?token=<token> once, "
            "or send Authorization: Bearer <token>.",
            {"WWW-Authenticate": 'Bearer realm="sessions_db inspector"'},
        )
        return False

    async def _error(
        self,
        scope: Scope,
        send: Send,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        body, content_type = self.error_page(scope, status, message)
        if scope["method"] == "HEAD":
            body = b""
        await _send(send, status, body, content_type, headers or {})


def _route_path(scope: Scope) -> str:
    path = str(scope.get("path", "/"))
    root = str(scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root) else path


async def _send(
    send: Send, status: int, body: bytes, content_type: str, headers: dict[str, str]
) -> None:
    raw = [(b"content-type", content_type.encode("latin-1"))]
    raw.append((b"content-length", str(len(body)).encode("latin-1")))
    raw.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _secured(send: Send) -> Callable[[Message], Awaitable[None]]:
    """Wrap ``send`` so that every response starts with the security headers."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for name, value in HEADERS.items():
                headers[name] = value
        await send(message)

    return wrapped
