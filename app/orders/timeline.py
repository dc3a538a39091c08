"""An order's timeline: the states it and its bookings entered, and the notes on them.

:func:`record_event` (and :func:`record_events`, its bulk form) is the only writer of
:class:`models.OrderEvent` rows; every
command that changes an order or one of its bookings writes its line through it, in
the command's own transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlmodel import Session

from app.bulk import insert_rows
from models import OrderEvent, utcnow


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


def record_events(session: Session, events: Sequence[dict[str, Any]]) -> None:
    """Many timeline lines at once (a match run's batch): dicts with the fields of
    :func:`record_event`, written in bulk."""
    now = utcnow()
    insert_rows(
        session,
        OrderEvent,
        [
            {
                "order_id": e["order_id"],
                "booking_id": e.get("booking_id"),
                "state": e["state"],
                "note": e.get("note", "")[:500],
                "user_id": e.get("user_id"),
                "at": now,
            }  # fmt: skip
            for e in events
        ],
    )
