"""The basic session example: create, append, read, checkpoint, restore, resume.

Run it twice: the second run resumes the same conversation from the store.
It uses the configured store (the YAML file SESSIONS_DB_CONFIG names, the
SESSIONS_DB_* variables) or, by default, the embedded default store.
"""

from __future__ import annotations

import sessions_db as sdb


def show(session: sdb.Session, title: str) -> None:
    print(f"  {title}:")
    for message in session.get_messages():
        print(f"    [{message.type}] {message.payload['content']}")


def main() -> None:
    with sdb.connect() as mgr:
        # Resume this user's latest conversation, or start one.
        session = mgr.get_or_create("assistant", "user-123")
        resumed = session.info().message_count > 0
        print(f"{'Resumed' if resumed else 'Created'} session {session.id}")
        print(f"  store: {type(mgr.backend).__name__}")

        session.append_message(sdb.Message.new("user", {"content": "What's the weather today?"}))
        session.append_message(
            sdb.Message.new("assistant", {"content": "I'll check the weather for you."})
        )
        show(session, f"history ({session.info().message_count} messages)")

        # Checkpoint, try an answer, roll back, try another: the conversation branches.
        checkpoint = session.checkpoint(metadata={"label": "before forecast"})
        print(f"Checkpoint {checkpoint.id} at entry {checkpoint.entry_id}")
        session.append_message(sdb.Message.new("assistant", {"content": "It will rain all day."}))
        session.restore(checkpoint.id)
        print("Restored the checkpoint; the rainy answer is on an abandoned branch")
        session.append_message(sdb.Message.new("assistant", {"content": "Sunny, 22°C."}))
        show(session, "current branch")

        # Pass the session through the context instead of through every call.
        with sdb.use_session(session):
            current = sdb.current_session()
            print(f"Session in context: {current.id == session.id}")

        sessions = mgr.list("assistant", user_id="user-123")
        print(f"user-123 has {len(sessions)} session(s) of agent 'assistant'")
        print("Run me again to resume this conversation.")


if __name__ == "__main__":
    main()
