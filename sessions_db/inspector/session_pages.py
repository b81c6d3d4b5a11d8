"""The pages of one session: its tree and messages, an entry, checksums, its export."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .. import ids
from ..checksum import branch_checksum
from ..cli._archive import encode, end_record, header_record, read_session, session_records
from ..cli._render import checkpoint_labels
from ..errors import InvalidIDError, SessionNotFoundError
from ..manager import Session
from ..types import Checkpoint, EntryType, SessionEntry
from . import params
from .markers import EVENT_MARKERS, marker_of
from .pages import manager_of
from .picture import describe, draw
from .rendering import render

#: Messages shown per page, newest first.
MESSAGES = 50


def _session(request: Request) -> Session:
    """Return the session the path names; 404 for an unknown or malformed ID."""
    raw = request.path_params["session_id"]
    try:
        session_id = ids.session_id(raw)
    except InvalidIDError:
        raise HTTPException(404, "no session has this ID") from None
    return manager_of(request).get(session_id)


def session(request: Request) -> Response:
    """Show a session: its details, its entry tree, its checkpoints and its newest messages."""
    expand = params.flag(request, "all")
    current = _session(request)
    meta = current.info()
    entries = current.get_entries()
    checkpoints = current.list_checkpoints()
    labels = checkpoint_labels(checkpoints)
    picture = draw(entries, meta.current_leaf, labels, expand=expand)
    messages = current.get_messages(limit=MESSAGES)
    older = messages[0].id if len(messages) == MESSAGES and meta.message_count > MESSAGES else None
    return render(
        request,
        "session.html",
        {
            "meta": meta,
            "picture": picture,
            "expand": expand,
            "checkpoints": checkpoints,
            "messages": list(reversed(messages)),
            "older": older,
            "markers": EVENT_MARKERS,
        },
    )


def messages(request: Request) -> Response:
    """Show the messages of the current branch before a given one, newest first."""
    current = _session(request)
    before = params.text(request, "before", limit=200)
    if before is None:
        raise HTTPException(400, "give the message to page back from (?before=)")
    try:
        found = current.get_messages(limit=MESSAGES, before=ids.entry_id(before))
    except InvalidIDError:
        raise HTTPException(404, "no message has this ID") from None
    older = found[0].id if len(found) == MESSAGES else None
    return render(
        request,
        "messages.html",
        {"meta": current.info(), "messages": list(reversed(found)), "older": older},
    )


def entry(request: Request) -> Response:
    """Show one entry of the tree, of any branch: what it holds, its parent and its children."""
    current = _session(request)
    wanted = request.path_params["entry_id"]
    meta = current.info()
    entries = current.get_entries()
    found = next((e for e in entries if e.id == wanted), None)
    if found is None:
        raise HTTPException(404, "no entry of this session has this ID")
    checkpoints = current.list_checkpoints()
    labels = checkpoint_labels(checkpoints)
    children = [e for e in entries if e.parent_id == found.id]
    path = _branch(entries, meta.current_leaf)
    checkpoint = next((cp for cp in checkpoints if cp.entry_id == found.id), None)
    return render(
        request,
        "entry.html",
        {
            "meta": meta,
            "entry": found,
            "marker": marker_of(found),
            "message": found.type is EntryType.MESSAGE,
            "children": [(child, describe(child, labels)) for child in children],
            "on_current": any(e.id == found.id for e in path),
            "checkpoint": checkpoint,
            "summary": describe(found, labels),
        },
    )


def _branch(entries: list[SessionEntry], leaf: str | None) -> list[SessionEntry]:
    """Return the entries from a root down to ``leaf`` (``[]`` if ``leaf`` is not among them)."""
    by_id = {e.id: e for e in entries}
    path: list[SessionEntry] = []
    node: SessionEntry | None = by_id.get(leaf) if leaf is not None else None
    seen: set[str] = set()
    while node is not None and node.id not in seen:
        seen.add(node.id)
        path.append(node)
        up = node.parent_id
        node = by_id.get(up) if up is not None else None
    path.reverse()
    return path


@dataclass(frozen=True, slots=True)
class Verdict:
    """The result of recomputing one checkpoint's checksum."""

    checkpoint: Checkpoint
    computed: str | None
    problem: str | None

    @property
    def ok(self) -> bool:
        """Whether the checksum matches."""
        return self.problem is None


def verify(request: Request) -> Response:
    """Recompute every checkpoint's checksum from the stored entries; restores nothing.

    The branch of a checkpoint is derived from ``Session.get_entries()``. In an
    encrypted store the checksums cover the payloads as stored (encrypted), so
    the entries are read as stored there.
    """
    current = _session(request)
    manager = manager_of(request)
    checkpoints = current.list_checkpoints()
    if manager.privacy.encrypted:
        entries = manager.backend.load_entries(current.id)
    else:
        entries = current.get_entries()
    verdicts = []
    for checkpoint in checkpoints:
        branch = _branch(entries, checkpoint.entry_id)
        if not branch:
            missing = f"its entry {checkpoint.entry_id} is missing"
            verdicts.append(Verdict(checkpoint, None, missing))
            continue
        computed = branch_checksum(branch)
        problem = None if computed == checkpoint.checksum else "the stored history differs"
        verdicts.append(Verdict(checkpoint, computed, problem))
    return render(
        request,
        "verify.html",
        {
            "meta": current.info(),
            "verdicts": verdicts,
            "labels": checkpoint_labels(checkpoints),
            "ok": all(v.ok for v in verdicts),
        },
    )


def export(request: Request) -> Response:
    """Send the session as the command line's ``export`` writes it (JSON Lines)."""
    current = _session(request)
    try:
        dump = read_session(manager_of(request).backend, current.id)
    except SessionNotFoundError:
        raise HTTPException(404, "no session has this ID") from None
    lines = [encode(header_record())]
    lines.extend(encode(record) for record in session_records(dump))
    lines.append(encode(end_record(1, len(dump.entries), len(dump.checkpoints))))
    return Response(
        "".join(lines),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="session-{current.id}.jsonl"'},
    )
