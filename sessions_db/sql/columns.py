"""Portable column types: UTC timestamps and JSON that is JSONB on PostgreSQL.

They are defined with the models, in :mod:`sessions_db.models`.
"""

from ..models import UTCDateTime, json_type

__all__ = ["UTCDateTime", "json_type"]
