"""The runtime: an agent that reads its history and checkpoints its own state.

``Runtime.call_with_session`` loads the session, runs the agent with the session
bound in the context, and stores the question and the answer together. A
checkpoint taken through the runtime keeps the agent's state with it; restoring
it rolls back both the conversation and the agent.

It uses the configured store (``SESSIONS_DB_CONFIG``, the ``SESSIONS_DB_*``
variables) or the embedded default store.
"""

from __future__ import annotations

from typing import Any

import sessions_db as sdb


class NotesAgent:
    """Remembers notes; session-aware (reads the history) and checkpointable (its notes)."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def execute_with_session(self, message: sdb.Message, session: sdb.Session) -> sdb.Message:
        text = message.payload["content"]
        turns = len(session.get_messages()) // 2
        if text.startswith("remember "):
            self.notes.append(text.removeprefix("remember "))
            answer = f"Noted. I know {len(self.notes)} thing(s)."
        else:
            answer = f"After {turns} earlier turn(s), I know: {', '.join(self.notes) or 'nothing'}."
        return sdb.Message.new("assistant", {"content": answer})

    def create_checkpoint(self) -> dict[str, Any]:
        return {"notes": list(self.notes)}

    def restore_from_checkpoint(self, state: dict[str, Any]) -> None:
        self.notes = list(state["notes"])


def ask(rt: sdb.Runtime, session: sdb.Session, text: str) -> None:
    answer = rt.call_with_session("notes", sdb.Message.new("user", {"content": text}), session.id)
    print(f"  > {text}\n    {answer.payload['content']}")


def main() -> None:
    with sdb.connect() as mgr:
        rt = sdb.Runtime(mgr)
        agent = NotesAgent()
        rt.register("notes", agent)
        aware, checkpointable = sdb.is_session_aware(agent), sdb.is_checkpointable(agent)
        print(f"session-aware: {aware}, checkpointable: {checkpointable}")

        session = mgr.create("notes", user_id="user-123")
        print(f"Session {session.id}")
        ask(rt, session, "remember the meeting is at 10")
        ask(rt, session, "remember bring the slides")

        checkpoint = rt.checkpoint(session.id, "notes", metadata={"label": "two notes"})
        print(f"Checkpoint {checkpoint.id}: agent state {checkpoint.metadata['agent_state']}")

        ask(rt, session, "remember the meeting is cancelled")
        rt.restore(session.id, checkpoint.id, "notes")
        print("Restored: the conversation and the agent's notes are back at the checkpoint")
        ask(rt, session, "what do you know?")
        print(f"{session.info().message_count} messages on the current branch")


if __name__ == "__main__":
    main()
