"""indexes of the machine search: its filters and sorts, and (PostgreSQL) GIN indexes
for membership in the materials and certifications JSON lists

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10 09:00:00

Written by hand. The GIN indexes are on CAST(col AS JSONB), the expression the search's
``json_list_has`` compiles to (app/machines/sql.py); the models do not declare them.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_machine_status_process_key", ["status", "process_key"]),
    ("ix_machine_cluster_id_status", ["cluster_id", "status"]),
    ("ix_machine_hourly_rate_fen_id", ["hourly_rate_fen", "id"]),
    ("ix_machine_created_at_id", ["created_at", "id"]),
    ("ix_machine_lat_lon", ["lat", "lon"]),
)
GIN = (
    ("ix_machine_materials_gin", "materials"),
    ("ix_machine_certifications_gin", "certifications"),
)


def upgrade() -> None:
    op.drop_index("ix_machine_lat", table_name="machine")  # the (lat, lon) index serves it
    for name, columns in INDEXES:
        op.create_index(name, "machine", columns)
    if op.get_bind().dialect.name == "postgresql":
        for name, column in GIN:
            op.execute(
                f"CREATE INDEX {name} ON machine USING gin ((CAST({column} AS JSONB)) jsonb_path_ops)"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, _column in GIN:
            op.execute(f"DROP INDEX {name}")
    for name, _columns in reversed(INDEXES):
        op.drop_index(name, table_name="machine")
    op.create_index("ix_machine_lat", "machine", ["lat"])
