"""Proposals nobody answered expire; their steps go back to the pool at once, and the
(step, machine) pair is never proposed again (see :mod:`app.matching_runs.adapter`)."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session, col, select

from app.bookings import flows as booking_flows
from app.config import Settings, get_settings
from app.db import begin_write
from models import Booking, BookingState, utcnow


def expire_proposals(
    *, session: Session, now: dt.datetime | None = None, settings: Settings | None = None
) -> int:
    """Expire proposals unanswered for ``proposal_ttl_minutes``; each order that loses a
    placement returns to the pool (status open) in the same commit. Returns how many."""
    begin_write(session)
    settings = settings or get_settings()
    now = now or utcnow()
    cutoff = now - dt.timedelta(minutes=settings.proposal_ttl_minutes)
    stale = session.exec(
        select(Booking)
        .where(Booking.state == BookingState.proposed.value, col(Booking.created_at) < cutoff)
        .order_by(col(Booking.id))
        .with_for_update()
    ).all()
    reason = f"no answer within {settings.proposal_ttl_minutes} minutes"
    for booking in stale:
        booking_flows.apply(session, booking=booking, action="expire", reason=reason, now=now)
    session.commit()
    return len(stale)
