"""Order commands that span aggregates: cancelling an order cancels each of its
bookings exactly as cancelling that booking would (the same state moves, timeline
lines and money: holds voided, or the late-cancellation fee captured)."""

from __future__ import annotations

from sqlmodel import Session, col, select

from app.bookings import flows as booking_flows
from app.db import begin_write
from app.errors import InvalidTransition
from app.money.driver import drive_payments
from app.money.provider import PaymentsClient
from app.orders import service as orders
from models import ACTIVE_STATES, Booking, BookingState, Order, OrderStatus, User, utcnow


def cancel_order(
    *,
    session: Session,
    user: User,
    order_id: int,
    reason: str = "",
    payments: PaymentsClient | None = None,
) -> Order:
    """Cancel the order and release every machine it still holds, one booking at a
    time through the booking's own cancel; then the order itself."""
    begin_write(session)
    order = orders.get_own_order_or_raise(session=session, user=user, order_id=order_id)
    if order.status not in orders.CANCELLABLE:
        raise InvalidTransition(
            f"an order in state {order.status} cannot be cancelled", field="status"
        )
    started = session.exec(
        select(Booking.id).where(
            Booking.order_id == order_id,
            col(Booking.state).in_((BookingState.in_progress.value, BookingState.done.value)),
        )
    ).first()
    if started is not None:
        raise InvalidTransition("work on this order has started", field="status")
    held = list(
        session.exec(
            select(Booking)
            .where(Booking.order_id == order_id, col(Booking.state).in_(ACTIVE_STATES))
            .order_by(col(Booking.id))
            .with_for_update()
        ).all()
    )
    now = utcnow()
    for booking in held:
        booking_flows.apply(
            session,
            booking=booking,
            action="cancel",
            user=user,
            reason=reason or "order cancelled",
            by_customer=True,
            now=now,
            sync_order=False,
        )
    orders.set_status(session, order, OrderStatus.cancelled, user_id=user.id, note=reason)
    session.commit()
    if payments is not None:
        for booking in held:
            assert booking.id is not None
            drive_payments(session=session, payments=payments, booking_id=booking.id)
    session.refresh(order)
    return order
