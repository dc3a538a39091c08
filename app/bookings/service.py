"""Bookings: who sees them, the overlap query, and the one writer of their state.

Two bookings of one machine never overlap while either is proposed, confirmed or in
progress: PostgreSQL enforces it with an exclusion constraint, SQLite by serializing
write transactions; :func:`collision` checks first to say which booking is in the way.

:func:`transition` is the only code that assigns ``Booking.state`` after creation and
:func:`new_booking` the only code that creates a booking; both move along
:data:`app.bookings.states.TRANSITIONS`. Commands that also move money, the order and
its timeline live in :mod:`app.bookings.flows`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from app.accounts.service import is_admin
from app.bookings.states import TRANSITIONS, Transition
from app.bulk import insert_rows
from app.errors import BookingNotFound, CapacityUnavailable, InvalidTransition
from models import (
    Booking,
    BookingKind,
    BookingState,
    Machine,
    User,
    utcnow,
)
from models.base import as_utc
from models.booking import holding


def _visible(user: User) -> ColumnElement[bool]:
    """A booking is seen by its customer (buyer or renter), by the owner of its
    machine and by admins. Operators see their clusters through aggregates only,
    never another organization's prices (SPEC §1)."""
    if is_admin(user):
        return col(Booking.id).is_not(None)
    owned = select(Machine.id).where(Machine.owner_org_id == user.org_id)
    return or_(col(Booking.org_id) == user.org_id, col(Booking.machine_id).in_(owned))


def get_booking_or_raise(
    *, session: Session, user: User, booking_id: int, for_update: bool = False
) -> Booking:
    """The booking, if the caller may see it. ``for_update`` locks its row (PostgreSQL)
    so that two commands on one booking run one after the other."""
    query = select(Booking).where(Booking.id == booking_id, _visible(user))
    booking = session.exec(query.with_for_update() if for_update else query).first()
    if booking is None:
        raise BookingNotFound("booking not found", field="booking_id")
    return booking


def list_bookings(
    *,
    session: Session,
    user: User,
    kind: BookingKind | None = None,
    state: BookingState | None = None,
    machine_id: int | None = None,
    order_id: int | None = None,
    customer_org_id: int | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Booking], int]:
    """Bookings the caller sees; ``start``/``end`` keep those overlapping that span."""
    query = select(Booking).where(_visible(user))
    if customer_org_id is not None:
        query = query.where(Booking.org_id == customer_org_id)
    if start is not None:
        query = query.where(col(Booking.end_at) > as_utc(start))
    if end is not None:
        query = query.where(col(Booking.start_at) < as_utc(end))
    if kind is not None:
        query = query.where(Booking.kind == kind.value)
    if state is not None:
        query = query.where(Booking.state == state.value)
    if machine_id is not None:
        query = query.where(Booking.machine_id == machine_id)
    if order_id is not None:
        query = query.where(Booking.order_id == order_id)
    count = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.order_by(col(Booking.start_at), col(Booking.id)).offset(offset).limit(limit)
    ).all()
    return list(rows), count


def collision(
    session: Session, machine_id: int, start: dt.datetime, end: dt.datetime
) -> Booking | None:
    """A booking that holds the machine somewhere in [start, end), if any: the one
    overlap query."""
    return session.exec(
        select(Booking).where(Booking.machine_id == machine_id, holding(start, end))
    ).first()


def new_booking(
    session: Session,
    *,
    machine: Machine,
    kind: BookingKind,
    state: BookingState,
    start_at: dt.datetime,
    end_at: dt.datetime,
    org_id: int,
    price_fen: int,
    order_id: int | None = None,
    operation_id: int | None = None,
    reason: str = "",
    created_by_user_id: int | None = None,
    flush: bool = True,
) -> Booking:
    """Create a booking in its first state: ``proposed`` (a match run's proposal) or
    ``confirmed`` (a lease). Flushes (unless ``flush`` is False: a bulk writer flushes
    once for all); a collision the database caught is a 409."""
    if state not in (BookingState.proposed, BookingState.confirmed):
        raise ValueError(f"a booking starts proposed or confirmed, not {state}")
    assert machine.id is not None
    booking = Booking(
        machine_id=machine.id,
        kind=kind,
        state=state,
        start_at=start_at,
        end_at=end_at,
        org_id=org_id,
        order_id=order_id,
        operation_id=operation_id,
        price_fen=price_fen,
        currency=machine.currency,
        reason=reason,
        created_by_user_id=created_by_user_id,
    )
    session.add(booking)
    if flush:
        session.flush()
    return booking


def insert_proposals(session: Session, rows: Sequence[ProposalRow]) -> list[int]:
    """A match run's proposals in bulk (the other way a booking is created): rows in, new
    ids out in their order. The caller has checked they collide with nothing held; on
    PostgreSQL the exclusion constraint still has the last word."""
    now = utcnow()
    return insert_rows(
        session,
        Booking,
        [
            {
                "machine_id": r.machine_id,
                "kind": BookingKind.service.value,
                "state": BookingState.proposed.value,
                "start_at": r.start_at,
                "end_at": r.end_at,
                "org_id": r.org_id,
                "order_id": r.order_id,
                "operation_id": r.operation_id,
                "price_fen": r.price_fen,
                "currency": r.currency,
                "reason": r.reason,
                "created_by_user_id": r.created_by_user_id,
                "created_at": now,
                "updated_at": now,
            }  # fmt: skip
            for r in rows
        ],
        ids=True,
    )


@dataclass(frozen=True, slots=True)
class ProposalRow:
    machine_id: int
    order_id: int
    operation_id: int
    org_id: int  # the buyer
    start_at: dt.datetime
    end_at: dt.datetime
    price_fen: int
    currency: str
    reason: str
    created_by_user_id: int | None


def transition(
    session: Session,
    *,
    booking: Booking,
    action: str,
    reason: str = "",
    now: dt.datetime | None = None,
) -> Transition:
    """Move the booking along its transitions table (flush left to the command).
    A move the table forbids is a 409 naming the state."""
    move = TRANSITIONS[action]
    if booking.state not in move.sources:
        raise InvalidTransition(
            f"a {booking.state} booking cannot be {move.target.value}", field="state"
        )
    now = now or utcnow()
    booking.state = move.target
    booking.reason = reason
    booking.updated_at = now
    if move.target == BookingState.in_progress:
        booking.started_at = now
    elif move.target == BookingState.done:
        booking.finished_at = now
    session.add(booking)
    return move


def commit_booking(session: Session) -> None:
    """Commit; a collision the database caught becomes a 409."""
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise CapacityUnavailable(
            "the slot collides with another booking", field="start_at"
        ) from exc
