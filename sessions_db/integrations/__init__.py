"""Adapters that let agent frameworks keep their sessions in sessions_db.

Each adapter is a module of its own that imports its framework, installed with
the matching extra (``pip install sessions_db[openai-agents]``); importing
:mod:`sessions_db` or this package imports no framework.
"""
