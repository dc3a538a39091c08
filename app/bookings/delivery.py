"""Delivery of a service booking and disputes over it: the buyer accepts (capture, then
the owner's payout) or disputes within the claim window (the money stays held until an
admin resolves it); undisputed deliveries are captured when the window closes. And what
the buyer and the owner read about a booking's money.
"""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session, col, func, select

from app.bookings import service as bookings
from app.config import get_settings
from app.db import begin_write
from app.errors import InvalidInput, InvalidTransition, PermissionDenied
from app.money import planning, queries
from app.money.driver import drive_payments
from app.money.provider import PaymentsClient
from app.orders import service as orders
from app.orders import timeline
from models import Booking, BookingKind, BookingState, Role, User, utcnow
from models.base import as_utc
from models.payment import BookingMoney, Payment


def _service_hold(session: Session, booking: Booking) -> tuple[list[Payment], Payment]:
    assert booking.id is not None
    if booking.kind != BookingKind.service.value:
        raise InvalidInput("only a service booking has a delivery to accept", field="booking_id")
    if booking.state != BookingState.done.value:
        raise InvalidTransition(f"a {booking.state} booking has not been delivered", field="state")
    payments = planning.payments_of(session, booking.id)
    hold = planning.live(payments, planning.K.authorize)
    if hold is None:
        raise InvalidTransition("this booking has no authorized payment", field="state")
    if planning.settlement(payments, hold) is not None:
        raise InvalidTransition("this booking's payment is already settled", field="state")
    return payments, hold


def _order_note(
    session: Session, booking: Booking, user: User | None, state: str, note: str = ""
) -> None:
    if booking.order_id is not None:
        timeline.record_event(
            session,
            order_id=booking.order_id,
            booking_id=booking.id,
            state=state,
            note=note,
            user_id=user.id if user else None,
        )


def _drive_after(session: Session, payments: PaymentsClient | None, booking_id: int) -> None:
    if payments is not None:
        drive_payments(session=session, payments=payments, booking_id=booking_id)


def accept_delivery(
    *, session: Session, user: User, booking_id: int, payments: PaymentsClient | None = None
) -> BookingMoney:
    """The buyer accepts a delivered service booking: capture, then pay the owner."""
    begin_write(session)
    booking = bookings.get_booking_or_raise(
        session=session, user=user, booking_id=booking_id, for_update=True
    )
    if booking.org_id != user.org_id and not user.has_role(Role.admin):
        raise PermissionDenied("only the buyer accepts a delivery")
    _, hold = _service_hold(session, booking)
    planning.new_payment(session, booking, planning.K.capture, hold.amount_fen, purpose="price", parent=hold,
                 payee_org_id=hold.payee_org_id)  # fmt: skip
    _order_note(session, booking, user, "delivery_accepted")
    session.commit()
    _drive_after(session, payments, booking_id)
    return booking_money(session=session, user=user, booking_id=booking_id)


def open_dispute(
    *, session: Session, user: User, booking_id: int, note: str, now: dt.datetime | None = None
) -> BookingMoney:
    """The buyer disputes a delivery within the claim window: the money stays held."""
    settings = get_settings()
    now = now or utcnow()
    begin_write(session)
    booking = bookings.get_booking_or_raise(
        session=session, user=user, booking_id=booking_id, for_update=True
    )
    if booking.org_id != user.org_id:
        raise PermissionDenied("only the buyer disputes a delivery")
    _, hold = _service_hold(session, booking)
    if now > as_utc(booking.updated_at) + dt.timedelta(days=settings.claim_window_days):
        raise InvalidTransition("the claim window has closed", field="state")
    if hold.disputed_at is not None:
        raise InvalidTransition("this delivery is already disputed", field="state")
    hold.disputed_at = now
    hold.dispute_note = note
    hold.updated_at = now
    session.add(hold)
    _order_note(session, booking, user, "delivery_disputed", note)
    session.commit()
    return booking_money(session=session, user=user, booking_id=booking_id)


def resolve_dispute(
    *,
    session: Session,
    user: User,
    booking_id: int,
    refund_fen: int,
    note: str = "",
    payments: PaymentsClient | None = None,
) -> BookingMoney:
    """An admin settles a dispute: refund all (void the hold), part (capture the rest),
    or nothing (capture all)."""
    if not user.has_role(Role.admin):
        raise PermissionDenied("only the platform resolves disputes")
    begin_write(session)
    booking = bookings.get_booking_or_raise(
        session=session, user=user, booking_id=booking_id, for_update=True
    )
    _, hold = _service_hold(session, booking)
    if hold.disputed_at is None:
        raise InvalidTransition("this delivery is not disputed", field="state")
    if refund_fen > hold.amount_fen:
        raise InvalidInput("refund_fen is more than was paid", field="refund_fen")
    if refund_fen == hold.amount_fen:
        planning.new_payment(
            session, booking, planning.K.void, hold.amount_fen, purpose="dispute", parent=hold
        )
    else:
        planning.new_payment(session, booking, planning.K.capture, hold.amount_fen - refund_fen, purpose="dispute",
                     parent=hold, payee_org_id=hold.payee_org_id)  # fmt: skip
    _order_note(session, booking, user, "dispute_resolved", note or f"refund {refund_fen} fen")
    session.commit()
    _drive_after(session, payments, booking_id)
    return booking_money(session=session, user=user, booking_id=booking_id)


def release_due_captures(
    *, session: Session, now: dt.datetime | None = None, payments: PaymentsClient | None = None
) -> int:
    """Capture every undisputed delivery whose claim window has passed. Returns how many."""
    settings = get_settings()
    now = now or utcnow()
    cutoff = now - dt.timedelta(days=settings.claim_window_days)
    begin_write(session)
    rows = session.exec(
        select(Booking, Payment)
        .join(Payment, col(Payment.booking_id) == Booking.id)
        .where(
            Booking.kind == BookingKind.service.value,
            Booking.state == BookingState.done.value,
            # the claim window counts from the finish (a later edit must not extend it)
            func.coalesce(col(Booking.finished_at), col(Booking.updated_at)) <= cutoff,
            Payment.kind == planning.K.authorize.value,
            col(Payment.status).in_((planning.PENDING, planning.SUCCEEDED)),
            col(Payment.disputed_at).is_(None),
        )
    ).all()
    released: list[int] = []
    for booking, hold in rows:
        assert booking.id is not None
        if planning.settlement(planning.payments_of(session, booking.id), hold) is not None:
            continue
        planning.new_payment(session, booking, planning.K.capture, hold.amount_fen, purpose="price", parent=hold,
                     payee_org_id=hold.payee_org_id)  # fmt: skip
        _order_note(session, booking, None, "delivery_accepted", "claim window passed")
        released.append(booking.id)
    session.commit()
    if payments is not None:
        for booking_id in released:
            drive_payments(session=session, payments=payments, booking_id=booking_id)
    return len(released)


def booking_money(*, session: Session, user: User, booking_id: int) -> BookingMoney:
    """The money of one booking the caller may see."""
    booking = bookings.get_booking_or_raise(session=session, user=user, booking_id=booking_id)
    return queries.booking_money(session, booking)


def order_money(*, session: Session, user: User, order_id: int) -> list[BookingMoney]:
    """The money of each of an order's bookings the caller may see."""
    orders.get_order_or_raise(session=session, user=user, order_id=order_id)
    rows, _ = bookings.list_bookings(session=session, user=user, order_id=order_id, limit=500)
    return [queries.booking_money(session, b) for b in rows]
