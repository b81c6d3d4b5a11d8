"""Store URLs as they may be shown: in error messages, reprs and command output.

A URL such as ``postgresql://app:s3cret@db/sessions`` carries the database
password; :func:`redact_url` is the one function that every message, repr and
report showing a URL goes through, so that none of them shows it.
"""

from __future__ import annotations

import re

#: What stands in for a removed password.
HIDDEN = "***"

# A password given as a query parameter (libpq accepts ``?password=...``).
_QUERY_SECRET = re.compile(r"(?i)((?:^|[?&;\s])(?:password|passwd|pwd|sslpassword)=)[^&;\s#]*")


def redact_url(url: object) -> str:
    """Return ``url`` as text with any password replaced by ``***``.

    Covers ``scheme://user:password@host/...`` (up to the last ``@`` before the
    query, so a password holding ``@`` or ``/`` is hidden whole) and
    ``password=`` parameters. Anything else is returned as it is; a value that
    is not text is shown by its type only.
    """
    if not isinstance(url, str):
        return f"<{type(url).__name__}>"
    text = url
    head, sep, rest = text.partition("://")
    if sep:
        before_query = re.split(r"[?#]", rest, maxsplit=1)[0]
        if "@" in before_query:
            userinfo, _, host_and_path = before_query.rpartition("@")
            if ":" in userinfo:
                user = userinfo.split(":", 1)[0]
                userinfo = f"{user}:{HIDDEN}"
            text = f"{head}://{userinfo}@{host_and_path}{rest[len(before_query) :]}"
    return _QUERY_SECRET.sub(lambda m: m.group(1) + HIDDEN, text)


def shown(url: object) -> str:
    """Return ``repr()`` of ``url`` with its password removed (for error messages)."""
    return repr(redact_url(url))
