"""Offered time: single availability windows and recurring rules.

A rule is a weekday set, a daily local time range and a date range; it expands
into windows (in UTC) over its dates. A range whose end is at or before its start
runs overnight: Mon–Fri 20:00–08:00 gives five windows, each ending the next
morning.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.db import begin_write
from app.errors import Conflict, InvalidInput, NotFound, WindowOverlap
from app.machines import get_machine_or_raise, get_own_machine_or_raise, lock_machine
from models import ACTIVE_STATES, AvailabilityRule, AvailabilityWindow, Booking, User, utcnow
from models.base import as_utc
from models.machine import RuleCreate, WindowCreate

MAX_WINDOW = dt.timedelta(days=31)
PAST_GRACE = dt.timedelta(minutes=5)


def list_windows(
    *,
    session: Session,
    user: User,
    machine_id: int,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> list[AvailabilityWindow]:
    get_machine_or_raise(session=session, user=user, machine_id=machine_id)
    query = select(AvailabilityWindow).where(AvailabilityWindow.machine_id == machine_id)
    if end is not None:
        query = query.where(col(AvailabilityWindow.start_at) < as_utc(end))
    if start is not None:
        query = query.where(col(AvailabilityWindow.end_at) > as_utc(start))
    return list(session.exec(query.order_by(col(AvailabilityWindow.start_at))).all())


def list_rules(*, session: Session, user: User, machine_id: int) -> list[AvailabilityRule]:
    get_machine_or_raise(session=session, user=user, machine_id=machine_id)
    return list(
        session.exec(
            select(AvailabilityRule)
            .where(AvailabilityRule.machine_id == machine_id)
            .order_by(col(AvailabilityRule.id))
        ).all()
    )


def _check_window(start: dt.datetime, end: dt.datetime, now: dt.datetime) -> None:
    if end <= start:
        raise InvalidInput("end_at must be after start_at", field="end_at")
    if start < now - PAST_GRACE:
        raise InvalidInput("the window starts in the past", field="start_at")
    if end - start > MAX_WINDOW:
        raise InvalidInput("a single window is at most 31 days", field="end_at")


def _overlapping(
    session: Session, machine_id: int, spans: list[tuple[dt.datetime, dt.datetime]]
) -> AvailabilityWindow | None:
    if not spans:
        return None
    lo, hi = min(s for s, _ in spans), max(e for _, e in spans)
    existing = session.exec(
        select(AvailabilityWindow).where(
            AvailabilityWindow.machine_id == machine_id,
            col(AvailabilityWindow.start_at) < hi,
            col(AvailabilityWindow.end_at) > lo,
        )
    ).all()
    for window in existing:
        for start, end in spans:
            if window.start_at < end and start < window.end_at:
                return window
    return None


def _refuse_overlap(
    session: Session, machine_id: int, spans: list[tuple[dt.datetime, dt.datetime]], field: str
) -> None:
    clash = _overlapping(session, machine_id, spans)
    if clash is not None:
        raise WindowOverlap(
            f"overlaps the offered window {clash.start_at.isoformat()} – {clash.end_at.isoformat()}",
            field=field,
        )


def _insert_windows(
    session: Session,
    machine_id: int,
    spans: list[tuple[dt.datetime, dt.datetime]],
    rule_id: int | None,
    field: str,
) -> list[AvailabilityWindow]:
    _refuse_overlap(session, machine_id, spans, field)
    windows = [
        AvailabilityWindow(machine_id=machine_id, rule_id=rule_id, start_at=s, end_at=e)
        for s, e in spans
    ]
    session.add_all(windows)
    return windows


def _commit(session: Session, field: str) -> None:
    try:
        session.commit()
    except IntegrityError as exc:  # PostgreSQL's exclusion constraint caught a race
        session.rollback()
        raise WindowOverlap("overlaps an offered window", field=field) from exc


def create_window(
    *, session: Session, user: User, machine_id: int, data: WindowCreate
) -> AvailabilityWindow:
    begin_write(session)
    get_own_machine_or_raise(session=session, user=user, machine_id=machine_id)
    lock_machine(session, machine_id)
    start, end = as_utc(data.start_at), as_utc(data.end_at)
    _check_window(start, end, utcnow())
    (window,) = _insert_windows(session, machine_id, [(start, end)], None, "start_at")
    _commit(session, "start_at")
    session.refresh(window)
    return window


def delete_window(*, session: Session, user: User, machine_id: int, window_id: int) -> None:
    begin_write(session)
    get_own_machine_or_raise(session=session, user=user, machine_id=machine_id)
    lock_machine(session, machine_id)
    window = session.get(AvailabilityWindow, window_id)
    if window is None or window.machine_id != machine_id:
        raise NotFound("window not found", field="window_id")
    _refuse_if_booked(session, machine_id, window.start_at, window.end_at)
    session.delete(window)
    session.commit()


def _refuse_if_booked(
    session: Session, machine_id: int, start: dt.datetime, end: dt.datetime
) -> None:
    booked = session.exec(
        select(Booking.id).where(
            Booking.machine_id == machine_id,
            col(Booking.state).in_(ACTIVE_STATES),
            col(Booking.start_at) < end,
            col(Booking.end_at) > start,
        )
    ).first()
    if booked is not None:
        raise Conflict(f"booking {booked} lies in this offered time", field="window_id")


def expand_rule(
    *,
    weekdays: list[int],
    start_time: str,
    end_time: str,
    valid_from: dt.date,
    valid_until: dt.date,
    tz: ZoneInfo,
    not_before: dt.datetime,
) -> list[tuple[dt.datetime, dt.datetime]]:
    """The UTC windows a rule offers. A window that has already begun starts now;
    one that has already ended is left out."""
    t0 = dt.time.fromisoformat(start_time)
    t1 = dt.time.fromisoformat(end_time)
    spans: list[tuple[dt.datetime, dt.datetime]] = []
    day = valid_from
    while day <= valid_until:
        if day.weekday() in weekdays:
            start = dt.datetime.combine(day, t0, tz)
            end_day = day if t1 > t0 else day + dt.timedelta(days=1)
            end = dt.datetime.combine(end_day, t1, tz)
            start_utc, end_utc = as_utc(start), as_utc(end)
            if end_utc > not_before:
                spans.append((max(start_utc, not_before), end_utc))
        day += dt.timedelta(days=1)
    return spans


def create_rule(
    *, session: Session, user: User, machine_id: int, data: RuleCreate, timezone: str,
    horizon_days: int, commit: bool = True,
) -> tuple[AvailabilityRule, int]:
    """Store a recurring rule and expand it into windows; all or nothing."""
    begin_write(session)
    get_own_machine_or_raise(session=session, user=user, machine_id=machine_id)
    lock_machine(session, machine_id)
    now = utcnow()
    tz = ZoneInfo(timezone)
    today = now.astimezone(tz).date()
    if data.valid_until < data.valid_from:
        raise InvalidInput("valid_until is before valid_from", field="valid_until")
    if data.valid_until < today:
        raise InvalidInput("the rule ends in the past", field="valid_until")
    if (data.valid_until - max(data.valid_from, today)).days > horizon_days:
        raise InvalidInput(
            f"a rule covers at most {horizon_days} days ahead", field="valid_until"
        )
    spans = expand_rule(
        weekdays=data.weekdays,
        start_time=data.start_time,
        end_time=data.end_time,
        valid_from=max(data.valid_from, today - dt.timedelta(days=1)),  # the past offers nothing
        valid_until=data.valid_until,
        tz=tz,
        not_before=now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1),
    )
    if not spans:
        raise InvalidInput("the rule offers no future time on its weekdays", field="weekdays")
    _refuse_overlap(session, machine_id, spans, "start_time")
    rule = AvailabilityRule(machine_id=machine_id, timezone=timezone, **data.model_dump())
    session.add(rule)
    session.flush()
    _insert_windows(session, machine_id, spans, rule.id, "start_time")
    if commit:
        _commit(session, "start_time")
        session.refresh(rule)
    else:
        session.flush()
    return rule, len(spans)


def delete_rule(*, session: Session, user: User, machine_id: int, rule_id: int) -> None:
    """Remove a rule and the windows it offered (refused while any is booked)."""
    begin_write(session)
    get_own_machine_or_raise(session=session, user=user, machine_id=machine_id)
    lock_machine(session, machine_id)
    rule = session.get(AvailabilityRule, rule_id)
    if rule is None or rule.machine_id != machine_id:
        raise NotFound("rule not found", field="rule_id")
    windows = session.exec(
        select(AvailabilityWindow).where(AvailabilityWindow.rule_id == rule_id)
    ).all()
    for window in windows:
        _refuse_if_booked(session, machine_id, window.start_at, window.end_at)
    session.execute(delete(AvailabilityWindow).where(col(AvailabilityWindow.rule_id) == rule_id))
    session.delete(rule)
    session.commit()


def offered_spans(
    session: Session, machine_id: int, start: dt.datetime, end: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Offered time of a machine around [start, end), touching windows merged."""
    windows = session.exec(
        select(AvailabilityWindow)
        .where(
            AvailabilityWindow.machine_id == machine_id,
            col(AvailabilityWindow.start_at) <= end,
            col(AvailabilityWindow.end_at) >= start,
        )
        .order_by(col(AvailabilityWindow.start_at))
    ).all()
    merged: list[tuple[dt.datetime, dt.datetime]] = []
    for w in windows:
        if merged and w.start_at <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], w.end_at))
        else:
            merged.append((w.start_at, w.end_at))
    return merged


def free_intervals(
    *, session: Session, user: User, machine_id: int, start: dt.datetime, end: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime]]:
    """The machine's offered time in [start, end) that no active booking holds."""
    get_machine_or_raise(session=session, user=user, machine_id=machine_id)
    start, end = as_utc(start), as_utc(end)
    busy = session.exec(
        select(Booking.start_at, Booking.end_at)
        .where(
            Booking.machine_id == machine_id,
            col(Booking.state).in_(ACTIVE_STATES),
            col(Booking.start_at) < end,
            col(Booking.end_at) > start,
        )
        .order_by(col(Booking.start_at))
    ).all()
    free: list[tuple[dt.datetime, dt.datetime]] = []
    for s, e in offered_spans(session, machine_id, start, end):
        cursor = max(s, start)
        stop = min(e, end)
        for b_start, b_end in busy:
            if b_end <= cursor or b_start >= stop:
                continue
            if b_start > cursor:
                free.append((cursor, b_start))
            cursor = max(cursor, b_end)
        if cursor < stop:
            free.append((cursor, stop))
    return free
