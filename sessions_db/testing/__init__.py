"""The contract suite every storage backend must pass.

Subclass :class:`StorageContract` in a test module and provide the fixtures it
uses, and pytest runs the whole contract against your backend::

    from sessions_db.testing import StorageContract

    class TestMyBackend(StorageContract):
        @pytest.fixture
        def open_manager(self, tmp_path):
            return functools.partial(make_my_manager, tmp_path)   # picklable

        @pytest.fixture
        def tamper(self, tmp_path):
            return my_tamper_function    # (manager, session_id, entry_id, data) -> None

``open_manager`` returns a new :class:`~sessions_db.Manager` on the same store
each time it is called (also in another process, so it must be picklable);
``tamper`` changes a stored entry's data behind the library's back.

An asyncio backend runs the same suite through the synchronous facade of
:mod:`sessions_db.testing.blocking` (see :func:`~sessions_db.testing.blocking.open_blocking`).
"""

from .contract import StorageContract

__all__ = ["StorageContract"]
