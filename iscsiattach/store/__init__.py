"""Durable state: SQLite (plain sqlite3), schema kept by alembic."""
from iscsiattach.store.db import Attachment, Store, Volume

__all__ = ["Attachment", "Store", "Volume"]
