"""Bookings: a machine occupied over [start, end), for an order's operation
(``service``) or leased to a renter org (``lease``)."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import ColumnElement, Index, and_
from sqlmodel import Field, SQLModel, col

from models.base import CURRENCY, MAX_ID, StrEnumType, UTCDateTime, utcnow


class BookingKind(StrEnum):
    service = "service"
    lease = "lease"


class BookingState(StrEnum):
    proposed = "proposed"
    confirmed = "confirmed"
    in_progress = "in_progress"
    done = "done"
    declined = "declined"
    cancelled = "cancelled"
    expired = "expired"


# States in which a booking holds its machine; two of these never overlap.
ACTIVE_STATES: tuple[str, ...] = (
    BookingState.proposed.value,
    BookingState.confirmed.value,
    BookingState.in_progress.value,
)
# States in which a booking holds its step of an order (the step is placed for good).
HELD_STATES: tuple[str, ...] = (
    BookingState.confirmed.value,
    BookingState.in_progress.value,
    BookingState.done.value,
)


class Booking(SQLModel, table=True):
    # a machine's bookings in a time range (the overlap query, the dashboard, a calendar);
    # the whole market's in a range (the dashboard's period)
    __table_args__ = (
        Index("ix_booking_machine_id_start_at", "machine_id", "start_at"),
        Index("ix_booking_start_at", "start_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    machine_id: int = Field(foreign_key="machine.id", index=True)
    kind: str = Field(max_length=10)
    state: BookingState = Field(sa_type=StrEnumType(BookingState, 20), index=True)
    start_at: dt.datetime = Field(sa_type=UTCDateTime)
    end_at: dt.datetime = Field(sa_type=UTCDateTime)
    org_id: int = Field(foreign_key="organization.id", index=True)
    order_id: int | None = Field(default=None, foreign_key="order.id", index=True)
    operation_id: int | None = Field(default=None, foreign_key="operation.id", index=True)
    price_fen: int = Field(ge=0)
    currency: str = Field(default=CURRENCY, max_length=3)
    reason: str = Field(default="", max_length=500)
    created_by_user_id: int | None = Field(default=None, foreign_key="user.id")
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    started_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


def holding(start: dt.datetime, end: dt.datetime) -> ColumnElement[bool]:
    """The one overlap rule: bookings that hold their machine somewhere in [start, end)."""
    return and_(
        col(Booking.state).in_(ACTIVE_STATES),
        col(Booking.start_at) < end,
        col(Booking.end_at) > start,
    )


class LeaseCreate(SQLModel):
    machine_id: int = Field(ge=1, le=MAX_ID)
    start_at: dt.datetime
    end_at: dt.datetime


class BookingPublic(SQLModel):
    id: int
    machine_id: int
    kind: str
    state: str
    start_at: dt.datetime
    end_at: dt.datetime
    org_id: int
    order_id: int | None
    operation_id: int | None
    price_fen: int
    currency: str
    reason: str
    created_at: dt.datetime
    updated_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None


class BookingTransition(SQLModel):
    reason: str = Field(default="", max_length=500)
