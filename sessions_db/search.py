"""Finding a user's past messages: the text that is searched, and the scanning search.

**What is indexed.** The text of a message is the string values of its payload,
at any depth (``{"content": "..."}``, tool results, lists of parts), joined by
spaces; keys, numbers and booleans are not searched, nor the role. Only message
entries are searched, on every branch of every session of the user.

**How a query matches.** The query is split into words (case-insensitive, up
to :data:`MAX_TERMS`); a message matches when it contains any of them, and
ranks higher the more of the words it contains and the more often. There is no
stemming and there are no stop words, so any language works alike.

* PostgreSQL: ``to_tsvector('simple', ...)`` of the first 100,000 characters of
  that text (:data:`~sessions_db.sql.schema.PG_FTS_CHARS`; a text-search vector
  must stay under 1 MB, so words past the cut are not found, though the message
  is stored whole) with a GIN expression index, the words OR-ed into a
  ``tsquery``, ranked by ``ts_rank``.
* SQLite: an FTS5 table kept in sync by triggers, ranked by ``bm25``.
* Any other backend (the file store, a user's own): :func:`sessions_db.storage.scan`
  reads the user's messages and ranks them by term frequency (:func:`score`:
  ``sum(1 + ln(tf))`` over the query words). So does every backend when
  payloads are encrypted.

**Switched off.** A SQL store migrated with ``sessions-db migrate --no-search``
(``migrations.upgrade(..., search=False)``) has neither the GIN index nor the
FTS5 tables: searching it raises :class:`~sessions_db.UnsupportedOperationError`
(naming ``sessions-db migrate --search``, which indexes every stored message
again) rather than reading every message; see :mod:`sessions_db.sql.fulltext`.
Encrypted stores search by scanning either way.

Scores are larger for better matches; they are comparable within one result
list, not between backends. Equal scores are ordered newest first.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

#: Words of a query beyond this many are ignored.
MAX_TERMS = 32

_WORD = re.compile(r"\w+")


def terms(query: str) -> list[str]:
    """Return the distinct lower-case words of ``query``, in order (at most :data:`MAX_TERMS`)."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(query.lower()):
        seen.setdefault(word, None)
        if len(seen) == MAX_TERMS:
            break
    return list(seen)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def payload_text(payload: dict[str, Any]) -> str:
    """Return the searchable text of a payload: its string values, joined by spaces."""
    return " ".join(_strings(payload))


def score(query_terms: list[str], text: str) -> float:
    """Return the term-frequency score of ``text`` for ``query_terms`` (0: no match)."""
    counts = Counter(_WORD.findall(text.lower()))
    total = 0.0
    for term in query_terms:
        tf = counts.get(term, 0)
        if tf:
            total += 1.0 + math.log(tf)
    return total
