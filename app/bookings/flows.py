"""Booking commands that span aggregates: a move of a booking's state machine together
with the money it makes due, the order's status and its timeline, all in one
transaction; and direct leases.

Every command here writes through :func:`app.bookings.service.transition` (the state),
:mod:`app.money.planning` (the payments due), :func:`app.orders.service.sync_status`
(the order) and :func:`app.orders.timeline.record_event` (the timeline), then commits
once; the payments planned defer ``payments.drive``, which sends them to the provider
after the commit. A ``payments`` client given to a command (the CLI, the tests) drives
them in the call instead; the web never passes one, so no request waits for the provider.

The lifecycle rules of a service booking (an order's step) are checked here:

* an order's steps are confirmed as a whole: no step starts until every step of the
  order has a confirmed booking (before that, no money moves beyond an authorization);
* a booking starts no earlier than ``start_at`` minus ``early_start_minutes``;
* a step starts only once the step before it is done and its goods had time to arrive
  (the matcher's transport time between the two machines);
* a booking is completed only after it started.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.accounts.service import is_admin
from app.bookings import service as bookings
from app.bookings.states import TRANSITIONS, USER_ACTIONS
from app.config import get_settings
from app.db import begin_write
from app.errors import (
    CapacityUnavailable,
    InvalidInput,
    InvalidTransition,
    LifecycleRuleBroken,
    PermissionDenied,
)
from app.machines.availability import PAST_GRACE, offered_spans
from app.machines.service import get_machine_or_raise, lock_machine
from app.money import planning
from app.money.driver import drive_payments
from app.money.provider import PaymentsClient
from app.orders import service as orders
from app.orders import timeline
from matching import Weights
from matching.rules import price_fen, transport_minutes_between
from models import (
    HELD_STATES,
    Booking,
    BookingKind,
    BookingState,
    Machine,
    MachineStatus,
    Operation,
    Payment,
    Role,
    User,
    utcnow,
)
from models.base import as_utc
from models.booking import LeaseCreate

MAX_LEASE = dt.timedelta(days=31)
# The platform's own moves are recorded without a customer's late-cancellation fee.
_MONEY_ACTION = {"expire": "cancel", "supersede": "cancel", "release": "cancel"}


def apply(
    session: Session,
    *,
    booking: Booking,
    action: str,
    user: User | None = None,
    reason: str = "",
    by_customer: bool = False,
    now: dt.datetime | None = None,
    sync_order: bool = True,
) -> None:
    """Move one booking and everything that moves with it (flush only; the command
    commits): its state, the payments it makes due, the order's timeline and status."""
    bookings.transition(session, booking=booking, action=action, reason=reason, now=now)
    planning.plan_booking_payments(
        session,
        booking=booking,
        action=_MONEY_ACTION.get(action, action),
        now=now,
        by_customer=by_customer,
    )
    if booking.order_id is not None:
        user_id = user.id if user is not None else None
        timeline.record_event(
            session,
            order_id=booking.order_id,
            booking_id=booking.id,
            state=f"booking_{booking.state}",
            note=reason,
            user_id=user_id,
        )
        if sync_order:
            orders.sync_status(session, order_id=booking.order_id, user_id=user_id)
    session.flush()


@dataclass(frozen=True, slots=True)
class Proposal:
    """One step of an order proposed to one machine by a match run."""

    machine: Machine
    order_id: int
    buyer_org_id: int
    operation_id: int
    start_at: dt.datetime
    end_at: dt.datetime
    price_fen: int
    note: str


def propose_many(session: Session, proposals: Sequence[Proposal], *, user: User | None) -> int:
    """A match run's proposals, written in bulk (a few statements whatever their number)
    with their timeline lines; the orders' statuses follow when the run has proposed all
    of their steps. Returns how many were written."""
    session.flush()  # what the batch superseded or released goes first
    ids = bookings.insert_proposals(
        session,
        [
            bookings.ProposalRow(
                machine_id=p.machine.id,
                order_id=p.order_id,
                operation_id=p.operation_id,
                org_id=p.buyer_org_id,
                start_at=p.start_at,
                end_at=p.end_at,
                price_fen=p.price_fen,
                currency=p.machine.currency,
                reason=p.note,
                created_by_user_id=user.id if user else None,
            )  # fmt: skip
            for p in proposals
            if p.machine.id is not None
        ],
    )
    timeline.record_events(
        session,
        [
            {"order_id": p.order_id, "booking_id": i, "state": "booking_proposed", "note": p.note}
            for p, i in zip(proposals, ids, strict=True)
        ],
    )
    return len(ids)


def supersede_proposals(session: Session, proposals: Sequence[Booking], *, reason: str) -> None:
    """Supersede a match run's old proposals in bulk. A proposal holds no money (the
    price is authorized at acceptance), so none is planned; one that somehow has a
    payment goes through :func:`apply` like any other move."""
    ids = [b.id for b in proposals if b.id is not None]
    with_money = set(
        session.exec(select(Payment.booking_id).where(col(Payment.booking_id).in_(ids))).all()
        if ids
        else ()
    )
    events = []
    for booking in proposals:
        if booking.id in with_money:
            apply(session, booking=booking, action="supersede", reason=reason, sync_order=False)
            continue
        bookings.transition(session, booking=booking, action="supersede", reason=reason)
        if booking.order_id is not None:
            events.append({"order_id": booking.order_id, "booking_id": booking.id,
                           "state": f"booking_{booking.state}", "note": reason})  # fmt: skip
    session.flush()
    timeline.record_events(session, events)


def _step_bookings(session: Session, order_id: int) -> dict[int, Booking]:
    """The booking that holds each step of an order (confirmed, running or done)."""
    rows = session.exec(
        select(Booking).where(Booking.order_id == order_id, col(Booking.state).in_(HELD_STATES))
    ).all()
    return {b.operation_id: b for b in rows if b.operation_id is not None}


def _check_start(session: Session, booking: Booking, now: dt.datetime) -> None:
    """The rules a booking must meet to start; each refusal names its rule."""
    allowance = dt.timedelta(minutes=get_settings().early_start_minutes)
    earliest = as_utc(booking.start_at) - allowance
    if now < earliest:
        raise LifecycleRuleBroken(
            f"early start: this booking starts at {as_utc(booking.start_at).isoformat()}"
            f" and may be started from {earliest.isoformat()}",
            field="start_at",
        )
    if booking.order_id is None or booking.operation_id is None:
        return
    steps = list(
        session.exec(
            select(Operation)
            .where(Operation.order_id == booking.order_id)
            .order_by(col(Operation.seq))
        ).all()
    )
    held = _step_bookings(session, booking.order_id)
    missing = [op.seq for op in steps if op.id not in held]
    if missing:
        raise LifecycleRuleBroken(
            "whole order: every step must be confirmed before work starts"
            f" (step {', '.join(map(str, missing))} has no confirmed machine)",
            field="order_id",
        )
    me = next(op for op in steps if op.id == booking.operation_id)
    before = [op for op in steps if op.seq < me.seq]
    if not before:
        return
    prev_op = before[-1]
    prev = held[prev_op.id]  # type: ignore[index]
    if prev.state != BookingState.done or prev.finished_at is None:
        raise LifecycleRuleBroken(
            f"precedence: step {prev_op.seq} is not done yet", field="booking_id"
        )
    arrive = as_utc(prev.finished_at) + dt.timedelta(minutes=_transport_min(session, prev, booking))
    if now < arrive:
        raise LifecycleRuleBroken(
            f"precedence: the goods from step {prev_op.seq} arrive at {arrive.isoformat()}"
            " (transport time)",
            field="booking_id",
        )


def _transport_min(session: Session, a: Booking, b: Booking) -> int:
    """The matcher's transport time between the machines of two bookings (0 on one site)."""
    ma, mb = session.get(Machine, a.machine_id), session.get(Machine, b.machine_id)
    if ma is None or mb is None or ma.id == mb.id:
        return 0
    return transport_minutes_between(ma.lat, ma.lon, mb.lat, mb.lon, Weights())


def transition_booking(
    *,
    session: Session,
    user: User,
    booking_id: int,
    action: str,
    reason: str = "",
    payments: PaymentsClient | None = None,
) -> Booking:
    """A user's move of a booking (accept, decline, start, complete, cancel); the money
    the move makes due is written in the same commit and, given a payments client,
    sent to the provider right after it."""
    begin_write(session)
    if action not in USER_ACTIONS:
        raise InvalidInput(f"unknown action {action!r}", field="action")
    move = TRANSITIONS[action]
    booking = bookings.get_booking_or_raise(
        session=session, user=user, booking_id=booking_id, for_update=True
    )
    machine = session.get(Machine, booking.machine_id)
    assert machine is not None
    is_owner = machine.owner_org_id == user.org_id and user.has_role(Role.owner)
    is_customer = booking.org_id == user.org_id
    allowed = is_admin(user) or (move.by_owner and is_owner) or (move.by_customer and is_customer)
    if not allowed:
        raise PermissionDenied(f"you may not {action} this booking")
    if action == "complete" and booking.state == BookingState.confirmed:
        raise LifecycleRuleBroken(
            "complete after start: this booking has not started", field="state"
        )
    if booking.state not in move.sources:
        raise InvalidTransition(
            f"a {booking.state} booking cannot be {move.target.value}", field="state"
        )
    if action == "decline" and not reason.strip():
        raise InvalidInput("a reason is required to decline", field="reason")
    now = utcnow()
    if action == "start":
        _check_start(session, booking, now)
    apply(
        session,
        booking=booking,
        action=action,
        user=user,
        reason=reason,
        by_customer=is_customer and not is_owner,
        now=now,
    )
    session.commit()
    session.refresh(booking)
    if payments is not None:
        drive_payments(session=session, payments=payments, booking_id=booking_id)
        session.refresh(booking)
    return booking


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
    if bookings.collision(session, machine.id, start, end) is not None:
        raise CapacityUnavailable("the slot collides with another booking", field="start_at")
    try:
        booking = bookings.new_booking(
            session,
            machine=machine,
            kind=BookingKind.lease,
            state=BookingState.confirmed,
            start_at=start,
            end_at=end,
            org_id=user.org_id,
            price_fen=price_fen(minutes=minutes, hourly_rate_fen=machine.hourly_rate_fen),
            created_by_user_id=user.id,
        )
    except IntegrityError as exc:
        session.rollback()
        raise CapacityUnavailable(
            "the slot collides with another booking", field="start_at"
        ) from exc
    planning.plan_booking_payments(session, booking=booking, action="create")  # the deposit
    bookings.commit_booking(session)
    session.refresh(booking)
    if payments is not None:
        assert booking.id is not None
        drive_payments(session=session, payments=payments, booking_id=booking.id)
        session.refresh(booking)
    return booking
