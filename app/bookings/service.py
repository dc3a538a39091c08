"""Bookings and their state machine; direct leases of machine time.

    proposed ──accept──▶ confirmed ──start──▶ in_progress ──complete──▶ done
        │ decline / expire / cancel    │ cancel
        ▼                              ▼
    declined / expired / cancelled   cancelled

Two bookings of one machine never overlap while either is proposed, confirmed or
in progress: PostgreSQL enforces it with an exclusion constraint, SQLite by
serializing write transactions; the service checks first to say which booking
is in the way.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from sqlalchemy import or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from app.accounts.service import is_admin
from app.db import begin_write
from app.errors import (
    BookingNotFound,
    CapacityUnavailable,
    InvalidInput,
    InvalidTransition,
    PermissionDenied,
)
from app.machines.availability import PAST_GRACE, offered_spans
from app.machines.service import get_machine_or_raise, lock_machine
from app.money import service as money
from app.money.provider import PaymentsClient
from app.orders import service as orders
from models import (
    ACTIVE_STATES,
    Booking,
    BookingKind,
    BookingState,
    Machine,
    MachineStatus,
    OrderEvent,
    Role,
    User,
    utcnow,
)
from models.base import as_utc
from models.booking import LeaseCreate

MAX_LEASE = dt.timedelta(days=31)


@dataclass(frozen=True)
class Transition:
    name: str
    sources: frozenset[str]
    target: BookingState
    by_owner: bool  # the machine's owner may do it
    by_customer: bool  # the buyer / renter may do it


S = BookingState
TRANSITIONS: dict[str, Transition] = {
    t.name: t
    for t in (
        Transition("accept", frozenset({S.proposed}), S.confirmed, True, False),
        Transition("decline", frozenset({S.proposed}), S.declined, True, False),
        Transition("start", frozenset({S.confirmed}), S.in_progress, True, False),
        Transition("complete", frozenset({S.in_progress}), S.done, True, False),
        Transition("cancel", frozenset({S.proposed, S.confirmed}), S.cancelled, True, True),
    )
}


def price_fen(*, minutes: int, hourly_rate_fen: int) -> int:
    """Time priced from an hourly rate, rounded up to the fen (integer arithmetic)."""
    return -(-minutes * hourly_rate_fen // 60)


def _visible(session: Session, user: User):  # type: ignore[no-untyped-def]
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
    query = select(Booking).where(Booking.id == booking_id, _visible(session, user))
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
    query = select(Booking).where(_visible(session, user))
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
    return session.exec(
        select(Booking).where(
            Booking.machine_id == machine_id,
            col(Booking.state).in_(ACTIVE_STATES),
            col(Booking.start_at) < end,
            col(Booking.end_at) > start,
        )
    ).first()


def create_lease(
    *, session: Session, user: User, data: LeaseCreate, payments: PaymentsClient | None = None
) -> Booking:
    """Lease a slot of a machine's offered time to the caller's org, priced from
    the hourly rate. The renter's staff operate the machine."""
    begin_write(session)
    if not user.has_role(Role.buyer):
        raise PermissionDenied("only buyer organizations lease machine time")
    machine = get_machine_or_raise(session=session, user=user, machine_id=data.machine_id)
    if machine.owner_org_id == user.org_id:
        raise InvalidInput("an organization cannot lease its own machine", field="machine_id")
    if not machine.leasable:
        raise InvalidInput(
            "this machine is offered as a service only, not for lease", field="machine_id"
        )
    if machine.status != MachineStatus.active.value:
        raise InvalidInput(f"this machine is {machine.status}", field="machine_id")
    start, end = as_utc(data.start_at), as_utc(data.end_at)
    if end <= start:
        raise InvalidInput("end_at must be after start_at", field="end_at")
    if start < utcnow() - PAST_GRACE:
        raise InvalidInput("the lease starts in the past", field="start_at")
    if end - start > MAX_LEASE:
        raise InvalidInput("a lease is at most 31 days", field="end_at")
    minutes = math.ceil((end - start).total_seconds() / 60)
    if minutes < machine.min_booking_minutes:
        raise InvalidInput(
            f"the minimum booking on this machine is {machine.min_booking_minutes} minutes",
            field="end_at",
        )
    assert machine.id is not None
    lock_machine(session, machine.id)
    if not any(s <= start and end <= e for s, e in offered_spans(session, machine.id, start, end)):
        raise InvalidInput("the slot is not within the machine's offered time", field="start_at")
    clash = collision(session, machine.id, start, end)
    if clash is not None:
        raise CapacityUnavailable("the slot collides with another booking", field="start_at")
    booking = Booking(
        machine_id=machine.id,
        kind=BookingKind.lease.value,
        state=BookingState.confirmed.value,
        start_at=start,
        end_at=end,
        org_id=user.org_id,
        price_fen=price_fen(minutes=minutes, hourly_rate_fen=machine.hourly_rate_fen),
        currency=machine.currency,
        created_by_user_id=user.id,
    )
    session.add(booking)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise CapacityUnavailable(
            "the slot collides with another booking", field="start_at"
        ) from exc
    money.plan_booking_payments(session, booking=booking, action="create")  # the deposit
    commit_booking(session)
    session.refresh(booking)
    if payments is not None:
        assert booking.id is not None
        money.drive_payments(session=session, payments=payments, booking_id=booking.id)
        session.refresh(booking)
    return booking


def commit_booking(session: Session) -> None:
    """Commit; a collision the database caught becomes a 409."""
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise CapacityUnavailable(
            "the slot collides with another booking", field="start_at"
        ) from exc


def transition_booking(
    *,
    session: Session,
    user: User,
    booking_id: int,
    action: str,
    reason: str = "",
    payments: PaymentsClient | None = None,
) -> Booking:
    """Move a booking through its state machine; the money the move makes due (a hold,
    a capture, a void, a lease's charge and deposit refund) is written in the same
    commit and, given a payments client, sent to the provider right after it."""
    begin_write(session)
    transition = TRANSITIONS.get(action)
    if transition is None:
        raise InvalidInput(f"unknown action {action!r}", field="action")
    booking = get_booking_or_raise(
        session=session, user=user, booking_id=booking_id, for_update=True
    )
    machine = session.get(Machine, booking.machine_id)
    assert machine is not None
    is_owner = machine.owner_org_id == user.org_id and user.has_role(Role.owner)
    is_customer = booking.org_id == user.org_id
    allowed = (
        is_admin(user)
        or (transition.by_owner and is_owner)
        or (transition.by_customer and is_customer)
    )
    if not allowed:
        raise PermissionDenied(f"you may not {action} this booking")
    if booking.state not in transition.sources:
        raise InvalidTransition(
            f"a {booking.state} booking cannot be {transition.target.value}", field="state"
        )
    if action == "decline" and not reason.strip():
        raise InvalidInput("a reason is required to decline", field="reason")
    booking.state = transition.target.value
    booking.reason = reason
    booking.updated_at = utcnow()
    session.add(booking)
    if booking.order_id is not None:
        session.add(
            OrderEvent(
                order_id=booking.order_id,
                booking_id=booking.id,
                state=f"booking_{booking.state}",
                note=reason,
                user_id=user.id,
            )
        )
    if booking.order_id is not None and action in ("start", "complete"):
        orders.record_progress(session=session, order_id=booking.order_id, user=user)
    money.plan_booking_payments(
        session, booking=booking, action=action, by_customer=is_customer and not is_owner
    )
    session.commit()
    session.refresh(booking)
    if payments is not None:
        money.drive_payments(session=session, payments=payments, booking_id=booking_id)
        session.refresh(booking)
    return booking
