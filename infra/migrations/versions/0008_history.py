"""history that stays cheap: bookings by (machine, start) and by start, spans by start,
the dashboard's daily rollup (machine_day, machine_history, history_rollup), and the
queue-depth count of /metrics served by a partial index on PostgreSQL

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10 09:00:00

Written by hand. Its down_revision is set when the branches are merged (0007 is being
written beside it).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.base import UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# what /metrics counts at each scrape (app/tasks.py: queue_depths): an index-only scan of
# the waiting jobs, not of every job procrastinate ever kept
TODO_INDEX = (
    "CREATE INDEX IF NOT EXISTS ix_procrastinate_jobs_todo_queue_name "
    "ON procrastinate_jobs (queue_name) WHERE status = 'todo'"
)


def upgrade() -> None:
    # plain CREATE INDEX: no batch rebuild of booking (foreign keys would cascade)
    op.create_index("ix_booking_machine_id_start_at", "booking", ["machine_id", "start_at"])
    op.create_index("ix_booking_start_at", "booking", ["start_at"])
    op.create_index("ix_machine_state_span_start_at", "machine_state_span", ["start_at"])
    op.create_table(
        "machine_day",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("machine_id", sa.Integer(), nullable=False),
        *(
            sa.Column(name, sa.BigInteger(), nullable=False)
            for name in (
                "offered_s",
                "held_s",
                "held_fen",
                "proposed_s",
                "monitored_s",
                "running_s",
            )
        ),
        sa.Column("done_bookings", sa.Integer(), nullable=False),
        sa.Column("on_time_bookings", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["machine_id"],
            ["machine.id"],
            name=op.f("fk_machine_day_machine_id_machine"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("day", "machine_id", name=op.f("pk_machine_day")),
    )
    op.create_table(
        "machine_history",
        sa.Column("machine_id", sa.Integer(), nullable=False),
        sa.Column("done_bookings", sa.Integer(), nullable=False),
        sa.Column("on_time_bookings", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["machine_id"],
            ["machine.id"],
            name=op.f("fk_machine_history_machine_id_machine"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("machine_id", name=op.f("pk_machine_history")),
    )
    op.create_table(
        "history_rollup",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tz", sa.String(64), nullable=False),
        sa.Column("through_day", sa.Date(), nullable=False),
        sa.Column("rolled_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_history_rollup")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(TODO_INDEX)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_procrastinate_jobs_todo_queue_name")
    op.drop_table("history_rollup")
    op.drop_table("machine_history")
    op.drop_table("machine_day")
    op.drop_index("ix_machine_state_span_start_at", table_name="machine_state_span")
    op.drop_index("ix_booking_start_at", table_name="booking")
    op.drop_index("ix_booking_machine_id_start_at", table_name="booking")
