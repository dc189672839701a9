"""Tables of the durable state (SQLAlchemy Core). Migrations in migrations/."""
from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

volumes = sa.Table(
    "volumes", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, default=""),
    sa.Column("size_gib", sa.Integer, nullable=False),
    sa.Column("backend", sa.String(16), nullable=False),
    sa.Column("location", sa.String(1024), nullable=True),
    sa.Column("multiattach", sa.Boolean, nullable=False, default=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

attachments = sa.Table(
    "attachments", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("volume_id", sa.String(36), sa.ForeignKey("volumes.id"), nullable=False,
              index=True),
    sa.Column("instance_uuid", sa.String(36), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attach_mode", sa.String(2), nullable=False, default="rw"),
    sa.Column("connector", sa.Text, nullable=True),          # JSON, as sent
    sa.Column("initiator", sa.String(223), nullable=True),
    sa.Column("host", sa.String(255), nullable=True),
    sa.Column("chap_userid", sa.String(255), nullable=True),
    # Readable by root only: the database file is 0600 in a 0700 directory.
    sa.Column("chap_secret", sa.String(255), nullable=True),
    sa.Column("attached_at", sa.DateTime, nullable=True),
    sa.Column("detached_at", sa.DateTime, nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)
