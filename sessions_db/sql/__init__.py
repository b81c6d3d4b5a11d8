"""The SQL store: PostgreSQL (psycopg 3) and SQLite through SQLAlchemy 2."""

from .backend import SQLBackend

__all__ = ["SQLBackend"]
