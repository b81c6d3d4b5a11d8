"""Running agents with sessions: the agent protocols and :class:`Runtime`.

The protocols are the seed's interfaces spelled in Python. An agent needs only
``execute(message) -> Message``; the others are optional capabilities, found by
:func:`is_session_aware`, :func:`is_checkpointable` and :func:`is_memory_aware`.

What the runtime does is written once, as plans (see :mod:`sessions_db._plan`)
that yield :class:`OpenSession`, :class:`SessionCall` and :class:`AgentCall`
requests; :class:`Runtime` performs them with blocking calls, and
``sessions_db.aio.Runtime`` performs the same plans with awaited ones.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Generic, Protocol, TypeGuard, TypeVar, runtime_checkable

from . import ids
from ._pending import PendingInput
from ._plan import Plan, drive
from .config import Config, ConfigSource, load_config
from .context import use_session
from .errors import CheckpointNotFoundError, InvalidArgumentError, PayloadError
from .manager import Manager, Session
from .null import NullBackend
from .storage import Work
from .types import Checkpoint, Message

#: The key of :attr:`Checkpoint.metadata` that holds the agent's state.
AGENT_STATE_KEY = "agent_state"
#: The key of :attr:`Checkpoint.metadata` that names the agent whose state it holds.
AGENT_NAME_KEY = "agent_name"


# -- protocols ----------------------------------------------------------------


@runtime_checkable
class Agent(Protocol):
    """An agent: answers a message with a message."""

    def execute(self, message: Message) -> Message:
        """Return the answer to ``message``."""
        ...


@runtime_checkable
class SessionAwareAgent(Protocol):
    """An agent that reads the conversation's history itself."""

    def execute_with_session(self, message: Message, session: Session) -> Message:
        """Return the answer to ``message``, given the session it belongs to."""
        ...


@runtime_checkable
class CheckpointableAgent(Protocol):
    """An agent whose internal state is saved with a checkpoint and restored with it."""

    def create_checkpoint(self) -> dict[str, Any]:
        """Return the agent's state (JSON-compatible)."""
        ...

    def restore_from_checkpoint(self, state: dict[str, Any]) -> None:
        """Take back a state that :meth:`create_checkpoint` returned."""
        ...


@runtime_checkable
class MemoryReader(Protocol):
    """Read access to long-term memory: past messages across sessions."""

    def read(self, id: str) -> Any:
        """Return the memory entry with this ID."""
        ...

    def search(self, query: str, limit: int) -> Sequence[Any]:
        """Return up to ``limit`` entries relevant to ``query``, most relevant first."""
        ...

    def list(self, *args: Any, **kwargs: Any) -> Sequence[Any]:
        """Return entries, newest first."""
        ...


@runtime_checkable
class MemoryAwareAgent(Protocol):
    """An agent that is given a :class:`MemoryReader`."""

    def set_memory(self, reader: MemoryReader) -> None:
        """Keep ``reader`` for later use."""
        ...


def is_session_aware(agent: object) -> TypeGuard[SessionAwareAgent]:
    """Whether ``agent`` has ``execute_with_session``."""
    return isinstance(agent, SessionAwareAgent)


def is_checkpointable(agent: object) -> TypeGuard[CheckpointableAgent]:
    """Whether ``agent`` has ``create_checkpoint`` and ``restore_from_checkpoint``."""
    return isinstance(agent, CheckpointableAgent)


def is_memory_aware(agent: object) -> TypeGuard[MemoryAwareAgent]:
    """Whether ``agent`` has ``set_memory``."""
    return isinstance(agent, MemoryAwareAgent)


# -- the plans --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenSession:
    """Request: the session with this ID (a detached one that keeps nothing if ``stateless``).

    With ``pending``, the handle holds that input pending (see :mod:`sessions_db._pending`).
    """

    session_id: str
    stateless: bool = False
    pending: Message | None = None


@dataclass(frozen=True, slots=True)
class SessionCall:
    """Request: ``call(*args, **kwargs)``, a method of the session handle (awaited if async)."""

    call: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AgentCall:
    """Request: ``call(*args)``, a method of the agent, with ``session`` bound if given."""

    call: Callable[..., Any]
    args: tuple[Any, ...] = ()
    session: Any = None


Request = OpenSession | SessionCall | AgentCall


def call_plan(
    agent_name: str, agent: object, message: Message, session_id: str, *, stateful: bool
) -> Plan[Request, Message]:
    """Plan the steps of :meth:`Runtime.call_with_session` (see there)."""
    if not isinstance(message, Message):
        raise PayloadError(f"expected a Message, got {type(message).__name__}")
    if not stateful:
        session = yield OpenSession(session_id, stateless=True)
        return (yield from _run_agent(agent_name, agent, message, session))
    session = yield OpenSession(session_id, pending=message)
    try:
        output = yield from _run_agent(agent_name, agent, message, session)
        yield SessionCall(session.finish, (output,))
    finally:
        session.discard()  # a no-op after finish; after a failure, the input is never stored
    return output


def _run_agent(
    agent_name: str, agent: object, message: Message, session: Any
) -> Plan[Request, Message]:
    if is_session_aware(agent):
        output = yield AgentCall(agent.execute_with_session, (message, session), session)
    else:
        assert isinstance(agent, Agent)
        output = yield AgentCall(agent.execute, (message,), session)
    if not isinstance(output, Message):
        raise InvalidArgumentError(
            f"agent {agent_name!r} returned {type(output).__name__}, not a Message"
        )
    return output


def checkpoint_plan(
    agent_name: str, agent: object, session_id: str, metadata: Mapping[str, Any] | None
) -> Plan[Request, Checkpoint]:
    """Plan the steps of :meth:`Runtime.checkpoint` (see there)."""
    if not is_checkpointable(agent):
        raise InvalidArgumentError(f"agent {agent_name!r} is not checkpointable")
    session = yield OpenSession(session_id)
    state = yield AgentCall(agent.create_checkpoint)
    if not isinstance(state, Mapping):
        raise InvalidArgumentError(
            f"agent {agent_name!r}: create_checkpoint returned {type(state).__name__}, not a dict"
        )
    full = {**(metadata or {}), AGENT_NAME_KEY: agent_name, AGENT_STATE_KEY: dict(state)}
    checkpoint: Checkpoint = yield SessionCall(session.checkpoint, kwargs={"metadata": full})
    return checkpoint


def restore_plan(
    agent_name: str, agent: object, session_id: str, checkpoint_id: str
) -> Plan[Request, Checkpoint]:
    """Plan the steps of :meth:`Runtime.restore` (see there)."""
    if not is_checkpointable(agent):
        raise InvalidArgumentError(f"agent {agent_name!r} is not checkpointable")
    cid = ids.checkpoint_id(checkpoint_id)
    session = yield OpenSession(session_id)
    checkpoints: list[Checkpoint] = yield SessionCall(session.list_checkpoints)
    found = next((c for c in checkpoints if c.id == cid), None)
    if found is None:
        raise CheckpointNotFoundError(f"checkpoint {cid} not found in session {session_id}")
    state = found.metadata.get(AGENT_STATE_KEY)
    owner = found.metadata.get(AGENT_NAME_KEY)
    if not isinstance(state, dict) or owner != agent_name:
        raise InvalidArgumentError(
            f"checkpoint {cid} holds no state of agent {agent_name!r} "
            "(take it with Runtime.checkpoint, or restore the session with Session.restore)"
        )
    yield SessionCall(session.restore, (cid,))
    yield AgentCall(agent.restore_from_checkpoint, (state,))
    return found


# -- what both runtimes share -----------------------------------------------------------

M = TypeVar("M")
T = TypeVar("T")


def bound(session: Any) -> AbstractContextManager[Any]:
    """Bind ``session`` as the current session while an agent runs (nothing if ``None``)."""
    return nullcontext() if session is None else use_session(session)


class RuntimeFields(Generic[M]):
    """A runtime's manager, configuration, memory and registered agents, and its plans.

    The sync :class:`Runtime` and the asyncio ``sessions_db.aio.Runtime`` differ only
    in how they perform the plans' requests.
    """

    def __init__(
        self,
        manager: M,
        config: ConfigSource | None = None,
        *,
        memory: MemoryReader | None = None,
    ) -> None:
        self._manager = manager
        self._config: Config = load_config(config)
        self._memory = memory
        self._agents: dict[str, object] = {}
        self._lock = threading.Lock()

    @property
    def session_manager(self) -> M:
        """The manager the runtime keeps sessions with."""
        return self._manager

    @property
    def config(self) -> Config:
        """The configuration in effect."""
        return self._config

    @property
    def agents(self) -> list[str]:
        """The names of the registered agents, sorted."""
        return sorted(self._agents)

    def register(self, name: str, agent: object) -> None:
        """Register ``agent`` under ``name``; a memory-aware agent gets the runtime's memory.

        ``InvalidArgumentError`` if the name is taken or the object is not an
        agent (it has neither ``execute`` nor ``execute_with_session``).
        """
        name = ids.agent_name(name)
        if not (isinstance(agent, Agent) or is_session_aware(agent)):
            raise InvalidArgumentError(
                f"{type(agent).__name__} is not an agent: it needs execute(message) "
                "or execute_with_session(message, session)"
            )
        with self._lock:
            if name in self._agents:
                raise InvalidArgumentError(f"an agent is already registered as {name!r}")
            self._agents[name] = agent
        if self._memory is not None and is_memory_aware(agent):
            agent.set_memory(self._memory)

    def agent(self, name: str) -> object:
        """Return the agent registered as ``name``; ``InvalidArgumentError`` if none is."""
        try:
            return self._agents[name]
        except KeyError:
            raise InvalidArgumentError(f"no agent is registered as {name!r}") from None

    def keeps_sessions(self, agent_name: str) -> bool:
        """Whether calls to ``agent_name`` are recorded in sessions (its ``session.enabled``)."""
        return self._config.agent_session_enabled(agent_name)

    def _call_plan(
        self, agent_name: str, message: Message, session_id: str
    ) -> Plan[Request, Message]:
        agent = self.agent(agent_name)
        stateful = self.keeps_sessions(agent_name)
        return call_plan(agent_name, agent, message, session_id, stateful=stateful)

    def _checkpoint_plan(
        self, session_id: str, agent_name: str, metadata: Mapping[str, Any] | None
    ) -> Plan[Request, Checkpoint]:
        return checkpoint_plan(agent_name, self.agent(agent_name), session_id, metadata)

    def _restore_plan(
        self, session_id: str, checkpoint_id: str, agent_name: str
    ) -> Plan[Request, Checkpoint]:
        return restore_plan(agent_name, self.agent(agent_name), session_id, checkpoint_id)


# -- the synchronous runtime ---------------------------------------------------------


class CallSession(PendingInput, Session):
    """The :class:`Session` an agent is handed by :meth:`Runtime.call_with_session`.

    Its history ends with the input being answered (see :mod:`sessions_db._pending`).
    """

    def finish(self, output: Message) -> None:
        """Append the pending input and the agent's answer together."""
        super()._run(self._finish_work(output))

    def _run(self, work: Work[T], *, write: bool = True) -> T:
        return super()._run(self._pending_unit(work), write=write)


class Runtime(RuntimeFields[Manager]):
    """Runs registered agents with their sessions (the seed's ``CallWithSession``).

    ``config`` (a :class:`~sessions_db.config.Config`, a YAML file or a dict, as
    for :func:`sessions_db.connect`; by default the file ``SESSIONS_DB_CONFIG``
    names and the environment) supplies the ``agents:`` list: an agent whose
    ``session.enabled`` is false runs statelessly, and with ``session.enabled:
    false`` every agent does. ``memory``, if given, is handed to memory-aware
    agents when they are registered.
    """

    @cached_property
    def _stateless(self) -> Manager:
        """The manager of stateless agents' sessions (kept nowhere)."""
        return Manager(NullBackend(), clock=self._manager.clock)

    def call_with_session(self, agent_name: str, message: Message, session_id: str) -> Message:
        """Run the agent on ``message`` within the session, and record both; return the answer.

        The seed's steps: load the session (``SessionNotFoundError`` if absent);
        append ``message`` to its history; bind it as the current session
        (:func:`~sessions_db.use_session`) and run the agent:
        ``execute_with_session(message, session)`` for a session-aware agent,
        else ``execute(message)``; append the answer.

        The agent's view is the seed's: in the session it is handed (and
        ``current_session()``), the history ends with ``message``. But nothing is
        stored before the agent has answered: the handle holds ``message``
        pending, and then ``message`` and the answer are appended together, with
        one append (all or nothing); see :mod:`sessions_db._pending`. So when
        the agent raises, returns something that is not a :class:`Message`, or
        its process dies, nothing the runtime writes is stored, the agent's
        exception propagates unchanged, and concurrent calls on one session
        store their pairs whole. The first write of the agent itself through the
        handle (an append, a checkpoint) stores ``message`` before it.
        ``PayloadError`` before the agent runs if ``message`` cannot be stored.

        An agent whose configuration says ``session: {enabled: false}`` runs
        statelessly: a session-aware agent gets an empty session that keeps
        nothing, and nothing is loaded or stored.
        """
        return drive(self._call_plan(agent_name, message, session_id), self._perform)

    def checkpoint(
        self, session_id: str, agent_name: str, *, metadata: Mapping[str, Any] | None = None
    ) -> Checkpoint:
        """Checkpoint the session with the agent's state, in one call.

        The checkpoint's metadata holds ``metadata`` plus ``"agent_name"`` and
        ``"agent_state"`` (what the agent's ``create_checkpoint()`` returned).
        ``InvalidArgumentError`` if the agent is not checkpointable; ``PayloadError``
        if its state is not JSON-compatible (then nothing is stored).
        """
        return drive(self._checkpoint_plan(session_id, agent_name, metadata), self._perform)

    def restore(self, session_id: str, checkpoint_id: str, agent_name: str) -> Checkpoint:
        """Restore the session to the checkpoint and give the agent its state back, in one call.

        Everything is checked before anything changes: the checkpoint must be one
        of the session's, taken with :meth:`checkpoint` for this agent
        (``CheckpointNotFoundError``, ``InvalidArgumentError``), and its checksum
        must match (``ChecksumMismatchError``). Then the session is restored and
        the agent's ``restore_from_checkpoint(state)`` is called.
        """
        return drive(self._restore_plan(session_id, checkpoint_id, agent_name), self._perform)

    def _perform(self, request: Request) -> Any:
        if isinstance(request, OpenSession):
            manager = self._stateless if request.stateless else self._manager
            session = manager.get(request.session_id)
            if request.pending is None:
                return session
            return CallSession.around(session, request.pending)
        if isinstance(request, SessionCall):
            return request.call(*request.args, **request.kwargs)
        with bound(request.session):
            result = request.call(*request.args)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            name = getattr(request.call, "__qualname__", "the agent's method")
            raise InvalidArgumentError(
                f"{name} is async: run it with the asyncio runtime (sessions_db.aio.Runtime)"
            )
        return result


__all__ = [
    "AGENT_NAME_KEY",
    "AGENT_STATE_KEY",
    "Agent",
    "AgentCall",
    "CallSession",
    "CheckpointableAgent",
    "MemoryAwareAgent",
    "MemoryReader",
    "OpenSession",
    "Request",
    "Runtime",
    "RuntimeFields",
    "SessionAwareAgent",
    "SessionCall",
    "bound",
    "call_plan",
    "checkpoint_plan",
    "is_checkpointable",
    "is_memory_aware",
    "is_session_aware",
    "restore_plan",
]
