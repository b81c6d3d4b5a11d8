"""``serve``: the read-only web inspector of a store (extra ``sessions_db[inspector]``)."""

from __future__ import annotations

import ipaddress

import click

from ._app import main
from ._common import EXIT_ERROR, EXIT_USAGE, CLIError, open_store, url_option

#: The environment variable that gives the inspector's token.
TOKEN_VARIABLE = "SESSIONS_DB_INSPECTOR_TOKEN"
#: The shortest token accepted.
MIN_TOKEN = 16
#: Host names a browser on this machine uses for 127.0.0.1 and ::1.
LOCAL_NAMES = ("127.0.0.1", "localhost", "[::1]")


def is_local(host: str) -> bool:
    """Whether ``host`` is a loopback address (only this machine can connect)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse a bind that would serve the store beyond this machine without a token."""
    if token is not None and len(token) < MIN_TOKEN:
        raise CLIError(f"the token must be at least {MIN_TOKEN} characters", EXIT_USAGE)
    if not is_local(host) and token is None:
        raise CLIError(
            f"refusing to serve on {host} without a token: anyone who reaches it would read "
            f"the store. Give --token (or set {TOKEN_VARIABLE}), or serve on 127.0.0.1",
            EXIT_USAGE,
        )


@main.command()
@url_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="TCP port."
)
@click.option(
    "--token",
    envvar=TOKEN_VARIABLE,
    default=None,
    help=f"Require this secret on every request (at least {MIN_TOKEN} characters; "
    f"default ${TOKEN_VARIABLE}, which keeps it out of the process list). "
    "Needed for any address other than 127.0.0.1.",
)
def serve(url: str, host: str, port: int, token: str | None) -> None:
    """Serve a read-only web inspector of the store: agents, sessions, trees, search, stats.

    Binds 127.0.0.1 unless told otherwise; any other address needs a token, which
    every request must then carry (Authorization: Bearer TOKEN, or open the page
    once with ?token=TOKEN to get a cookie). Stop it with Ctrl-C.
    """
    token = token or None
    check_bind(host, token)
    try:
        import uvicorn  # noqa: PLC0415 - only this command needs the extra

        from ..inspector import app  # noqa: PLC0415
    except ImportError as exc:
        raise CLIError(
            f"serve needs the inspector extra ({exc.name} is missing): "
            "pip install 'sessions_db[inspector]'",
            EXIT_ERROR,
        ) from None
    allowed = None if token is not None else [*LOCAL_NAMES, host.lower()]
    with open_store(url) as manager:
        inspector = app(manager, token=token, allowed_hosts=allowed)
        shown = f"[{host}]" if ":" in host else host
        where = f"http://{shown}:{port}/"
        click.echo(f"inspecting the store read-only at {where} (Ctrl-C stops)", err=True)
        uvicorn.run(inspector, host=host, port=port, log_level="warning", server_header=False)
