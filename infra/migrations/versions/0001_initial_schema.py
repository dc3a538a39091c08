"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28 13:15:32.328784
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from models.seed_data import load_taxonomy

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "material",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("name_en", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("name_zh", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_material")),
    )
    op.create_table(
        "organization",
        sa.Column("is_owner", sa.Boolean(), nullable=False),
        sa.Column("is_buyer", sa.Boolean(), nullable=False),
        sa.Column("is_operator", sa.Boolean(), nullable=False),
        sa.Column("city", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("address", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organization")),
        sa.UniqueConstraint("name", name=op.f("uq_organization_name")),
    )
    op.create_table(
        "process",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("family", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("name_en", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("name_zh", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_process")),
    )
    with op.batch_alter_table("process", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_process_family"), ["family"], unique=False)

    op.create_table(
        "cluster",
        sa.Column("name_en", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("name_zh", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("city", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("specialty", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("families", sa.JSON(), nullable=False),
        sa.Column("operator_org_id", sa.Integer(), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_org_id"],
            ["organization.id"],
            name=op.f("fk_cluster_operator_org_id_organization"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cluster")),
        sa.UniqueConstraint("key", name=op.f("uq_cluster_key")),
    )
    with op.batch_alter_table("cluster", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_cluster_operator_org_id"), ["operator_org_id"], unique=False
        )

    op.create_table(
        "process_material",
        sa.Column("process_key", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("material_key", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.ForeignKeyConstraint(
            ["material_key"],
            ["material.key"],
            name=op.f("fk_process_material_material_key_material"),
        ),
        sa.ForeignKeyConstraint(
            ["process_key"], ["process.key"], name=op.f("fk_process_material_process_key_process")
        ),
        sa.PrimaryKeyConstraint("process_key", "material_key", name=op.f("pk_process_material")),
    )
    op.create_table(
        "user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("full_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("password_hash", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organization.id"], name=op.f("fk_user_org_id_organization")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user")),
        sa.UniqueConstraint("email", name=op.f("uq_user_email")),
    )
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_org_id"), ["org_id"], unique=False)

    op.create_table(
        "machine",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("make_model", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("envelope_x_mm", sa.Integer(), nullable=False),
        sa.Column("envelope_y_mm", sa.Integer(), nullable=False),
        sa.Column("envelope_z_mm", sa.Integer(), nullable=False),
        sa.Column("tolerance_mm", sa.Float(), nullable=False),
        sa.Column("speed_factor", sa.Float(), nullable=False),
        sa.Column("hourly_rate_fen", sa.Integer(), nullable=False),
        sa.Column("min_booking_minutes", sa.Integer(), nullable=False),
        sa.Column("leasable", sa.Boolean(), nullable=False),
        sa.Column("process_key", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("materials", sa.JSON(), nullable=False),
        sa.Column("certifications", sa.JSON(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("cluster_id", sa.Integer(), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_org_id", sa.Integer(), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column(
            "telemetry_token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["cluster_id"], ["cluster.id"], name=op.f("fk_machine_cluster_id_cluster")
        ),
        sa.ForeignKeyConstraint(
            ["owner_org_id"], ["organization.id"], name=op.f("fk_machine_owner_org_id_organization")
        ),
        sa.ForeignKeyConstraint(
            ["process_key"], ["process.key"], name=op.f("fk_machine_process_key_process")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_machine")),
    )
    with op.batch_alter_table("machine", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_machine_cluster_id"), ["cluster_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_machine_lat"), ["lat"], unique=False)
        batch_op.create_index(batch_op.f("ix_machine_owner_org_id"), ["owner_org_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_machine_process_key"), ["process_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_machine_status"), ["status"], unique=False)

    op.create_table(
        "order",
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(length=5000), nullable=False),
        sa.Column("tardiness_fen_per_hour", sa.Integer(), nullable=False),
        sa.Column("budget_fen", sa.Integer(), nullable=True),
        sa.Column("delivery_lat", sa.Float(), nullable=True),
        sa.Column("delivery_lon", sa.Float(), nullable=True),
        sa.Column("delivery_address", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("max_distance_km", sa.Integer(), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("buyer_org_id", sa.Integer(), nullable=False),
        sa.Column("created_by_user_id", sa.Integer(), nullable=True),
        sa.Column("release_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_kind", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["buyer_org_id"], ["organization.id"], name=op.f("fk_order_buyer_org_id_organization")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_user_id"], ["user.id"], name=op.f("fk_order_created_by_user_id_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order")),
    )
    with op.batch_alter_table("order", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_order_buyer_org_id"), ["buyer_org_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_order_status"), ["status"], unique=False)

    op.create_table(
        "attachment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("filename", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("content_type", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("storage_key", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("uploaded_by_user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["order.id"],
            name=op.f("fk_attachment_order_id_order"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["uploaded_by_user_id"],
            ["user.id"],
            name=op.f("fk_attachment_uploaded_by_user_id_user"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attachment")),
        sa.UniqueConstraint("storage_key", name=op.f("uq_attachment_storage_key")),
    )
    with op.batch_alter_table("attachment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_attachment_order_id"), ["order_id"], unique=False)

    op.create_table(
        "availability_rule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("machine_id", sa.Integer(), nullable=False),
        sa.Column("weekdays", sa.JSON(), nullable=False),
        sa.Column("start_time", sqlmodel.sql.sqltypes.AutoString(length=5), nullable=False),
        sa.Column("end_time", sqlmodel.sql.sqltypes.AutoString(length=5), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("timezone", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["machine_id"],
            ["machine.id"],
            name=op.f("fk_availability_rule_machine_id_machine"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_availability_rule")),
    )
    with op.batch_alter_table("availability_rule", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_availability_rule_machine_id"), ["machine_id"], unique=False
        )

    op.create_table(
        "operation",
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("part_x_mm", sa.Integer(), nullable=False),
        sa.Column("part_y_mm", sa.Integer(), nullable=False),
        sa.Column("part_z_mm", sa.Integer(), nullable=False),
        sa.Column("tolerance_mm", sa.Float(), nullable=True),
        sa.Column("std_duration_min", sa.Integer(), nullable=False),
        sa.Column("notes", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("process_key", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("material_key", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("certifications", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["material_key"], ["material.key"], name=op.f("fk_operation_material_key_material")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["order.id"], name=op.f("fk_operation_order_id_order"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["process_key"], ["process.key"], name=op.f("fk_operation_process_key_process")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operation")),
    )
    with op.batch_alter_table("operation", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_operation_order_id"), ["order_id"], unique=False)

    op.create_table(
        "attachment_access",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("attachment_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("org_id", sa.Integer(), nullable=True),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["attachment_id"],
            ["attachment.id"],
            name=op.f("fk_attachment_access_attachment_id_attachment"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organization.id"], name=op.f("fk_attachment_access_org_id_organization")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_attachment_access_user_id_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attachment_access")),
    )
    with op.batch_alter_table("attachment_access", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_attachment_access_attachment_id"), ["attachment_id"], unique=False
        )

    op.create_table(
        "availability_window",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("machine_id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=True),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["machine_id"],
            ["machine.id"],
            name=op.f("fk_availability_window_machine_id_machine"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["availability_rule.id"],
            name=op.f("fk_availability_window_rule_id_availability_rule"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_availability_window")),
    )
    with op.batch_alter_table("availability_window", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_availability_window_machine_id"), ["machine_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_availability_window_rule_id"), ["rule_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_availability_window_start_at"), ["start_at"], unique=False
        )

    op.create_table(
        "booking",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("machine_id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("operation_id", sa.Integer(), nullable=True),
        sa.Column("price_fen", sa.Integer(), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("created_by_user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_user_id"], ["user.id"], name=op.f("fk_booking_created_by_user_id_user")
        ),
        sa.ForeignKeyConstraint(
            ["machine_id"], ["machine.id"], name=op.f("fk_booking_machine_id_machine")
        ),
        sa.ForeignKeyConstraint(
            ["operation_id"], ["operation.id"], name=op.f("fk_booking_operation_id_operation")
        ),
        sa.ForeignKeyConstraint(["order_id"], ["order.id"], name=op.f("fk_booking_order_id_order")),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organization.id"], name=op.f("fk_booking_org_id_organization")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking")),
    )
    with op.batch_alter_table("booking", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_booking_machine_id"), ["machine_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_booking_operation_id"), ["operation_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_booking_order_id"), ["order_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_booking_org_id"), ["org_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_booking_state"), ["state"], unique=False)

    op.create_table(
        "order_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("booking_id", sa.Integer(), nullable=True),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["booking_id"], ["booking.id"], name=op.f("fk_order_event_booking_id_booking")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["order.id"],
            name=op.f("fk_order_event_order_id_order"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], name=op.f("fk_order_event_user_id_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_event")),
    )
    with op.batch_alter_table("order_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_order_event_order_id"), ["order_id"], unique=False)

    _seed_taxonomy()
    if op.get_bind().dialect.name == "postgresql":
        _postgres_exclusions()


def _seed_taxonomy() -> None:
    """The process taxonomy is data: it comes from models/data/taxonomy.json."""
    taxonomy = load_taxonomy()
    material = sa.table("material", sa.column("key"), sa.column("name_en"), sa.column("name_zh"))
    process = sa.table(
        "process", sa.column("key"), sa.column("family"), sa.column("name_en"), sa.column("name_zh")
    )
    link = sa.table("process_material", sa.column("process_key"), sa.column("material_key"))
    op.bulk_insert(material, taxonomy["materials"])
    op.bulk_insert(
        process,
        [{k: p[k] for k in ("key", "family", "name_en", "name_zh")} for p in taxonomy["processes"]],
    )
    op.bulk_insert(
        link,
        [
            {"process_key": p["key"], "material_key": m}
            for p in taxonomy["processes"]
            for m in p["materials"]
        ],
    )


def _postgres_exclusions() -> None:
    """No double-booking and no overlapping offered windows, enforced by PostgreSQL."""
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    op.execute(
        "ALTER TABLE booking ADD CONSTRAINT ex_booking_no_overlap EXCLUDE USING gist "
        "(machine_id WITH =, tstzrange(start_at, end_at, '[)') WITH &&) "
        "WHERE (state IN ('proposed', 'confirmed', 'in_progress'))"
    )
    op.execute(
        "ALTER TABLE availability_window ADD CONSTRAINT ex_availability_window_no_overlap "
        "EXCLUDE USING gist (machine_id WITH =, tstzrange(start_at, end_at, '[)') WITH &&)"
    )
    op.execute("ALTER TABLE booking ADD CONSTRAINT ck_booking_time_order CHECK (end_at > start_at)")


def downgrade() -> None:
    with op.batch_alter_table("order_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_order_event_order_id"))

    op.drop_table("order_event")
    with op.batch_alter_table("booking", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_booking_state"))
        batch_op.drop_index(batch_op.f("ix_booking_org_id"))
        batch_op.drop_index(batch_op.f("ix_booking_order_id"))
        batch_op.drop_index(batch_op.f("ix_booking_operation_id"))
        batch_op.drop_index(batch_op.f("ix_booking_machine_id"))

    op.drop_table("booking")
    with op.batch_alter_table("availability_window", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_availability_window_start_at"))
        batch_op.drop_index(batch_op.f("ix_availability_window_rule_id"))
        batch_op.drop_index(batch_op.f("ix_availability_window_machine_id"))

    op.drop_table("availability_window")
    with op.batch_alter_table("attachment_access", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attachment_access_attachment_id"))

    op.drop_table("attachment_access")
    with op.batch_alter_table("operation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_operation_order_id"))

    op.drop_table("operation")
    with op.batch_alter_table("availability_rule", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_availability_rule_machine_id"))

    op.drop_table("availability_rule")
    with op.batch_alter_table("attachment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attachment_order_id"))

    op.drop_table("attachment")
    with op.batch_alter_table("order", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_order_status"))
        batch_op.drop_index(batch_op.f("ix_order_buyer_org_id"))

    op.drop_table("order")
    with op.batch_alter_table("machine", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_machine_status"))
        batch_op.drop_index(batch_op.f("ix_machine_process_key"))
        batch_op.drop_index(batch_op.f("ix_machine_owner_org_id"))
        batch_op.drop_index(batch_op.f("ix_machine_lat"))
        batch_op.drop_index(batch_op.f("ix_machine_cluster_id"))

    op.drop_table("machine")
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_org_id"))

    op.drop_table("user")
    op.drop_table("process_material")
    with op.batch_alter_table("cluster", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cluster_operator_org_id"))

    op.drop_table("cluster")
    with op.batch_alter_table("process", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_process_family"))

    op.drop_table("process")
    op.drop_table("organization")
    op.drop_table("material")
