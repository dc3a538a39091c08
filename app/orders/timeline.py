"""An order's timeline: the states it and its bookings entered, and the notes on them.

:func:`record_event` is the only writer of :class:`models.OrderEvent` rows; every
command that changes an order or one of its bookings writes its line through it, in
the command's own transaction.
"""

from __future__ import annotations

from sqlmodel import Session

from models import OrderEvent


def record_event(
    session: Session,
    *,
    order_id: int,
    state: str,
    booking_id: int | None = None,
    note: str = "",
    user_id: int | None = None,
) -> OrderEvent:
    """Add one line to the order's timeline (flush is left to the command)."""
    event = OrderEvent(
        order_id=order_id, booking_id=booking_id, state=state, note=note[:500], user_id=user_id
    )
    session.add(event)
    return event
