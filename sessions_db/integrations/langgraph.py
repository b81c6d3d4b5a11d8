"""LangGraph checkpoints kept in sessions_db: :class:`SessionsDBSaver`.

``SessionsDBSaver`` is a LangGraph ``BaseCheckpointSaver`` (sync and asyncio)
that keeps each thread's checkpoints as a sessions_db session tree, stores each
message of a conversation once, and refuses to lose a write silently when two
runs race on one thread. Install it with ``pip install sessions_db[langgraph]``::

    from sessions_db.integrations.langgraph import SessionsDBSaver

    checkpointer = SessionsDBSaver("postgresql://app@db/app")  # was PostgresSaver
    graph = builder.compile(checkpointer=checkpointer)

**Where a thread is stored.** Each ``(thread_id, checkpoint_ns)`` of LangGraph
(the root graph has the namespace ``""``, a subgraph ``"node:<task>"``) is one
session of the agent ``"langgraph"`` (``agent_name=``), whose external key is
:func:`thread_key` (the thread ID itself for the root graph), and whose metadata
holds ``thread_id`` and ``checkpoint_ns``. So a thread is a query away::

    mgr.get_by_key("langgraph", "thread-1")                   # the root graph's session
    mgr.list("langgraph", metadata={"thread_id": "thread-1"})  # with its subgraphs'

A ``user_id`` in the config's ``configurable`` makes the session that user's
(when the session is created), so ``Manager.erase_user`` removes the user's threads.

**The tree.** LangGraph's checkpoints form a tree (each names its parent); they
are the metadata entries of event :data:`CHECKPOINT_EVENT` of the session's tree,
each a child of its parent checkpoint's entry (a checkpoint without a parent
starts a new root). Between a checkpoint and its parent come the messages that
step added (message entries); the writes of a step's tasks (``put_writes``) are
entries of event :data:`WRITES_EVENT` under the checkpoint they belong to.

"The latest checkpoint" is LangGraph's: the greatest checkpoint ID of the thread
and namespace, whichever branch it is on. The session's current leaf is kept at
it (its entry, or an entry under it), so finding it costs no search and the
session's ``get_messages()`` is the latest state's conversation: when something
is stored elsewhere in the tree (writes that LangGraph saves late, under an older
checkpoint), an entry of event :data:`LATEST_EVENT` under the latest checkpoint
brings the leaf back.

**Messages stored once.** When the channel ``messages_channel`` (``"messages"``,
as in ``MessagesState``) holds a list of LangChain messages that grew by
appending (the ``add_messages`` reducer's usual case), the new messages are
appended as sessions_db messages (role ``user``, ``assistant``, ``system`` or
``tool``; the payload is the message's LangChain dict, with ``content`` at the
top), and the list is rebuilt from the branch on read: ``get_messages()`` of the
session returns the conversation, and the work of a step does not grow with it
(the saver keeps the lists it wrote or read, so a serving process does not read
them back). When the list was rewritten (a message replaced or removed, the list
reordered), the checkpoint starts a new root, marked by an entry of event
:data:`RESET_EVENT`, holding the whole list again as messages. Messages are
taken as immutable once stored, as LangGraph's reducers treat them: change one
by returning a message with its ID (``add_messages`` replaces it), not by
changing the object in place.

Other channels are stored by version, as LangGraph's own savers do: a channel
that changed is stored in the checkpoint's entry (``serde``'s bytes; strings,
booleans, ``None`` and small integers as JSON), an unchanged one is a reference
to the entry that holds it.

**Encryption.** With an encrypting ``serde`` (LangGraph's
``EncryptedSerializer``), every value, every message list included, goes
through it: nothing it would encrypt is stored in clear (the message channel is
then stored whole at each change, as ``PostgresSaver`` stores it), unless the
manager has a sessions_db keyring: then messages are stored once as message
entries, encrypted by the keyring, and so are the values, writes and
checkpoint metadata of the saver's entries. Without a keyring, checkpoint
metadata is stored in clear, as LangGraph's savers store it (``list`` filters on it).

**Two writers.** A graph run that read a thread's latest checkpoint (``invoke``
without a ``checkpoint_id``) may only add to it: if another run stored a
checkpoint on the thread since, its next ``put`` raises
:class:`CheckpointConflictError`, stores nothing, and the run fails with it, so
no write is lost silently (run it again from the new latest checkpoint). A run
started from a chosen ``checkpoint_id`` (time travel, replay, a resume of an
old interrupt) may branch from that checkpoint once, then extends its own
branch. A run is recognized by the runtime LangGraph passes to every read and
put of one run; what comes without one is taken as it comes, as LangGraph's
savers take it: direct calls of the saver's methods, and ``update_state``
(LangGraph passes it no runtime), which therefore should not race a run on the
same thread.

**Extended capabilities.** ``copy_thread`` copies every namespace's session
whole (every branch, the same checkpoint IDs) under the target's keys;
``prune`` and ``delete_for_runs`` replace the sessions they change by new ones
holding what is kept (entries cannot be deleted one by one), in one
transaction on SQL stores; ``delete_for_runs`` reads every session of the
agent to find the runs' checkpoints. ``prune(strategy="keep_latest")`` refuses
threads that use a ``DeltaChannel``, as ``PostgresSaver`` does.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import hashlib
import json
import logging
import random
import re
import threading
import time
import uuid
import weakref
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, cast

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    ChatMessageChunk,
    FunctionMessage,
    FunctionMessageChunk,
    HumanMessage,
    HumanMessageChunk,
    SystemMessage,
    SystemMessageChunk,
    ToolMessage,
    ToolMessageChunk,
    message_to_dict,
    messages_from_dict,
)
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from .. import ids, payload, rules
from ..aio import AsyncManager
from ..aio import connect as aio_connect
from ..connect import connect
from ..crypto import message_context
from ..errors import (
    DuplicateEntryError,
    DuplicateKeyError,
    EncryptionError,
    EntryNotFoundError,
    InvalidArgumentError,
    PayloadError,
    SessionNotFoundError,
    SessionsDBError,
    UnsupportedOperationError,
)
from ..manager import Manager
from ..privacy import Privacy
from ..storage import BranchQuery, UnitOfWork
from ..types import EntryType, Message, SessionEntry, SessionMetadata, message_role

__all__ = [
    "CHECKPOINT_EVENT",
    "DEFAULT_AGENT",
    "LATEST_EVENT",
    "RESET_EVENT",
    "WRITES_EVENT",
    "CheckpointConflictError",
    "SessionsDBSaver",
    "thread_key",
]

_log = logging.getLogger("sessions_db.langgraph")

#: The agent of the sessions that hold LangGraph threads (``agent_name=`` changes it).
DEFAULT_AGENT = "langgraph"
#: The ``event`` of the metadata entry that records one LangGraph checkpoint.
CHECKPOINT_EVENT = "langgraph.checkpoint"
#: The ``event`` of the metadata entry that records one ``put_writes`` call.
WRITES_EVENT = "langgraph.writes"
#: The ``event`` of the root entry a checkpoint starts when its message list was rewritten.
RESET_EVENT = "langgraph.reset"
#: The ``event`` of the entry that brings the session's current branch back to the latest
#: checkpoint, after writes were stored under an older one.
LATEST_EVENT = "langgraph.latest"

#: Session metadata keys.
META_THREAD = "thread_id"
META_NAMESPACE = "checkpoint_ns"

# Where LangGraph's run puts its runtime object in the config of every get_tuple
# and put of a run (the same object for one run).
_RUNTIME_KEY = "__pregel_runtime"
# The fields of the saver's entries that a keyring encrypts.
_SECRET_FIELDS = ("values", "metadata", "writes")
_SEALED = "sealed"
# Entry IDs: "lgc:" + a checkpoint ID that is a safe token, else "lgh:" + a digest of it;
# the entries under a checkpoint's (writes, markers) add "." and a suffix to its ID.
_SAFE_ID = re.compile(r"[A-Za-z0-9_:-]{1,90}")
# JSON keeps integers exactly in every store up to here (PostgreSQL's jsonb, SQLite's JSON).
_MAX_INLINE_INT = 2**53
# How long writes that came before their checkpoint wait for it.
_EARLY_WRITES_TTL = 600.0

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


class CheckpointConflictError(SessionsDBError):
    """Another run stored a checkpoint on the thread since this run read it; nothing was stored.

    Raised by ``put`` (so by ``invoke``/``ainvoke``) when a graph run that read the
    thread's latest checkpoint would add a checkpoint under one that is no longer
    the latest: two runs on one thread from the same parent. What the run stored
    before stays (its earlier checkpoints and writes); the run that moved the
    thread on may have taken up this run's input from them, as LangGraph resumes
    the pending writes of the latest checkpoint. Read the thread's state, then
    run the graph again if its input is not there.
    """


def thread_key(thread_id: str, checkpoint_ns: str = "") -> str:
    """Return the external key of the session that holds ``thread_id``'s namespace.

    The thread ID itself for the root graph (``checkpoint_ns`` ``""``), else the
    JSON text ``["<thread_id>","<checkpoint_ns>"]`` (also for a thread ID that
    starts with ``[`` or is empty, so that no two threads share a key).
    """
    if not checkpoint_ns and thread_id and not thread_id.startswith("["):
        return thread_id
    return json.dumps([thread_id, checkpoint_ns], ensure_ascii=False, separators=(",", ":"))


def checkpoint_entry_id(checkpoint_id: str) -> str:
    """Return the ID of the entry that records the checkpoint ``checkpoint_id``.

    ``lgc:<checkpoint_id>`` (``lgh:<sha256>`` for an ID that is not a short
    token); the writes and markers under it are ``<that ID>.<suffix>``.
    """
    if _SAFE_ID.fullmatch(checkpoint_id):
        return "lgc:" + checkpoint_id
    return "lgh:" + hashlib.sha256(checkpoint_id.encode("utf-8", "surrogatepass")).hexdigest()


# -- small pieces ---------------------------------------------------------------------


class _Lru(Generic[K, V]):
    """A bounded map that forgets its least recently used items; thread-safe."""

    def __init__(self, size: int) -> None:
        self._items: OrderedDict[K, V] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def drop(self, keep: Callable[[K], bool]) -> None:
        with self._lock:
            for key in [k for k in self._items if not keep(k)]:
                del self._items[key]


@dataclass(frozen=True, slots=True)
class _Session:
    """A session that holds one thread's namespace: its ID and its user."""

    id: str
    owner: str | None


@dataclass(slots=True)
class _State:
    """A stored checkpoint: its entry, its (opened) data, and its message list once read."""

    entry_id: str
    data: dict[str, Any]
    messages: list[BaseMessage] | None = None


@dataclass(slots=True)
class _Intent:
    """What a graph run read of a thread: the latest checkpoint, or a chosen one.

    ``explicit`` is the checkpoint the run asked for, from which its next put
    may branch once; ``None`` once it has (or when it read the latest).
    """

    runtime: object
    explicit: str | None


@dataclass(slots=True)
class _Writes:
    """One ``put_writes`` call, its values serialized."""

    task_id: str
    task_path: str
    items: list[tuple[int, str, dict[str, Any]]]
    upsert: bool
    since: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class _Run(Generic[T]):
    """A piece of work for one unit of work of the store."""

    work: Callable[[UnitOfWork], T]
    write: bool


#: An operation: it yields the work it needs done and is sent each result.
_Steps = Generator[_Run[Any], Any, T]

_INTENTS: ContextVar[Mapping[tuple[int, str, str], _Intent] | None] = ContextVar(
    "sessions_db_langgraph_intents", default=None
)


class _Shared:
    """What every copy of one saver shares (``with_allowlist`` copies a saver shallowly)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sessions: _Lru[tuple[str, str], _Session] = _Lru(4096)
        self.states: _Lru[tuple[str, str], _State] = _Lru(512)
        self.landed: _Lru[tuple[str, str, str], bool] = _Lru(4096)
        self.early: dict[tuple[str, str, str], list[_Writes]] = {}
        self.async_managers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncManager] = (
            weakref.WeakKeyDictionary()
        )
        self.async_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )


def _thread_of(config: RunnableConfig) -> tuple[Any, str, str]:
    """Return the thread ID as given, as text, and the namespace of ``config``."""
    conf = config.get("configurable") or {}
    if conf.get("thread_id") is None:
        raise InvalidArgumentError('the config has no "thread_id" in "configurable"')
    given = conf["thread_id"]
    return given, str(given), str(conf.get("checkpoint_ns") or "")


def _role(message: BaseMessage) -> str:
    if isinstance(message, HumanMessage):
        return "user"
    if isinstance(message, AIMessage):
        return "assistant"
    if isinstance(message, SystemMessage):
        return "system"
    if isinstance(message, ToolMessage):
        return "tool"
    if isinstance(message, FunctionMessage):
        return "function"
    role = message.role if isinstance(message, ChatMessage) else message.type
    try:
        return message_role(role)
    except PayloadError:
        return "message"


#: LangChain's message classes by their ``type``.
_MESSAGE_TYPES: dict[str, type[BaseMessage]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        HumanMessage,
        AIMessage,
        SystemMessage,
        ToolMessage,
        FunctionMessage,
        ChatMessage,
        HumanMessageChunk,
        AIMessageChunk,
        SystemMessageChunk,
        ToolMessageChunk,
        FunctionMessageChunk,
        ChatMessageChunk,
    )
}


def _message_from(data: dict[str, Any]) -> BaseMessage:
    """Return the message of LangChain's dict of it (``message_to_dict``'s ``data``).

    Built without validating again (the dict was checked to read back equal
    when it was stored); a type this table does not know goes through LangChain.
    """
    cls = _MESSAGE_TYPES.get(data.get("type", ""))
    if cls is None:
        return messages_from_dict([{"type": data["type"], "data": data}])[0]
    return cls.model_construct(**data)


def _is_message_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(m, BaseMessage) for m in value)


def _extends(old: Sequence[BaseMessage], new: Sequence[BaseMessage]) -> bool:
    """Whether ``new`` is ``old`` with messages added at the end (same objects, or equal)."""
    if len(new) < len(old):
        return False
    return all(a is b or a == b for a, b in zip(old, new, strict=False))


def _chains(entries: Sequence[SessionEntry]) -> Iterator[list[SessionEntry]]:
    """Split entries (parents first) into runs where each entry follows the one before."""
    chain: list[SessionEntry] = []
    for entry in entries:
        if chain and entry.parent_id == chain[-1].id:
            chain.append(entry)
            continue
        if chain:
            yield chain
        chain = [entry]
    if chain:
        yield chain


def _event(entry: SessionEntry) -> str | None:
    if entry.type is not EntryType.METADATA:
        return None
    event = entry.data.get("event")
    return event if isinstance(event, str) else None


def _config(thread_id: Any, namespace: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": namespace,
            "checkpoint_id": checkpoint_id,
        }
    }


def _copy_versions(value: Mapping[str, Any]) -> dict[str, Any]:
    return {k: dict(v) if isinstance(v, Mapping) else v for k, v in value.items()}


# -- the saver ------------------------------------------------------------------------


class SessionsDBSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer on sessions_db: sync and asyncio, on any store.

    ``url`` names the store (as :func:`sessions_db.connect` takes it; ``None``:
    the configured store): the saver opens a :class:`~sessions_db.Manager` for
    the sync methods and, on the first async call, an
    :class:`~sessions_db.aio.AsyncManager` on the same URL for the async ones
    (one per event loop), and :meth:`close` / :meth:`aclose` closes them.
    ``manager`` is a manager of your own instead, which the saver never closes: a
    ``Manager`` drives the sync methods (and the async ones, in worker threads);
    an ``AsyncManager`` drives the async methods, and the sync ones then raise
    :class:`~sessions_db.UnsupportedOperationError` (use ``ainvoke``, or ``url=``).

    ``agent_name`` is the agent of the threads' sessions; ``serde`` LangGraph's
    serializer (``JsonPlusSerializer`` by default, or an ``EncryptedSerializer``);
    ``messages_channel`` the channel stored as sessions_db messages (``None``:
    none). ``migrate`` is passed to ``connect`` with ``url=`` (PostgreSQL
    databases are migrated explicitly). See the module for how threads are stored.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        manager: Manager | AsyncManager | None = None,
        agent_name: str = DEFAULT_AGENT,
        serde: SerializerProtocol | None = None,
        messages_channel: str | None = "messages",
        migrate: bool | None = None,
    ) -> None:
        super().__init__(serde=serde)
        if url is not None and manager is not None:
            raise InvalidArgumentError("give url= or manager=, not both")
        self._agent = ids.agent_name(agent_name)
        self._messages_channel = messages_channel
        self._url = url
        self._migrate = migrate
        self._owns = manager is None
        self._shared = _Shared()
        self._manager: Manager | None = None
        self._async_manager: AsyncManager | None = None
        if isinstance(manager, AsyncManager):
            self._async_manager = manager
            self._privacy = manager.privacy
        elif isinstance(manager, Manager):
            self._manager = manager
            self._privacy = manager.privacy
        elif manager is None:
            self._manager = connect(url, migrate=migrate)
            self._privacy = self._manager.privacy
        else:
            raise InvalidArgumentError("manager must be a sessions_db Manager or AsyncManager")

    # -- opening and closing ----------------------------------------------------------

    @property
    def agent_name(self) -> str:
        """The agent of the sessions that hold this saver's threads."""
        return self._agent

    @property
    def manager(self) -> Manager | None:
        """The manager the sync methods use (``None`` with an ``AsyncManager`` only)."""
        return self._manager

    def close(self) -> None:
        """Close the sync manager the saver opened (``url=``); a given manager stays open.

        Async managers opened for ``url=`` are closed by :meth:`aclose`.
        """
        if self._owns and self._manager is not None:
            self._manager.close()

    async def aclose(self) -> None:
        """Close the managers the saver opened (``url=``); a given manager stays open.

        The sync manager, and the async manager of the running event loop (one
        opened for another loop is dropped with that loop).
        """
        if not self._owns:
            return
        loop = asyncio.get_running_loop()
        opened = self._shared.async_managers.pop(loop, None)
        if opened is not None:
            await opened.close()
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- running operations -----------------------------------------------------------

    def _drive(self, steps: _Steps[T]) -> T:
        """Run an operation with the sync manager."""
        manager = self._manager
        if manager is None:
            steps.close()
            raise UnsupportedOperationError(
                "this saver was given an AsyncManager: use the async API (ainvoke, "
                "aget_state, ...) or give it url= to serve both"
            )
        return _drive_with(steps, lambda run: manager.run(run.work, write=run.write))

    async def _adrive(self, steps: _Steps[T]) -> T:
        """Run an operation with the async manager (or the sync one, in worker threads)."""
        runner = await self._async_runner()
        result: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = steps.send(result) if error is None else steps.throw(error)
            except StopIteration as stop:
                return cast(T, stop.value)
            try:
                result, error = await runner(step), None
            except Exception as exc:
                result, error = None, exc

    async def _async_runner(self) -> Callable[[_Run[Any]], Any]:
        if self._async_manager is not None:
            amgr = self._async_manager
            return lambda run: amgr.run(run.work, write=run.write)
        if not self._owns:
            mgr = self._manager
            assert mgr is not None
            return lambda run: asyncio.to_thread(mgr.run, run.work, write=run.write)
        loop = asyncio.get_running_loop()
        shared = self._shared
        opened = shared.async_managers.get(loop)
        if opened is None:
            lock = shared.async_locks.setdefault(loop, asyncio.Lock())
            async with lock:
                opened = shared.async_managers.get(loop)
                if opened is None:
                    opened = await aio_connect(self._url, migrate=self._migrate)
                    shared.async_managers[loop] = opened
        amgr = opened
        return lambda run: amgr.run(run.work, write=run.write)

    # -- values ---------------------------------------------------------------------------

    def _plain(self) -> bool:
        """Whether the serializer stores values as they are (LangGraph's JSON-plus-msgpack)."""
        return isinstance(self.serde, JsonPlusSerializer)

    def _messages_as_entries(self) -> bool:
        return self._messages_channel is not None and (self._plain() or self._privacy.encrypted)

    def _dump(self, value: Any) -> dict[str, Any]:
        """Return the stored form of a channel or write value."""
        kind = type(value)
        if self._plain() and (
            kind is bool
            or value is None
            or (kind is int and -_MAX_INLINE_INT < value < _MAX_INLINE_INT)
            or (kind is str and "\x00" not in value)
        ):
            try:
                return payload.check({"j": value})
            except PayloadError:
                pass
        type_, data = self.serde.dumps_typed(value)
        return {"t": type_, "b": base64.b64encode(data).decode("ascii")}

    def _load(self, record: Mapping[str, Any]) -> Any:
        if "j" in record:
            return record["j"]
        return self.serde.loads_typed((record["t"], base64.b64decode(record["b"])))

    def _message_payload(self, message: BaseMessage) -> dict[str, Any]:
        """Return the payload of the message entry that records ``message``.

        LangChain's dict of the message, when it reads back equal through JSON;
        else its serialized form (``"lg"``), with ``type`` and ``content`` in clear
        where the serializer does not encrypt.
        """
        data = message_to_dict(message)["data"]
        try:
            payload.check(data)
            if _message_from(json.loads(json.dumps(data))) == message:
                return cast(dict[str, Any], data)
        except (PayloadError, TypeError, ValueError, KeyError):
            pass
        kept: dict[str, Any] = {"type": message.type, "lg": self._dump(message)}
        if self._plain() and isinstance(message.content, str):
            with contextlib.suppress(PayloadError):
                kept = payload.check({**kept, "content": message.content})
        return kept

    def _message(self, stored: Message) -> BaseMessage:
        data = stored.payload
        if "lg" in data:
            return cast(BaseMessage, self._load(data["lg"]))
        return _message_from(data)

    def _message_entry(self, session: _Session, message: BaseMessage, now: Any) -> SessionEntry:
        entry = SessionEntry.model_construct(
            id=ids.new_id(),
            parent_id=None,
            timestamp=now,
            type=EntryType.MESSAGE,
            data={"role": _role(message), "payload": self._message_payload(message)},
        )
        privacy = self._privacy
        return privacy.seal_entry(session.id, privacy.redact_entry(entry), owner=session.owner)

    def _seal(self, session: _Session, entry_id: str, data: dict[str, Any]) -> dict[str, Any]:
        """Return an entry's data as stored: values, writes and metadata sealed by the keyring."""
        keyring = self._privacy.keyring
        if keyring is None:
            return data
        secret = {k: data[k] for k in _SECRET_FIELDS if k in data}
        kept = {k: v for k, v in data.items() if k not in secret}
        context = message_context(
            session.id, entry_id, role=str(data["event"]), owner=session.owner
        )
        return {**kept, _SEALED: keyring.seal(secret, context)}

    def _open(self, session: _Session, entry: SessionEntry) -> dict[str, Any]:
        """Return the data of one of the saver's entries, opened.

        With a keyring, data stored in clear raises ``EncryptionError`` (unless
        the keyring allows plaintext); without one, sealed data does.
        """
        data = entry.data
        keyring = self._privacy.keyring
        context = message_context(
            session.id, entry.id, role=str(data.get("event")), owner=session.owner
        )
        if _SEALED not in data:
            if keyring is not None and any(k in data for k in _SECRET_FIELDS):
                keyring.open({k: data[k] for k in _SECRET_FIELDS if k in data}, context)
            return data
        if keyring is None:
            raise EncryptionError(
                f"{context.place}: encrypted, but no keyring is configured: give the manager "
                "the keyring (session.encryption or SESSIONS_DB_ENCRYPTION_KEYS)"
            )
        opened = keyring.open(data[_SEALED], context)
        return {**{k: v for k, v in data.items() if k != _SEALED}, **opened}

    def _open_messages(
        self, session: _Session, stored: Sequence[Message]
    ) -> builtins.list[BaseMessage]:
        privacy = self._privacy
        return [
            self._message(privacy.open_message(session.id, m, owner=session.owner)) for m in stored
        ]

    # -- sessions -------------------------------------------------------------------------

    def _find_session(self, thread: str, namespace: str) -> _Steps[_Session | None]:
        """Return the session of a thread's namespace (``None``: the thread has none)."""
        cached = self._shared.sessions.get((thread, namespace))
        if cached is not None:
            return cached
        key = thread_key(thread, namespace)
        try:
            meta: SessionMetadata = yield _Run(
                partial(_load_by_key, agent=self._agent, key=key), write=False
            )
        except SessionNotFoundError:
            return None
        found = _Session(meta.id, meta.user_id)
        self._shared.sessions.put((thread, namespace), found)
        return found

    def _open_session(self, thread: str, namespace: str, user: str | None) -> _Steps[_Session]:
        """Return the session of a thread's namespace, created if it has none."""
        found = yield from self._find_session(thread, namespace)
        if found is not None:
            return found
        manager_clock = self._clock()
        meta: SessionMetadata = yield _Run(
            partial(
                _find_or_create,
                privacy=self._privacy,
                agent=self._agent,
                user=user,
                metadata={META_THREAD: thread, META_NAMESPACE: namespace},
                key=thread_key(thread, namespace),
                clock=manager_clock,
            ),
            write=True,
        )
        created = _Session(meta.id, meta.user_id)
        self._shared.sessions.put((thread, namespace), created)
        return created

    def _clock(self) -> rules.Clock:
        manager = self._manager or self._async_manager
        assert manager is not None
        return manager.clock

    def _forget(self, thread: str, namespace: str | None = None) -> None:
        """Drop what the saver remembers of a thread (one namespace, or all)."""
        self._shared.sessions.drop(
            lambda key: key[0] != thread or (namespace is not None and key[1] != namespace)
        )

    # -- reading ----------------------------------------------------------------------------

    def _state(self, session: _Session, entry_id: str) -> _State | None:
        return self._shared.states.get((session.id, entry_id))

    def _remember(self, session: _Session, state: _State) -> None:
        self._shared.states.put((session.id, state.entry_id), state)

    def _load_state(self, session: _Session, checkpoint_id: str) -> _Steps[_State | None]:
        """Return a stored checkpoint of the session (``None``: not stored)."""
        entry_id = checkpoint_entry_id(checkpoint_id)
        state = self._state(session, entry_id)
        if state is not None:
            return state
        found: builtins.list[SessionEntry] = yield _Run(
            partial(_entries_by_id, session_id=session.id, entry_ids=[entry_id]), write=False
        )
        if not found or _event(found[0]) != CHECKPOINT_EVENT:
            return None
        state = _State(entry_id, self._open(session, found[0]))
        self._remember(session, state)
        return state

    def _state_messages(
        self, session: _Session, state: _State
    ) -> _Steps[builtins.list[BaseMessage]]:
        """Return the message list a checkpoint holds as messages (read once, then kept)."""
        if state.messages is None:
            stored: builtins.list[Message] = yield _Run(
                partial(_branch_messages, session_id=session.id, leaf=state.entry_id),
                write=False,
            )
            state.messages = self._open_messages(session, stored)
        return state.messages

    def _read_work(
        self, uow: UnitOfWork, *, session: _Session, checkpoint_id: str | None
    ) -> _Read | None:
        """Read a checkpoint and what the saver does not hold of it yet (one unit of work).

        Its reads are statements of their own, not one transaction: entries
        never change once stored, and a session replaced meanwhile (``prune``)
        is not found, which the caller retries.
        """
        sid = session.id
        if checkpoint_id is None:
            latest = _latest(uow, sid, uow.load_session(sid).current_leaf)
            if latest is None:
                return None
            checkpoint_id, entry_id = latest
        else:
            entry_id = checkpoint_entry_id(checkpoint_id)
        state = self._state(session, entry_id)
        if state is None:
            found = uow.load_entries_by_id(sid, [entry_id])
            if not found or _event(found[0]) != CHECKPOINT_EVENT:
                return None
            state = _State(entry_id, self._open(session, found[0]))
        try:
            children = uow.load_children(sid, entry_id)
        except EntryNotFoundError:
            return None
        wanted = {r for r in state.data["refs"].values() if self._state(session, r) is None}
        refs = uow.load_entries_by_id(sid, sorted(wanted)) if wanted else []
        messages = None
        if "messages" in state.data and state.messages is None:
            messages = uow.load_messages(sid, BranchQuery(leaf=entry_id))
        return _Read(state, children, refs, messages)

    def _tuple(
        self,
        thread_id: Any,
        namespace: str,
        state: _State,
        children: Sequence[SessionEntry],
        session: _Session,
        ref_data: Callable[[str], Mapping[str, Any]],
    ) -> CheckpointTuple:
        """Build the checkpoint tuple of a stored checkpoint."""
        data = state.data
        values: dict[str, Any] = {}
        for channel, record in data["values"].items():
            values[channel] = self._load(record)
        for channel, source in data["refs"].items():
            values[channel] = self._load(ref_data(source)["values"][channel])
        held = data.get("messages")
        if held is not None:
            assert state.messages is not None
            values[held["channel"]] = list(state.messages)
        stored = data["checkpoint"]
        checkpoint_id: str = data["checkpoint_id"]
        checkpoint: Checkpoint = {
            "v": stored["v"],
            "id": checkpoint_id,
            "ts": stored["ts"],
            "channel_values": values,
            "channel_versions": dict(stored["channel_versions"]),
            "versions_seen": _copy_versions(stored["versions_seen"]),
            "updated_channels": (
                None if stored.get("updated_channels") is None else list(stored["updated_channels"])
            ),
        }
        parent = data.get("parent_checkpoint_id")
        return CheckpointTuple(
            config=_config(thread_id, namespace, checkpoint_id),
            checkpoint=checkpoint,
            metadata=cast(CheckpointMetadata, json.loads(json.dumps(data["metadata"]))),
            parent_config=None if parent is None else _config(thread_id, namespace, parent),
            pending_writes=self._pending_writes(session, children),
        )

    def _pending_writes(
        self, session: _Session, children: Sequence[SessionEntry]
    ) -> builtins.list[PendingWrite]:
        """Return the writes recorded under a checkpoint, in ``writes_sort_key`` order.

        For one ``(task_id, idx)`` the first write counts, unless a later call
        wrote only special channels (errors, interrupts, resumes): that one
        replaces it, as LangGraph's savers do.
        """
        found: dict[tuple[str, int], tuple[str, str, Mapping[str, Any]]] = {}
        for entry in children:
            if _event(entry) != WRITES_EVENT:
                continue
            data = self._open(session, entry)
            task_id, task_path = data["task_id"], data["task_path"]
            replaces = bool(data.get("upsert"))
            for idx, channel, record in data["writes"]:
                if replaces or (task_id, idx) not in found:
                    found[(task_id, idx)] = (task_path, channel, record)
        order = sorted(found, key=lambda k: writes_sort_key(found[k][0], k[0], k[1]))
        return [(k[0], found[k][1], self._load(found[k][2])) for k in order]

    # -- get_tuple --------------------------------------------------------------------------

    def _get_tuple_steps(self, config: RunnableConfig) -> _Steps[CheckpointTuple | None]:
        thread_id, thread, namespace = _thread_of(config)
        checkpoint_id = get_checkpoint_id(config)
        runtime = (config.get("configurable") or {}).get(_RUNTIME_KEY)
        if runtime is not None:
            self._record_intent(thread, namespace, runtime, checkpoint_id)
        for attempt in range(2):
            session = yield from self._find_session(thread, namespace)
            if session is None:
                return None
            try:
                read: _Read | None = yield _Run(
                    partial(self._read_work, session=session, checkpoint_id=checkpoint_id),
                    write=False,
                )
            except SessionNotFoundError:
                self._forget(thread, namespace)
                if attempt:
                    return None
                continue
            if read is None:
                return None
            return self._finish_read(thread_id, namespace, session, read)
        return None  # pragma: no cover - the loop returns

    def _finish_read(
        self, thread_id: Any, namespace: str, session: _Session, read: _Read
    ) -> CheckpointTuple:
        state = read.state
        if read.messages is not None:
            state.messages = self._open_messages(session, read.messages)
        self._remember(session, state)
        refs: dict[str, Mapping[str, Any]] = {}
        for entry in read.refs:
            opened = _State(entry.id, self._open(session, entry))
            self._remember(session, opened)
            refs[entry.id] = opened.data

        def ref_data(entry_id: str) -> Mapping[str, Any]:
            if entry_id in refs:
                return refs[entry_id]
            cached = self._state(session, entry_id)
            if cached is None:
                raise SessionsDBError(f"entry {entry_id} of session {session.id} is not stored")
            return cached.data

        return self._tuple(thread_id, namespace, state, read.children, session, ref_data)

    # -- intents: who read what -----------------------------------------------------------

    def _record_intent(
        self, thread: str, namespace: str, runtime: object, checkpoint_id: str | None
    ) -> None:
        key = (id(self._shared), thread, namespace)
        current = _INTENTS.get() or {}
        known = current.get(key)
        if known is not None and known.runtime is runtime:
            # One run reads more than once: LangGraph reads the latest checkpoint
            # after the one it was asked for (to see whether the thread moved on).
            if checkpoint_id is not None:
                known.explicit = checkpoint_id
            return
        updated = {k: v for k, v in current.items() if k != key}
        if len(updated) >= 64:  # a context that ran many threads: keep the newest
            updated = dict(list(updated.items())[-63:])
        updated[key] = _Intent(runtime, checkpoint_id)
        _INTENTS.set(updated)

    def _intent(self, thread: str, namespace: str, config: RunnableConfig) -> _Intent | None:
        runtime = (config.get("configurable") or {}).get(_RUNTIME_KEY)
        if runtime is None:
            return None
        intent = (_INTENTS.get() or {}).get((id(self._shared), thread, namespace))
        if intent is None or intent.runtime is not runtime:
            return None
        return intent

    # -- put --------------------------------------------------------------------------------

    def _put_steps(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> _Steps[RunnableConfig]:
        thread_id, thread, namespace = _thread_of(config)
        conf = config.get("configurable") or {}
        parent_id = conf.get("checkpoint_id") or None
        checkpoint_id = checkpoint["id"]
        intent = self._intent(thread, namespace, config)
        user = conf.get("user_id")
        user = ids.owner(user) if isinstance(user, str) else None
        stored_metadata = payload.check(
            dict(get_serializable_checkpoint_metadata(config, metadata)), "checkpoint metadata"
        )
        key = (thread, namespace, checkpoint_id)
        self._expire_early_writes()
        try:
            for attempt in range(2):
                session = yield from self._open_session(thread, namespace, user)
                try:
                    plan = yield from self._plan(
                        session, parent_id, checkpoint, new_versions, stored_metadata
                    )
                    yield _Run(
                        partial(
                            self._put_work,
                            session=session,
                            thread=thread,
                            namespace=namespace,
                            plan=plan,
                            intent=intent,
                        ),
                        write=True,
                    )
                except SessionNotFoundError:
                    self._forget(thread, namespace)
                    if attempt:
                        raise
                    continue
                except DuplicateEntryError:
                    # A put repeated with the same checkpoint ID: the stored one stays.
                    _log.debug("checkpoint %s is stored already", checkpoint_id)
                    break
                self._remember(session, plan.state)
                break
        except BaseException:
            with self._shared.lock:
                dropped = self._shared.early.pop(key, None)
            if dropped:
                _log.warning(
                    "writes of checkpoint %s were not stored: the checkpoint was not", checkpoint_id
                )
            raise
        if intent is not None:
            intent.explicit = None
        with self._shared.lock:
            self._shared.landed.put(key, True)
            early = self._shared.early.pop(key, [])
        for batch in early:
            yield from self._store_writes(thread, namespace, checkpoint_id, batch)
        return _config(thread_id, namespace, checkpoint_id)

    def _plan(
        self,
        session: _Session,
        parent_id: str | None,
        checkpoint: Checkpoint,
        new_versions: ChannelVersions,
        metadata: dict[str, Any],
    ) -> _Steps[_Plan]:
        """Decide what a put stores: new messages, changed channels, references."""
        parent = None if parent_id is None else (yield from self._load_state(session, parent_id))
        values = checkpoint["channel_values"]
        versions = checkpoint["channel_versions"]
        pdata = None if parent is None else parent.data
        pversions: Mapping[str, Any] = (
            {} if pdata is None else pdata["checkpoint"]["channel_versions"]
        )
        channel = self._messages_channel
        # Messages on the branch that ends at the parent's entry.
        below = 0 if pdata is None else int(pdata.get("branch_messages", 0))
        held: builtins.list[BaseMessage] | None = None
        new_messages: Sequence[BaseMessage] = ()
        reset = False
        if (
            channel is not None
            and channel in values
            and self._messages_as_entries()
            and _is_message_list(values[channel])
        ):
            held = list(values[channel])
            unchanged = (
                channel not in new_versions
                and channel in versions
                and pversions.get(channel) == versions[channel]
            )
            new_messages, reset = yield from self._new_messages(
                session, parent, channel, held, unchanged=unchanged, below=below
            )
        stored: dict[str, Any] = {}
        refs: dict[str, str] = {}
        for name in dict.fromkeys([*versions, *values]):
            if held is not None and name == channel:
                continue
            if (
                pdata is not None
                and parent is not None
                and name in versions
                and name not in new_versions
                and name in pversions
                and pversions[name] == versions[name]
            ):
                source = pdata["refs"].get(name) or (
                    parent.entry_id if name in pdata["values"] else None
                )
                if source is not None:
                    refs[name] = source
                    continue
            if name in values:
                stored[name] = self._dump(values[name])
        checkpoint_id = checkpoint["id"]
        entry_id = checkpoint_entry_id(checkpoint_id)
        data: dict[str, Any] = {
            "event": CHECKPOINT_EVENT,
            "checkpoint_id": checkpoint_id,
            "parent_checkpoint_id": parent_id,
            "checkpoint": payload.check(
                {
                    "v": checkpoint["v"],
                    "ts": checkpoint["ts"],
                    "channel_versions": dict(versions),
                    "versions_seen": _copy_versions(checkpoint["versions_seen"]),
                    "updated_channels": checkpoint.get("updated_channels"),
                },
                "checkpoint",
            ),
            "metadata": metadata,
            "values": stored,
            "refs": refs,
        }
        if held is not None:
            data["messages"] = {"channel": channel, "count": len(held)}
        fork_from = None if reset or parent is None else parent.entry_id
        data["branch_messages"] = len(new_messages) + (0 if fork_from is None else below)
        now = self._clock()()
        entries: builtins.list[SessionEntry] = []
        if reset:
            marker = {
                "event": RESET_EVENT,
                "channel": channel,
                "checkpoint_id": checkpoint_id,
                "parent_checkpoint_id": parent_id,
            }
            entries.append(_metadata_entry(ids.new_id(), now, marker))
        entries.extend(self._message_entry(session, m, now) for m in new_messages)
        entries.append(_metadata_entry(entry_id, now, self._seal(session, entry_id, data)))
        return _Plan(
            checkpoint_id=checkpoint_id,
            parent_id=parent_id,
            entries=entries,
            fork_from=fork_from,
            state=_State(entry_id, data, held),
        )

    def _new_messages(
        self,
        session: _Session,
        parent: _State | None,
        channel: str,
        current: builtins.list[BaseMessage],
        *,
        unchanged: bool,
        below: int,
    ) -> _Steps[tuple[Sequence[BaseMessage], bool]]:
        """Return the messages a put appends, and whether it starts a new root with them.

        Only what the list gained since the parent, when it grew by appending;
        the whole list, on a new root, when it was rewritten.
        """
        if parent is None:
            return current, False
        on_path = (parent.data.get("messages") or {}).get("channel") == channel
        if on_path and unchanged:
            return (), False
        if on_path:
            old = yield from self._state_messages(session, parent)
            if _extends(old, current):
                return current[len(old) :], False
            return current, True
        if below == 0:
            return current, False  # the first messages of the branch
        return current, True

    def _put_work(
        self,
        uow: UnitOfWork,
        *,
        session: _Session,
        thread: str,
        namespace: str,
        plan: _Plan,
        intent: _Intent | None,
    ) -> None:
        """Store a checkpoint (one unit of work, holding the session)."""
        sid = session.id
        uow.begin()
        uow.lock_session(sid)
        latest = _latest(uow, sid, uow.load_session(sid).current_leaf)
        head = None if latest is None else latest[0]
        if (
            intent is not None
            and plan.parent_id != head
            and not (intent.explicit is not None and plan.parent_id == intent.explicit)
        ):
            raise CheckpointConflictError(
                f"thread {thread!r} (namespace {namespace!r}) has a newer checkpoint "
                f"({head}) than the one this run continues from ({plan.parent_id}): "
                "another run stored it meanwhile, and this step was not stored. Read the "
                "thread's state (the other run may have taken up this run's input), then "
                "run the graph again from the latest checkpoint if need be."
            )
        now = self._clock()()
        if plan.fork_from is None:
            uow.append_entries(sid, plan.entries, at_root=True, updated_at=now)
        else:
            uow.append_entries(sid, plan.entries, fork_from=plan.fork_from, updated_at=now)
        if latest is not None and plan.checkpoint_id < latest[0]:
            _back_to_latest(uow, sid, latest, now)

    # -- put_writes ---------------------------------------------------------------------------

    def _put_writes_steps(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> _Steps[None]:
        _, thread, namespace = _thread_of(config)
        checkpoint_id = get_checkpoint_id(config)
        if checkpoint_id is None:
            raise InvalidArgumentError("put_writes needs the checkpoint_id the writes belong to")
        items = [
            (WRITES_IDX_MAP.get(channel, idx), channel, self._dump(value))
            for idx, (channel, value) in enumerate(writes)
        ]
        if not items:
            return
        batch = _Writes(
            task_id=task_id,
            task_path=task_path,
            items=items,
            upsert=all(channel in WRITES_IDX_MAP for channel, _ in writes),
        )
        key = (thread, namespace, checkpoint_id)
        for _ in range(2):
            stored = yield from self._store_writes(thread, namespace, checkpoint_id, batch)
            if stored:
                return
            with self._shared.lock:
                if not self._shared.landed.get(key):
                    # The checkpoint's put is still on its way (LangGraph saves
                    # checkpoints in the background): the writes go in after it.
                    self._shared.early.setdefault(key, []).append(batch)
                    return
        raise SessionsDBError(f"checkpoint {checkpoint_id} of thread {thread!r} is not stored")

    def _store_writes(
        self, thread: str, namespace: str, checkpoint_id: str, batch: _Writes
    ) -> _Steps[bool]:
        """Store writes under their checkpoint; ``False`` if it is not stored."""
        for attempt in range(2):
            session = yield from self._find_session(thread, namespace)
            if session is None:
                return False
            try:
                stored: bool = yield _Run(
                    partial(
                        self._writes_work,
                        session=session,
                        checkpoint_id=checkpoint_id,
                        batch=batch,
                    ),
                    write=True,
                )
            except SessionNotFoundError:
                self._forget(thread, namespace)
                if attempt:
                    return False
                continue
            except DuplicateEntryError:
                return True  # this call was stored before: the first one stays
            return stored
        return False  # pragma: no cover - the loop returns

    def _writes_work(
        self, uow: UnitOfWork, *, session: _Session, checkpoint_id: str, batch: _Writes
    ) -> bool:
        """Append one call's writes under their checkpoint; ``False`` if it is not stored.

        A call repeated as it was (same task, same indexes) has the entry ID of
        the first and raises ``DuplicateEntryError``: the first stays, as it
        does in LangGraph's savers. Calls of special channels only replace
        instead: their entries have IDs of their own, and reads take the last.
        """
        sid = session.id
        entry_id = checkpoint_entry_id(checkpoint_id)
        uow.begin()
        uow.lock_session(sid)
        latest = _latest(uow, sid, uow.load_session(sid).current_leaf)
        if batch.upsert:
            suffix = uuid.uuid4().hex
        else:
            key = json.dumps([batch.task_id, [idx for idx, _, _ in batch.items]])
            suffix = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        new_id = f"{entry_id}.w{suffix}"
        data = {
            "event": WRITES_EVENT,
            "checkpoint_id": checkpoint_id,
            "task_id": batch.task_id,
            "task_path": batch.task_path,
            "upsert": batch.upsert,
            "writes": [list(item) for item in batch.items],
        }
        now = self._clock()()
        entry = _metadata_entry(new_id, now, self._seal(session, new_id, data))
        try:
            uow.append_entries(sid, [entry], fork_from=entry_id, updated_at=now)
        except EntryNotFoundError:
            return False
        if latest is not None and latest[0] != checkpoint_id:
            _back_to_latest(uow, sid, latest, now)
        return True

    def _expire_early_writes(self) -> None:
        limit = time.monotonic() - _EARLY_WRITES_TTL
        with self._shared.lock:
            stale = [k for k, batches in self._shared.early.items() if batches[0].since < limit]
            for key in stale:
                del self._shared.early[key]
        for thread, namespace, checkpoint_id in stale:
            _log.warning(
                "writes for checkpoint %s of thread %r (namespace %r) were dropped: the "
                "checkpoint was never stored",
                checkpoint_id,
                thread,
                namespace,
            )

    # -- list -----------------------------------------------------------------------------------

    def _list_steps(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> _Steps[builtins.list[CheckpointTuple]]:
        thread: str | None = None
        namespace: str | None = None
        only: str | None = None
        if config is not None:
            conf = config.get("configurable") or {}
            if conf.get("thread_id") is not None:
                thread = str(conf["thread_id"])
                if "checkpoint_ns" in conf:
                    namespace = str(conf.get("checkpoint_ns") or "")
            only = get_checkpoint_id(config)
        below = None if before is None else get_checkpoint_id(before)
        found: builtins.list[tuple[SessionMetadata, builtins.list[SessionEntry]]] = yield _Run(
            partial(self._sessions_work, thread=thread, namespace=namespace), write=False
        )
        picked: builtins.list[tuple[str, _Tree, SessionEntry]] = []
        for meta, entries in found:
            tree = _Tree(self, meta, entries)
            for entry in tree.checkpoints:
                data = tree.data(entry)
                checkpoint_id = data["checkpoint_id"]
                if only is not None and checkpoint_id != only:
                    continue
                if below is not None and not checkpoint_id < below:
                    continue
                if filter and any(
                    k not in data["metadata"] or data["metadata"][k] != v for k, v in filter.items()
                ):
                    continue
                picked.append((checkpoint_id, tree, entry))
        picked.sort(key=lambda item: item[0], reverse=True)
        if limit is not None:
            picked = picked[: max(limit, 0)]
        return [tree.tuple(entry) for _, tree, entry in picked]

    def _sessions(self, uow: UnitOfWork, thread: str | None) -> builtins.list[SessionMetadata]:
        """Return the sessions of a thread (every namespace), or of every thread."""
        wanted = None if thread is None else {META_THREAD: thread}
        return rules.list_sessions(uow, self._agent, None, None, 0, self._privacy, metadata=wanted)

    def _sessions_work(
        self, uow: UnitOfWork, *, thread: str | None, namespace: str | None
    ) -> builtins.list[tuple[SessionMetadata, builtins.list[SessionEntry]]]:
        """Read the sessions in scope with their whole trees (one unit of work)."""
        uow.begin()
        if thread is not None and namespace is not None:
            try:
                metas = [
                    self._privacy.open_meta(
                        uow.load_session_by_key(self._agent, thread_key(thread, namespace))
                    )
                ]
            except SessionNotFoundError:
                return []
        else:
            metas = self._sessions(uow, thread)
        found = []
        for meta in metas:
            try:
                found.append((meta, uow.load_entries(meta.id)))
            except SessionNotFoundError:
                continue  # deleted since it was listed
        return found

    # -- delete_thread, copy_thread, prune, delete_for_runs ---------------------------------

    def _delete_threads_work(self, uow: UnitOfWork, *, threads: Sequence[str]) -> None:
        uow.begin()
        for thread in threads:
            for meta in self._sessions(uow, thread):
                try:
                    uow.delete_session(meta.id)
                except SessionNotFoundError:
                    continue

    def _after_delete(self, threads: Sequence[str]) -> None:
        wanted = set(threads)
        self._shared.sessions.drop(lambda key: key[0] not in wanted)
        with self._shared.lock:
            for key in [k for k in self._shared.early if k[0] in wanted]:
                del self._shared.early[key]

    def _copy_work(self, uow: UnitOfWork, *, source: str, target: str) -> int:
        """Copy every namespace session of ``source`` under ``target``'s keys; return how many."""
        uow.begin()
        if self._sessions(uow, target):
            raise DuplicateKeyError(f"thread {target!r} has checkpoints already")
        copied = 0
        for meta in sorted(self._sessions(uow, source), key=lambda m: m.id):
            uow.lock_session(meta.id)
            entries = uow.load_entries(meta.id)
            namespace = str(meta.metadata.get(META_NAMESPACE, ""))
            metadata = {**meta.metadata, META_THREAD: target}
            tree = _Tree(self, meta, entries)
            self._create(
                uow,
                source=meta,
                entries=tree.opened_entries(),
                key=thread_key(target, namespace),
                metadata=metadata,
                forked_from=meta.id,
            )
            copied += 1
        return copied

    def _create(
        self,
        uow: UnitOfWork,
        *,
        source: SessionMetadata,
        entries: Sequence[SessionEntry],
        key: str | None,
        metadata: dict[str, Any],
        forked_from: str | None = None,
    ) -> SessionMetadata:
        """Create a session holding ``entries`` (opened; each linked to its ``parent_id``)."""
        clock = self._clock()
        meta = rules.new_session(
            source.agent_name, source.user_id, metadata, clock, key=key, forked_from=forked_from
        )
        uow.save_session(self._privacy.seal_meta(meta))
        session = _Session(meta.id, meta.user_id)
        privacy = self._privacy
        now = clock()
        for chain in _chains(entries):
            sealed = [
                privacy.seal_entry(meta.id, e, owner=meta.user_id)
                if e.type is EntryType.MESSAGE
                else e.model_copy(update={"data": self._seal(session, e.id, e.data)})
                if _event(e) in (CHECKPOINT_EVENT, WRITES_EVENT)
                else e
                for e in chain
            ]
            parent = chain[0].parent_id
            if parent is None:
                uow.append_entries(meta.id, sealed, at_root=True, updated_at=now)
            else:
                uow.append_entries(meta.id, sealed, fork_from=parent, updated_at=now)
        checkpoints = [e for e in entries if _event(e) == CHECKPOINT_EVENT]
        if checkpoints:
            head = max(checkpoints, key=lambda e: str(e.data["checkpoint_id"]))
            if head.id not in (entries[-1].id, entries[-1].parent_id):
                _back_to_latest(uow, meta.id, (head.data["checkpoint_id"], head.id), now)
        return meta

    def _rewrite_work(
        self,
        uow: UnitOfWork,
        *,
        sessions: Sequence[SessionMetadata],
        change: Callable[[_Tree], builtins.list[SessionEntry] | None],
    ) -> int:
        """Rewrite sessions whose tree ``change`` changes (``[]``: delete); return how many.

        Each session is held, read, and replaced by a new session with the same
        key and metadata holding the changed tree, in the unit's transaction.
        """
        uow.begin()
        changed = 0
        for listed in sorted(sessions, key=lambda m: m.id):
            try:
                uow.lock_session(listed.id)
                meta = self._privacy.open_meta(uow.load_session(listed.id))
                entries = uow.load_entries(listed.id)
            except SessionNotFoundError:
                continue
            tree = _Tree(self, meta, entries)
            kept = change(tree)
            if kept is None:
                continue
            changed += 1
            uow.delete_session(meta.id)
            if not kept:
                continue
            self._create(uow, source=meta, entries=kept, key=meta.key, metadata=meta.metadata)
        return changed

    def _prune_steps(self, thread_ids: Sequence[str], strategy: str) -> _Steps[None]:
        if isinstance(thread_ids, str):
            raise TypeError("thread_ids must be a sequence of thread IDs, not a str")
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"Unknown prune strategy: {strategy!r}")
        threads = [str(t) for t in thread_ids]
        if not threads:
            return
        if strategy == "delete":
            yield _Run(partial(self._delete_threads_work, threads=threads), write=True)
            self._after_delete(threads)
            return
        yield _Run(partial(self._keep_latest_work, threads=threads), write=True)
        self._after_delete(threads)

    def _keep_latest_work(self, uow: UnitOfWork, *, threads: Sequence[str]) -> int:
        uow.begin()
        sessions = [meta for thread in threads for meta in self._sessions(uow, thread)]
        for meta in sessions:
            tree = _Tree(self, meta, uow.load_entries(meta.id))
            if tree.uses_delta_channels():
                raise UnsupportedOperationError(
                    f"thread {meta.metadata.get(META_THREAD)!r} uses a DeltaChannel, whose "
                    "value the latest checkpoint rebuilds from older ones: keep_latest would "
                    "lose it; nothing was pruned"
                )
        return self._rewrite_work(uow, sessions=sessions, change=_Tree.keep_latest)

    def _delete_for_runs_work(self, uow: UnitOfWork, *, run_ids: frozenset[str]) -> int:
        uow.begin()
        candidates = []
        for meta in self._sessions(uow, None):
            try:
                tree = _Tree(self, meta, uow.load_entries(meta.id))
            except SessionNotFoundError:
                continue
            if tree.has_runs(run_ids):
                candidates.append(meta)
        return self._rewrite_work(
            uow, sessions=candidates, change=lambda tree: tree.without_runs(run_ids)
        )

    # -- BaseCheckpointSaver: sync -----------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Return the checkpoint ``config`` names (its ``checkpoint_id``, else the latest).

        ``None`` when the thread, namespace or checkpoint is not stored.
        ``pending_writes`` are in ``writes_sort_key`` order.
        """
        return self._drive(self._get_tuple_steps(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Yield checkpoints, newest (greatest ID) first.

        Of the thread and namespace of ``config`` (every namespace when it names
        none; every thread with ``None``); ``filter`` keeps those whose metadata
        has each key with the given value, ``before`` those older than its
        checkpoint, ``limit`` the first ones. Reads each session's whole tree.
        """
        yield from self._drive(self._list_steps(config, filter, before, limit))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint under its parent (``config``'s ``checkpoint_id``).

        Stores the messages the step added once, the channels in ``new_versions``
        (or that differ from the parent's), and references to the unchanged
        ones. :class:`CheckpointConflictError` in a graph run whose thread moved
        on (see the module). Returns the config of the stored checkpoint.
        """
        return self._drive(self._put_steps(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes under the checkpoint ``config`` names.

        A write already stored under the same ``(task_id, index)`` stays (a
        repeated call stores nothing new), except writes to LangGraph's special
        channels (errors, interrupts, resumes), which replace. Writes for a
        checkpoint whose put this process has not finished yet are stored right
        after it.
        """
        self._drive(self._put_writes_steps(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        """Delete the thread: every namespace's session, with its checkpoints and writes."""
        threads = [str(thread_id)]
        self._drive(_one(_Run(partial(self._delete_threads_work, threads=threads), write=True)))
        self._after_delete(threads)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint and write of a thread (all namespaces) to a new thread.

        Each namespace's session is copied whole, every branch, with the same
        checkpoint IDs, into a new session keyed for the target (recording
        ``forked_from``), in one transaction on SQL stores. A source without
        checkpoints copies nothing; a target that has checkpoints raises
        :class:`~sessions_db.DuplicateKeyError`.
        """
        work = partial(self._copy_work, source=str(source_thread_id), target=str(target_thread_id))
        self._drive(_one(_Run(work, write=True)))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Prune threads: ``"keep_latest"`` keeps each namespace's latest checkpoint; ``"delete"``.

        ``"keep_latest"`` replaces each namespace's session by one holding the
        latest checkpoint (with every channel's value, its messages and its
        writes; it has no parent any more), in one transaction on SQL stores.
        Threads that use a ``DeltaChannel`` are refused
        (:class:`~sessions_db.UnsupportedOperationError`, nothing pruned), as
        ``PostgresSaver`` refuses them. ``TypeError`` for a single string,
        ``ValueError`` for another strategy.
        """
        self._drive(self._prune_steps(thread_ids, strategy))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints whose metadata ``run_id`` is in ``run_ids``, with their writes.

        In every thread of the saver's agent. A kept checkpoint under a deleted
        one keeps its values and messages; its parent becomes its nearest kept
        ancestor (or none). Each changed session is replaced by one without
        them, in one transaction on SQL stores; the sessions of every thread are
        read to find them.
        """
        wanted = frozenset(str(r) for r in run_ids)
        if not wanted:
            return
        self._drive(_one(_Run(partial(self._delete_for_runs_work, run_ids=wanted), write=True)))
        self._shared.sessions.drop(lambda key: False)

    def get_next_version(self, current: str | None, channel: None) -> str:
        """Return the next version of a channel: a counter and a random tiebreak.

        The format of LangGraph's own savers: two branches that bump a channel
        from the same version get different versions.
        """
        if current is None:
            number = 0
        elif isinstance(current, int):
            number = current
        else:
            number = int(str(current).split(".")[0])
        return f"{number + 1:032}.{random.random():016}"

    # -- BaseCheckpointSaver: asyncio (each overridden here: LangGraph detects them so) ----

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """See :meth:`get_tuple`."""
        return await self._adrive(self._get_tuple_steps(config))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """See :meth:`list`."""
        for item in await self._adrive(self._list_steps(config, filter, before, limit)):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """See :meth:`put`."""
        return await self._adrive(self._put_steps(config, checkpoint, metadata, new_versions))

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """See :meth:`put_writes`."""
        await self._adrive(self._put_writes_steps(config, writes, task_id, task_path))

    async def adelete_thread(self, thread_id: str) -> None:
        """See :meth:`delete_thread`."""
        threads = [str(thread_id)]
        work = partial(self._delete_threads_work, threads=threads)
        await self._adrive(_one(_Run(work, write=True)))
        self._after_delete(threads)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """See :meth:`copy_thread`."""
        work = partial(self._copy_work, source=str(source_thread_id), target=str(target_thread_id))
        await self._adrive(_one(_Run(work, write=True)))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """See :meth:`prune`."""
        await self._adrive(self._prune_steps(thread_ids, strategy))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """See :meth:`delete_for_runs`."""
        wanted = frozenset(str(r) for r in run_ids)
        if not wanted:
            return
        work = partial(self._delete_for_runs_work, run_ids=wanted)
        await self._adrive(_one(_Run(work, write=True)))
        self._shared.sessions.drop(lambda key: False)


# -- what the operations pass around ---------------------------------------------------------


@dataclass(slots=True)
class _Read:
    """What a read of a checkpoint found that the saver did not hold yet."""

    state: _State
    children: list[SessionEntry]
    refs: list[SessionEntry]
    messages: list[Message] | None


@dataclass(slots=True)
class _Plan:
    """What a put stores: the entries, where they go, and the checkpoint as the saver keeps it."""

    checkpoint_id: str
    parent_id: str | None
    entries: list[SessionEntry]
    fork_from: str | None
    state: _State


class _Tree:
    """A session's whole tree as the saver reads it (listing, copying, pruning)."""

    def __init__(self, saver: SessionsDBSaver, meta: SessionMetadata, entries: list[SessionEntry]):
        self.saver = saver
        self.meta = meta
        self.session = _Session(meta.id, meta.user_id)
        self.entries = entries
        self.by_id = {e.id: e for e in entries}
        self.children: dict[str, list[SessionEntry]] = defaultdict(list)
        for entry in entries:
            if entry.parent_id is not None:
                self.children[entry.parent_id].append(entry)
        self.checkpoints = [e for e in entries if _event(e) == CHECKPOINT_EVENT]
        self._data: dict[str, dict[str, Any]] = {}
        self._messages: dict[str, BaseMessage] = {}
        self.thread_id: Any = meta.metadata.get(META_THREAD)
        self.namespace = str(meta.metadata.get(META_NAMESPACE, ""))

    def data(self, entry: SessionEntry) -> dict[str, Any]:
        """Return the opened data of one of the saver's entries."""
        found = self._data.get(entry.id)
        if found is None:
            found = self._data[entry.id] = self.saver._open(self.session, entry)
        return found

    def path(self, entry: SessionEntry) -> list[SessionEntry]:
        """Return the branch that ends at ``entry``, root first."""
        branch = []
        at: SessionEntry | None = entry
        while at is not None:
            branch.append(at)
            at = None if at.parent_id is None else self.by_id.get(at.parent_id)
        branch.reverse()
        return branch

    def messages(self, entry: SessionEntry) -> list[BaseMessage]:
        """Return the LangChain messages on the branch that ends at ``entry``."""
        found = []
        privacy = self.saver._privacy
        for at in self.path(entry):
            if at.type is not EntryType.MESSAGE:
                continue
            message = self._messages.get(at.id)
            if message is None:
                opened = privacy.open_message(
                    self.session.id, at.to_message(), owner=self.meta.user_id
                )
                message = self._messages[at.id] = self.saver._message(opened)
            found.append(message)
        return found

    def tuple(self, entry: SessionEntry) -> CheckpointTuple:
        """Return the checkpoint tuple of a checkpoint entry."""
        data = self.data(entry)
        state = _State(entry.id, data)
        if "messages" in data:
            state.messages = self.messages(entry)
        return self.saver._tuple(
            self.thread_id,
            self.namespace,
            state,
            self.children.get(entry.id, []),
            self.session,
            lambda entry_id: self.data(self.by_id[entry_id]),
        )

    def opened_entries(self) -> list[SessionEntry]:
        """Return every entry, in append order, with its data opened."""
        privacy = self.saver._privacy
        opened = []
        for entry in self.entries:
            if entry.type is EntryType.MESSAGE:
                opened.append(privacy.open_entry(self.session.id, entry, owner=self.meta.user_id))
            elif _event(entry) in (CHECKPOINT_EVENT, WRITES_EVENT):
                opened.append(entry.model_copy(update={"data": self.data(entry)}))
            else:
                opened.append(entry)
        return opened

    def uses_delta_channels(self) -> bool:
        """Whether a checkpoint's metadata says the thread uses a ``DeltaChannel``."""
        return any(
            "counters_since_delta_snapshot" in self.data(e)["metadata"]
            or "delta_writes_versioned" in self.data(e)["metadata"]
            for e in self.checkpoints
        )

    def has_runs(self, run_ids: frozenset[str]) -> bool:
        """Whether a checkpoint's metadata ``run_id`` is one of ``run_ids``."""
        return any(self.data(e)["metadata"].get("run_id") in run_ids for e in self.checkpoints)

    def _resolved(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Return a checkpoint's values with its references resolved."""
        values = dict(data["values"])
        for channel, source in data["refs"].items():
            values[channel] = self.data(self.by_id[source])["values"][channel]
        return values

    def keep_latest(self) -> list[SessionEntry] | None:
        """Return the tree of the latest checkpoint alone: its messages, itself, its writes."""
        if not self.checkpoints:
            return []
        latest = max(self.checkpoints, key=lambda e: self.data(e)["checkpoint_id"])
        only = self.data(latest)
        if len(self.checkpoints) == 1 and not only["refs"] and only["parent_checkpoint_id"] is None:
            return None
        data = dict(self.data(latest))
        data["values"], data["refs"] = self._resolved(data), {}
        data["parent_checkpoint_id"] = None
        kept: list[SessionEntry] = []
        if "messages" in data:
            opened = self.opened_entries()
            by_id = {e.id: e for e in opened}
            for at in self.path(latest):
                if at.type is EntryType.MESSAGE:
                    parent = kept[-1].id if kept else None
                    kept.append(by_id[at.id].model_copy(update={"parent_id": parent}))
        parent = kept[-1].id if kept else None
        data["branch_messages"] = len(kept)
        kept.append(latest.model_copy(update={"parent_id": parent, "data": data}))
        for child in self.children.get(latest.id, []):
            if _event(child) == WRITES_EVENT:
                kept.append(child.model_copy(update={"data": self.data(child)}))
        return kept

    def without_runs(self, run_ids: frozenset[str]) -> list[SessionEntry] | None:
        """Return the tree without the checkpoints of ``run_ids`` and their writes."""
        gone: set[str] = set()
        for entry in self.checkpoints:
            if self.data(entry)["metadata"].get("run_id") in run_ids:
                gone.add(entry.id)
                gone.update(
                    c.id for c in self.children.get(entry.id, []) if _event(c) == WRITES_EVENT
                )
        if not gone:
            return None
        if all(e.id in gone for e in self.checkpoints):
            return []
        parent_of = {
            self.data(e)["checkpoint_id"]: self.data(e)["parent_checkpoint_id"]
            for e in self.checkpoints
        }
        removed = {
            self.data(self.by_id[i])["checkpoint_id"]
            for i in gone
            if i in self.by_id and _event(self.by_id[i]) == CHECKPOINT_EVENT
        }
        kept: list[SessionEntry] = []
        for entry in self.opened_entries():
            if entry.id in gone:
                continue
            parent = entry.parent_id
            while parent is not None and parent in gone:
                parent = self.by_id[parent].parent_id
            update: dict[str, Any] = {"parent_id": parent}
            if _event(entry) == CHECKPOINT_EVENT:
                data = dict(entry.data)
                if any(source in gone for source in data["refs"].values()):
                    data["values"] = self._resolved(data)
                    data["refs"] = {}
                up = data["parent_checkpoint_id"]
                while up is not None and up in removed:
                    up = parent_of.get(up)
                data["parent_checkpoint_id"] = up
                update["data"] = data
            kept.append(entry.model_copy(update=update))
        return kept


# -- work functions (run in a unit of work) ---------------------------------------------------


def _drive_with(steps: _Steps[T], run: Callable[[_Run[Any]], Any]) -> T:
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.send(result) if error is None else steps.throw(error)
        except StopIteration as stop:
            return cast(T, stop.value)
        try:
            result, error = run(step), None
        except Exception as exc:
            result, error = None, exc


def _one(run: _Run[T]) -> _Steps[T]:
    """Return an operation of one piece of work."""
    result: T = yield run
    return result


def _metadata_entry(entry_id: str, timestamp: Any, data: dict[str, Any]) -> SessionEntry:
    return SessionEntry.model_construct(
        id=entry_id, parent_id=None, timestamp=timestamp, type=EntryType.METADATA, data=data
    )


def _back_to_latest(uow: UnitOfWork, session_id: str, latest: tuple[str, str], now: Any) -> None:
    """Append a :data:`LATEST_EVENT` entry under the latest checkpoint ``(ID, entry ID)``.

    An entry appended elsewhere (writes under an older checkpoint, which
    LangGraph may save after a newer one; a checkpoint older than the latest)
    moved the session's current leaf there: this brings it back, so that the
    leaf names the latest checkpoint and ``get_messages()`` reads its state.
    """
    checkpoint_id, entry_id = latest
    marker = _metadata_entry(
        f"{entry_id}.l{uuid.uuid4().hex}",
        now,
        {"event": LATEST_EVENT, "checkpoint_id": checkpoint_id},
    )
    uow.append_entries(session_id, [marker], fork_from=entry_id, updated_at=now)


def _latest(uow: UnitOfWork, session_id: str, leaf: str | None) -> tuple[str, str] | None:
    """Return the ``(ID, entry ID)`` of the session's latest checkpoint (``None``: none).

    The current leaf is the latest checkpoint's entry or one of the saver's
    entries under it, whose ID starts with the checkpoint entry's; anything
    else (a session changed by other means) is resolved by reading the session.
    """
    if leaf is None:
        return None
    entry_id = leaf.split(".", 1)[0]
    if entry_id.startswith("lgc:"):
        return entry_id[4:], entry_id
    if entry_id.startswith("lgh:"):
        found = uow.load_entries_by_id(session_id, [entry_id])
    else:
        found = _newest_checkpoint(uow.load_entries(session_id))
    if not found or _event(found[0]) != CHECKPOINT_EVENT:
        return None
    return str(found[0].data["checkpoint_id"]), found[0].id


def _newest_checkpoint(entries: Sequence[SessionEntry]) -> list[SessionEntry]:
    found = [e for e in entries if _event(e) == CHECKPOINT_EVENT]
    if not found:
        return []
    return [max(found, key=lambda e: str(e.data.get("checkpoint_id")))]


def _load_by_key(uow: UnitOfWork, *, agent: str, key: str) -> SessionMetadata:
    return uow.load_session_by_key(agent, ids.session_key(key))


def _find_or_create(
    uow: UnitOfWork,
    *,
    privacy: Privacy,
    agent: str,
    user: str | None,
    metadata: dict[str, Any],
    key: str,
    clock: rules.Clock,
) -> SessionMetadata:
    candidate = rules.new_session(agent, user, metadata, clock, key=key)
    return privacy.open_meta(uow.find_or_create_session(privacy.seal_meta(candidate)))


def _entries_by_id(
    uow: UnitOfWork, *, session_id: str, entry_ids: Sequence[str]
) -> list[SessionEntry]:
    return uow.load_entries_by_id(session_id, entry_ids)


def _branch_messages(uow: UnitOfWork, *, session_id: str, leaf: str) -> list[Message]:
    return uow.load_messages(session_id, BranchQuery(leaf=leaf))
