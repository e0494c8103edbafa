"""Initial registry schema: models, versions, files, aliases and their history.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "registry_lock",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("generation", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.execute("INSERT INTO registry_lock (id, generation) VALUES (1, 0)")
    op.create_table(
        "models",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("next_version", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("format", sa.String(64), nullable=False),
        sa.Column("framework", sa.String(64), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("signature", sa.JSON, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("lineage", sa.JSON, nullable=False),
        sa.Column("extra", sa.JSON, nullable=False),
        sa.Column("trusted", sa.Boolean, nullable=False),
        sa.Column("manifest_digest", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("model_id", "version"),
    )
    op.create_table(
        "files",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "version_id",
            sa.Integer,
            sa.ForeignKey("versions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("version_id", "path"),
    )
    op.create_index("ix_files_digest", "files", ["digest"])
    op.create_table(
        "aliases",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("alias", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("model_id", "alias"),
    )
    op.create_table(
        "alias_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("alias", sa.String(128), nullable=False),
        sa.Column("from_version", sa.Integer, nullable=True),
        sa.Column("to_version", sa.Integer, nullable=True),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_alias_events_model_name", "alias_events", ["model_name"])


def downgrade() -> None:
    for t in ("alias_events", "aliases", "files", "versions", "models", "registry_lock"):
        op.drop_table(t)
