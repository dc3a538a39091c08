"""Machines and their offered time (single windows and recurring rules)."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from pydantic import field_validator
from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from models.base import CURRENCY, MAX_ID, StrEnumType, UTCDateTime, json_list, utcnow

MAX_RATE_FEN = 10_000_000  # ¥100,000 an hour: anything above is a typo
MAX_ENVELOPE_MM = 100_000


class MachineStatus(StrEnum):
    active = "active"
    down = "down"
    retired = "retired"


class MachineBase(SQLModel):
    name: str = Field(min_length=1, max_length=200)
    make_model: str = Field(default="", max_length=200)
    process_key: str = Field(max_length=60)
    materials: list[str] = Field(default_factory=list)
    envelope_x_mm: int = Field(default=0, ge=0, le=MAX_ENVELOPE_MM)
    envelope_y_mm: int = Field(default=0, ge=0, le=MAX_ENVELOPE_MM)
    envelope_z_mm: int = Field(default=0, ge=0, le=MAX_ENVELOPE_MM)
    tolerance_mm: float = Field(default=0.1, gt=0, le=10)
    speed_factor: float = Field(default=1.0, gt=0.05, le=20)
    hourly_rate_fen: int = Field(gt=0, le=MAX_RATE_FEN)
    min_booking_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    leasable: bool = False
    certifications: list[str] = Field(default_factory=list)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    cluster_id: int | None = Field(default=None, ge=1, le=MAX_ID)


# PostgreSQL only (migration 0007): GIN indexes on CAST(col AS JSONB) for the search's
# JSON-list membership (app/machines/sql.py); SQLite has no such index, so the models do
# not declare them and `alembic check` leaves them out.
PG_ONLY_INDEXES = ("ix_machine_materials_gin", "ix_machine_certifications_gin")


class Machine(MachineBase, table=True):
    # the search's filters and sorts (migration 0007), each sort ended by the id
    __table_args__ = (
        Index("ix_machine_status_process_key", "status", "process_key"),
        Index("ix_machine_cluster_id_status", "cluster_id", "status"),
        Index("ix_machine_hourly_rate_fen_id", "hourly_rate_fen", "id"),
        Index("ix_machine_created_at_id", "created_at", "id"),
        Index("ix_machine_lat_lon", "lat", "lon"),
    )

    id: int | None = Field(default=None, primary_key=True)
    owner_org_id: int = Field(foreign_key="organization.id", index=True)
    process_key: str = Field(foreign_key="process.key", index=True, max_length=60)
    cluster_id: int | None = Field(default=None, foreign_key="cluster.id", index=True)
    materials: list[str] = Field(default_factory=list, sa_column=json_list())
    certifications: list[str] = Field(default_factory=list, sa_column=json_list())
    lat: float
    lon: float
    currency: str = Field(default=CURRENCY, max_length=3)
    status: MachineStatus = Field(
        default=MachineStatus.active, sa_type=StrEnumType(MachineStatus, 20), index=True
    )
    telemetry_token_hash: str | None = Field(default=None, max_length=64, unique=True, index=True)
    reported_state: str | None = Field(default=None, max_length=10)
    last_reported_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class MachineCreate(MachineBase):
    @field_validator("materials")
    @classmethod
    def _materials_present(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one material is required")
        return sorted(set(value))


class MachineUpdate(SQLModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    make_model: str | None = Field(default=None, max_length=200)
    materials: list[str] | None = Field(default=None, min_length=1)
    envelope_x_mm: int | None = Field(default=None, ge=0, le=MAX_ENVELOPE_MM)
    envelope_y_mm: int | None = Field(default=None, ge=0, le=MAX_ENVELOPE_MM)
    envelope_z_mm: int | None = Field(default=None, ge=0, le=MAX_ENVELOPE_MM)
    tolerance_mm: float | None = Field(default=None, gt=0, le=10)
    speed_factor: float | None = Field(default=None, gt=0.05, le=20)
    hourly_rate_fen: int | None = Field(default=None, gt=0, le=MAX_RATE_FEN)
    min_booking_minutes: int | None = Field(default=None, ge=1, le=7 * 24 * 60)
    leasable: bool | None = None
    certifications: list[str] | None = None
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    status: MachineStatus | None = None


class MachinePublic(MachineBase):
    id: int
    owner_org_id: int
    owner_name: str | None = None
    lat: float
    lon: float
    currency: str
    status: str
    reported_state: str | None = Field(
        default=None, description="last state the machine reported (telemetry)"
    )
    last_reported_at: dt.datetime | None = None
    distance_km: float | None = None
    created_at: dt.datetime
    updated_at: dt.datetime


class MachineCreated(MachinePublic):
    telemetry_token: str = Field(description="Shown once; the machine reports with it.")


class AvailabilityRule(SQLModel, table=True):
    """A recurring offer: on these weekdays, from start to end local time, between two
    dates. An end at or before the start runs overnight into the next day."""

    __tablename__ = "availability_rule"

    id: int | None = Field(default=None, primary_key=True)
    machine_id: int = Field(foreign_key="machine.id", index=True, ondelete="CASCADE")
    weekdays: list[int] = Field(default_factory=list, sa_column=json_list())
    start_time: str = Field(max_length=5)
    end_time: str = Field(max_length=5)
    valid_from: dt.date
    valid_until: dt.date
    timezone: str = Field(default="Asia/Shanghai", max_length=60)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AvailabilityWindow(SQLModel, table=True):
    __tablename__ = "availability_window"

    id: int | None = Field(default=None, primary_key=True)
    machine_id: int = Field(foreign_key="machine.id", index=True, ondelete="CASCADE")
    rule_id: int | None = Field(
        default=None, foreign_key="availability_rule.id", index=True, ondelete="CASCADE"
    )
    start_at: dt.datetime = Field(sa_type=UTCDateTime, index=True)
    end_at: dt.datetime = Field(sa_type=UTCDateTime)


class WindowCreate(SQLModel):
    start_at: dt.datetime
    end_at: dt.datetime


MAX_WINDOW_IMPORT_ROWS = 20_000


class WindowImportRow(SQLModel):
    machine_id: int = Field(ge=1, le=MAX_ID)
    start_at: dt.datetime
    end_at: dt.datetime


class WindowImport(SQLModel):
    """Many single windows at once, on any of the caller's machines: all or none."""

    windows: list[WindowImportRow] = Field(min_length=1, max_length=MAX_WINDOW_IMPORT_ROWS)


class WindowsImported(SQLModel):
    created: int = Field(description="windows added")
    already_offered: int = Field(description="rows identical to a window already offered, skipped")


class WindowPublic(SQLModel):
    id: int
    machine_id: int
    rule_id: int | None
    start_at: dt.datetime
    end_at: dt.datetime


class RuleCreate(SQLModel):
    weekdays: list[int] = Field(min_length=1, description="0 = Monday … 6 = Sunday")
    start_time: str = Field(
        schema_extra={"pattern": r"^([01]\d|2[0-3]):[0-5]\d$"}, description="HH:MM local time"
    )
    end_time: str = Field(
        schema_extra={"pattern": r"^([01]\d|2[0-3]):[0-5]\d$"},
        description="HH:MM local time; at or before start = overnight",
    )
    valid_from: dt.date
    valid_until: dt.date

    @field_validator("weekdays")
    @classmethod
    def _weekdays_in_range(cls, value: list[int]) -> list[int]:
        if any(d < 0 or d > 6 for d in value):
            raise ValueError("weekdays are 0 (Monday) to 6 (Sunday)")
        return sorted(set(value))


class RulePublic(SQLModel):
    id: int
    machine_id: int
    weekdays: list[int]
    start_time: str
    end_time: str
    valid_from: dt.date
    valid_until: dt.date
    timezone: str
    windows_created: int = 0
