"""the task queue: procrastinate's schema (PostgreSQL) and match runs as queued work
(queued and cancelled states, one active run per scope, progress and a heartbeat)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 10:20:00

Written by hand. procrastinate's schema is the one of the pinned procrastinate release;
upgrading procrastinate means a migration that applies its own SQL migrations.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.base import UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PROCRASTINATE_TABLES = ("procrastinate_events", "procrastinate_periodic_defers",
                        "procrastinate_jobs", "procrastinate_workers")  # fmt: skip


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        from procrastinate.schema import SchemaManager

        op.execute(SchemaManager.get_schema())
    # plain ALTER TABLE ADD COLUMN (no SQLite batch rebuild, which would cascade deletes)
    op.add_column("match_run", sa.Column("queued_at", UTCDateTime(), nullable=True))
    # "market" or "cluster:<id>" while queued or running, NULL after: unique, so a scope has
    # at most one run in flight (NULLs never collide, on both databases)
    op.add_column("match_run", sa.Column("active_scope", sa.String(20), nullable=True))
    op.create_index("uq_match_run_active_scope", "match_run", ["active_scope"], unique=True)
    op.add_column("match_run", sa.Column("phase", sa.String(40), nullable=False, server_default=""))
    op.add_column("match_run", sa.Column("progress_seconds", sa.Float(), nullable=True))
    op.add_column("match_run", sa.Column("heartbeat_at", UTCDateTime(), nullable=True))
    op.add_column(
        "match_run",
        sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.execute("UPDATE match_run SET queued_at = started_at")


def downgrade() -> None:
    op.drop_column("match_run", "cancel_requested")
    op.drop_column("match_run", "heartbeat_at")
    op.drop_column("match_run", "progress_seconds")
    op.drop_column("match_run", "phase")
    op.drop_index("uq_match_run_active_scope", table_name="match_run")
    op.drop_column("match_run", "active_scope")
    op.drop_column("match_run", "queued_at")
    if op.get_bind().dialect.name == "postgresql":
        for table in PROCRASTINATE_TABLES:
            op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
        op.execute(
            "DO $$ DECLARE r record; BEGIN FOR r IN SELECT oid::regprocedure AS f FROM pg_proc "
            "WHERE proname LIKE 'procrastinate%' LOOP EXECUTE 'DROP FUNCTION ' || r.f || "
            "' CASCADE'; END LOOP; END $$"
        )
        op.execute(
            "DO $$ DECLARE r record; BEGIN FOR r IN SELECT typname FROM pg_type WHERE typname "
            "LIKE 'procrastinate%' AND typtype IN ('e', 'c') LOOP EXECUTE 'DROP TYPE IF EXISTS ' "
            "|| r.typname || ' CASCADE'; END LOOP; END $$"
        )
