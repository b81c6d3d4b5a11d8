"""The asyncio runtime: :class:`Runtime` over an :class:`~sessions_db.aio.AsyncManager`.

It runs the very plans of the synchronous :class:`sessions_db.Runtime`
(:func:`~sessions_db.runtime.call_plan`, ``checkpoint_plan``, ``restore_plan``)
with :func:`~sessions_db._plan.adrive`, so the steps, the checks and what is
stored when an agent fails are the same code.

Agents may be ``async def`` or plain: every agent method (``execute``,
``execute_with_session``, ``create_checkpoint``, ``restore_from_checkpoint``)
that is a coroutine function is awaited on the event loop. A plain method runs
in a worker thread (:func:`asyncio.to_thread`) by default, because agents'
plain methods usually block on a model's HTTP API and would otherwise stall
every other task; the current session is bound there too (the context is
copied). ``to_thread=False`` runs plain methods on the loop instead, for agents
that never block. A session-aware agent gets an
:class:`~sessions_db.aio.AsyncSession`, whose methods are awaited, so an agent
that reads its session should be ``async def``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping
from functools import cached_property
from typing import Any, TypeVar

from .._pending import PendingInput
from .._plan import adrive
from ..config import ConfigSource
from ..null import NullBackend
from ..runtime import MemoryReader, OpenSession, Request, RuntimeFields, SessionCall, bound
from ..storage import Work
from ..types import Checkpoint, Message
from .manager import AsyncManager, AsyncSession
from .threaded import ThreadedBackend

T = TypeVar("T")


class AsyncCallSession(PendingInput, AsyncSession):
    """The :class:`~sessions_db.aio.AsyncSession` an agent is handed by ``call_with_session``.

    Its history ends with the input being answered (see :mod:`sessions_db._pending`).
    """

    async def finish(self, output: Message) -> None:
        """Append the pending input and the agent's answer together."""
        await super()._run(self._finish_work(output))

    async def _run(self, work: Work[T], *, write: bool = True) -> T:
        return await super()._run(self._pending_unit(work), write=write)


class Runtime(RuntimeFields[AsyncManager]):
    """Runs registered agents with their sessions: :class:`sessions_db.Runtime`, awaited.

    ``register``, ``agent``, ``keeps_sessions`` and the configuration (the
    ``agents:`` list with its per-agent ``session.enabled``) are the sync
    runtime's; see the module's documentation for how agent methods are run.
    """

    def __init__(
        self,
        manager: AsyncManager,
        config: ConfigSource | None = None,
        *,
        memory: MemoryReader | None = None,
        to_thread: bool = True,
    ) -> None:
        super().__init__(manager, config, memory=memory)
        self._to_thread = to_thread

    async def call_with_session(
        self, agent_name: str, message: Message, session_id: str
    ) -> Message:
        """See :meth:`sessions_db.Runtime.call_with_session`.

        The agent's session (an :class:`AsyncCallSession`) ends with the input;
        the input and the answer are appended together after the agent returns;
        when it raises (or its task is cancelled while it runs), nothing is stored.
        """
        return await adrive(self._call_plan(agent_name, message, session_id), self._perform)

    async def checkpoint(
        self, session_id: str, agent_name: str, *, metadata: Mapping[str, Any] | None = None
    ) -> Checkpoint:
        """See :meth:`sessions_db.Runtime.checkpoint`."""
        return await adrive(self._checkpoint_plan(session_id, agent_name, metadata), self._perform)

    async def restore(self, session_id: str, checkpoint_id: str, agent_name: str) -> Checkpoint:
        """See :meth:`sessions_db.Runtime.restore`."""
        plan = self._restore_plan(session_id, checkpoint_id, agent_name)
        return await adrive(plan, self._perform)

    @cached_property
    def _stateless(self) -> AsyncManager:
        """The manager of stateless agents' sessions (kept nowhere)."""
        return AsyncManager(
            ThreadedBackend(NullBackend(), max_workers=1), clock=self._manager.clock
        )

    async def _perform(self, request: Request) -> Any:
        if isinstance(request, OpenSession):
            manager = self._stateless if request.stateless else self._manager
            session = await manager.get(request.session_id)
            if request.pending is None:
                return session
            return AsyncCallSession.around(session, request.pending)
        if isinstance(request, SessionCall):
            return await request.call(*request.args, **request.kwargs)
        method = request.call
        with bound(request.session):
            if self._to_thread and not inspect.iscoroutinefunction(method):
                result = await asyncio.to_thread(method, *request.args)
            else:
                result = method(*request.args)
            if inspect.isawaitable(result):
                result = await result
        return result


__all__ = ["AsyncCallSession", "Runtime"]
