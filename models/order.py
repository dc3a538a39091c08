"""Orders (jobs) with their ordered operations, and the timeline of an order."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlmodel import Field, SQLModel

from models.base import CURRENCY, StrEnumType, UTCDateTime, json_list, utcnow

MAX_QUANTITY = 10_000_000
MAX_DURATION_MIN = 60 * 24 * 60  # 60 days on the reference machine
MAX_BUDGET_FEN = 100_000_000_000  # ¥1 billion


class OrderStatus(StrEnum):
    draft = "draft"
    open = "open"
    matched = "matched"
    in_progress = "in_progress"
    completed = "completed"
    cancelled = "cancelled"


class DueKind(StrEnum):
    hard = "hard"
    soft = "soft"


class OperationBase(SQLModel):
    process_key: str = Field(max_length=60)
    material_key: str = Field(max_length=60)
    quantity: int = Field(default=1, ge=1, le=MAX_QUANTITY)
    part_x_mm: int = Field(default=0, ge=0, le=100_000)
    part_y_mm: int = Field(default=0, ge=0, le=100_000)
    part_z_mm: int = Field(default=0, ge=0, le=100_000)
    tolerance_mm: float | None = Field(default=None, gt=0, le=10)
    std_duration_min: int = Field(ge=1, le=MAX_DURATION_MIN)
    certifications: list[str] = Field(default_factory=list)
    notes: str = Field(default="", max_length=2000)


class Operation(OperationBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="order.id", index=True, ondelete="CASCADE")
    seq: int
    process_key: str = Field(foreign_key="process.key", max_length=60)
    material_key: str = Field(foreign_key="material.key", max_length=60)
    certifications: list[str] = Field(default_factory=list, sa_column=json_list())


class OperationCreate(OperationBase):
    pass


class OperationPublic(OperationBase):
    id: int
    seq: int


class OrderBase(SQLModel):
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    release_at: dt.datetime
    due_at: dt.datetime
    due_kind: DueKind = DueKind.hard
    tardiness_fen_per_hour: int = Field(default=0, ge=0, le=100_000_000)
    budget_fen: int | None = Field(default=None, gt=0, le=MAX_BUDGET_FEN)
    delivery_lat: float | None = Field(default=None, ge=-90, le=90)
    delivery_lon: float | None = Field(default=None, ge=-180, le=180)
    delivery_address: str = Field(default="", max_length=300)
    max_distance_km: int | None = Field(default=None, gt=0, le=5000)


class Order(OrderBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    buyer_org_id: int = Field(foreign_key="organization.id", index=True)
    created_by_user_id: int | None = Field(default=None, foreign_key="user.id")
    release_at: dt.datetime = Field(sa_type=UTCDateTime)
    due_at: dt.datetime = Field(sa_type=UTCDateTime)
    # the table keeps the plain value (like status); OrderBase's DueKind validates API input
    due_kind: str = Field(default=DueKind.hard.value, max_length=10)  # type: ignore[assignment]
    status: OrderStatus = Field(
        default=OrderStatus.draft, sa_type=StrEnumType(OrderStatus, 20), index=True
    )
    currency: str = Field(default=CURRENCY, max_length=3)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class OrderCreate(OrderBase):
    operations: list[OperationCreate] = Field(min_length=1, max_length=20)


class OrderUpdate(SQLModel):
    """A draft may be changed freely; operations, when given, replace the old ones."""

    title: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    release_at: dt.datetime | None = None
    due_at: dt.datetime | None = None
    due_kind: DueKind | None = None
    tardiness_fen_per_hour: int | None = Field(default=None, ge=0, le=100_000_000)
    budget_fen: int | None = Field(default=None, gt=0, le=MAX_BUDGET_FEN)
    delivery_lat: float | None = Field(default=None, ge=-90, le=90)
    delivery_lon: float | None = Field(default=None, ge=-180, le=180)
    delivery_address: str | None = Field(default=None, max_length=300)
    max_distance_km: int | None = Field(default=None, gt=0, le=5000)
    operations: list[OperationCreate] | None = Field(default=None, min_length=1, max_length=20)


class OrderPublic(OrderBase):
    id: int
    buyer_org_id: int
    status: str
    currency: str
    created_at: dt.datetime
    updated_at: dt.datetime
    operations: list[OperationPublic]


class OrderEvent(SQLModel, table=True):
    """One line of an order's timeline: a state it entered, and when."""

    __tablename__ = "order_event"

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="order.id", index=True, ondelete="CASCADE")
    booking_id: int | None = Field(default=None, foreign_key="booking.id")
    state: str = Field(max_length=40)
    note: str = Field(default="", max_length=500)
    user_id: int | None = Field(default=None, foreign_key="user.id")
    at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class OrderEventPublic(SQLModel):
    state: str
    note: str
    booking_id: int | None
    at: dt.datetime
