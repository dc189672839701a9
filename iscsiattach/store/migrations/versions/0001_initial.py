"""Volumes and attachments.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "volumes",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("size_gib", sa.Integer, nullable=False),
        sa.Column("backend", sa.String(16), nullable=False),
        sa.Column("location", sa.String(1024), nullable=True),
        sa.Column("multiattach", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "attachments",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("volume_id", sa.String(36), sa.ForeignKey("volumes.id"), nullable=False),
        sa.Column("instance_uuid", sa.String(36), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attach_mode", sa.String(2), nullable=False),
        sa.Column("connector", sa.Text, nullable=True),
        sa.Column("initiator", sa.String(223), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("chap_userid", sa.String(255), nullable=True),
        sa.Column("chap_secret", sa.String(255), nullable=True),
        sa.Column("attached_at", sa.DateTime, nullable=True),
        sa.Column("detached_at", sa.DateTime, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_attachments_volume_id", "attachments", ["volume_id"])


def downgrade() -> None:
    op.drop_index("ix_attachments_volume_id", "attachments")
    op.drop_table("attachments")
    op.drop_table("volumes")
