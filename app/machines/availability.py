"""Offered time: single availability windows and recurring rules.

A rule is a weekday set, a daily local time range and a date range; it expands
into windows (in UTC) over its dates. A range whose end is at or before its start
runs overnight: Mon–Fri 20:00–08:00 gives five windows, each ending the next
morning.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.accounts.service import is_admin
from app.db import begin_write
from app.errors import (
    Conflict,
    InvalidInput,
    MarketplaceError,
    NotFound,
    PermissionDenied,
    RowsRejected,
    WindowOverlap,
)
from app.machines.free_time import free_spans
from app.machines.service import get_machine_or_raise, get_own_machine_or_raise, lock_machine
from models import (
    AvailabilityRule,
    AvailabilityWindow,
    Booking,
    Machine,
    MachineStateSpan,
    Role,
    User,
    utcnow,
)
from models.base import as_utc
from models.booking import holding
from models.machine import RuleCreate, WindowCreate, WindowImportRow

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


def offered_between(
    session: Session, machine_id: int, lo: dt.datetime, hi: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime]]:
    """The machine's offered windows that overlap [lo, hi), by start (they never overlap
    each other, so they are sorted by end too)."""
    return [
        (s, e)
        for s, e in session.exec(
            select(AvailabilityWindow.start_at, AvailabilityWindow.end_at)
            .where(
                AvailabilityWindow.machine_id == machine_id,
                col(AvailabilityWindow.start_at) < hi,
                col(AvailabilityWindow.end_at) > lo,
            )
            .order_by(col(AvailabilityWindow.start_at))
        ).all()
    ]


def count_offered(session: Session, machine_id: int, spans: list[MachineStateSpan]) -> None:
    """Set each telemetry span's seconds inside the machine's offered windows."""
    if not spans:
        return
    windows = offered_between(
        session, machine_id, min(sp.start_at for sp in spans), max(sp.end_at for sp in spans)
    )
    for sp in spans:
        sp.offered_s = sum(
            max(0, int((min(sp.end_at, e) - max(sp.start_at, s)).total_seconds()))
            for s, e in windows
        )
        session.add(sp)


def _recount_spans(session: Session, machine_id: int, start: dt.datetime, end: dt.datetime) -> None:
    """After offered time in [start, end) was withdrawn: recount the spans there (flushes;
    the caller commits)."""
    session.flush()
    spans = session.exec(
        select(MachineStateSpan).where(
            MachineStateSpan.machine_id == machine_id,
            col(MachineStateSpan.start_at) < end,
            col(MachineStateSpan.end_at) > start,
        )
    ).all()
    count_offered(session, machine_id, list(spans))


def _overlapping(
    session: Session, machine_id: int, spans: list[tuple[dt.datetime, dt.datetime]]
) -> tuple[dt.datetime, dt.datetime] | None:
    if not spans:
        return None
    lo, hi = min(s for s, _ in spans), max(e for _, e in spans)
    for ws, we in offered_between(session, machine_id, lo, hi):
        for start, end in spans:
            if ws < end and start < we:
                return ws, we
    return None


def _refuse_overlap(
    session: Session, machine_id: int, spans: list[tuple[dt.datetime, dt.datetime]], field: str
) -> None:
    clash = _overlapping(session, machine_id, spans)
    if clash is not None:
        raise WindowOverlap(
            f"overlaps the offered window {clash[0].isoformat()} – {clash[1].isoformat()}",
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


def import_windows(*, session: Session, user: User, rows: list[WindowImportRow]) -> tuple[int, int]:
    """Offer many single windows, on any of the caller's machines, in one transaction:
    all of them or none. Each row is checked like a single window (its machine, end after
    start, not in the past, at most 31 days) and against the machine's offered windows
    and the file's other rows. A row identical to a window already offered is skipped,
    so an exported file, or a retried import, is accepted again. Every bad row is
    reported (``RowsRejected``). Returns (windows created, rows already offered)."""
    if not is_admin(user) and not user.has_role(Role.owner):
        raise PermissionDenied("only owners offer machine time")
    begin_write(session)
    now = utcnow()
    problems: list[tuple[int, str, str, int]] = []
    mine: set[int] = set()
    for machine_id in sorted({row.machine_id for row in rows}):  # one lock order: no deadlock
        try:
            get_own_machine_or_raise(session=session, user=user, machine_id=machine_id)
        except NotFound:
            continue
        lock_machine(session, machine_id)
        mine.add(machine_id)
    spans: dict[int, list[tuple[int, dt.datetime, dt.datetime]]] = {}
    for i, row in enumerate(rows):
        if row.machine_id not in mine:
            problems.append((i, "machine_id", f"no machine {row.machine_id} of yours", 404))
            continue
        try:
            start, end = as_utc(row.start_at), as_utc(row.end_at)
        except OverflowError:
            problems.append((i, "start_at", "the time is out of range", 422))
            continue
        spans.setdefault(row.machine_id, []).append((i, start, end))
    created: list[tuple[int, dt.datetime, dt.datetime]] = []
    already = 0
    for machine_id, wanted in spans.items():
        lo, hi = min(s for _, s, _ in wanted), max(e for _, _, e in wanted)
        existing = offered_between(session, machine_id, lo, hi)
        known = set(existing)
        starts = [
            s for s, _ in existing
        ]  # offered windows never overlap: sorted by start, by end too
        accepted: list[tuple[int, dt.datetime, dt.datetime]] = []
        for i, start, end in sorted(wanted, key=lambda w: (w[1], w[0])):
            if (start, end) in known:
                already += 1
                continue
            try:
                _check_window(start, end, now)
            except MarketplaceError as exc:
                problems.append((i, exc.field or "start_at", exc.message, exc.status_code))
                continue
            k = (
                bisect.bisect_left(starts, end) - 1
            )  # the last offered window starting before the end
            if k >= 0 and existing[k][1] > start:
                problems.append((i, "start_at", "overlaps the offered window "
                                 f"{existing[k][0].isoformat()} – {existing[k][1].isoformat()}", 409))  # fmt: skip
                continue
            if (
                accepted and accepted[-1][2] > start
            ):  # rows come by start: only the last can overlap
                if accepted[-1][1:] == (start, end):
                    already += 1  # the same window twice in one file
                else:
                    problems.append(
                        (i, "start_at", f"overlaps row {accepted[-1][0]} of this import", 409)
                    )
                continue
            accepted.append((i, start, end))
        created += [(machine_id, s, e) for _, s, e in accepted]
    if problems:  # nothing was added: the caller's session ends the transaction
        raise RowsRejected(sorted(problems), rows="windows")
    session.add_all(
        AvailabilityWindow(machine_id=m, rule_id=None, start_at=s, end_at=e) for m, s, e in created
    )
    _commit(session, "windows")
    return len(created), already


def list_own_windows(
    *, session: Session, user: User, after: dt.datetime, limit: int = 100_000
) -> list[tuple[Machine, AvailabilityWindow]]:
    """The offered windows of the caller's organization's machines that end after
    ``after``, by machine and start (the windows export)."""
    if not is_admin(user) and not user.has_role(Role.owner):
        raise PermissionDenied("only owners offer machine time")
    return [
        (m, w)
        for m, w in session.exec(
            select(Machine, AvailabilityWindow)
            .join(AvailabilityWindow, col(AvailabilityWindow.machine_id) == col(Machine.id))
            .where(
                Machine.owner_org_id == user.org_id, col(AvailabilityWindow.end_at) > as_utc(after)
            )
            .order_by(col(Machine.id), col(AvailabilityWindow.start_at))
            .limit(limit)
        ).all()
    ]


def delete_window(*, session: Session, user: User, machine_id: int, window_id: int) -> None:
    begin_write(session)
    get_own_machine_or_raise(session=session, user=user, machine_id=machine_id)
    lock_machine(session, machine_id)
    window = session.get(AvailabilityWindow, window_id)
    if window is None or window.machine_id != machine_id:
        raise NotFound("window not found", field="window_id")
    _refuse_if_booked(session, machine_id, window.start_at, window.end_at)
    session.delete(window)
    _recount_spans(session, machine_id, window.start_at, window.end_at)
    session.commit()


def _refuse_if_booked(
    session: Session, machine_id: int, start: dt.datetime, end: dt.datetime
) -> None:
    booked = session.exec(
        select(Booking.id).where(Booking.machine_id == machine_id, holding(start, end))
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
    *,
    session: Session,
    user: User,
    machine_id: int,
    data: RuleCreate,
    timezone: str,
    horizon_days: int,
    commit: bool = True,
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
        raise InvalidInput(f"a rule covers at most {horizon_days} days ahead", field="valid_until")
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
    if windows:
        spans = (min(w.start_at for w in windows), max(w.end_at for w in windows))
        _recount_spans(session, machine_id, *spans)
    session.commit()


def offered_spans(
    session: Session, machine_id: int, start: dt.datetime, end: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Offered time of a machine around [start, end), touching windows merged."""
    return offered_spans_many(session, [machine_id], start, end).get(machine_id, [])


def offered_spans_many(
    session: Session, machine_ids: Sequence[int], start: dt.datetime, end: dt.datetime
) -> dict[int, list[tuple[dt.datetime, dt.datetime]]]:
    """Per machine, its offered time around [start, end), touching windows merged: one
    query for all of them."""
    out: dict[int, list[tuple[dt.datetime, dt.datetime]]] = defaultdict(list)
    if not machine_ids:
        return out
    windows = session.exec(
        select(
            AvailabilityWindow.machine_id, AvailabilityWindow.start_at, AvailabilityWindow.end_at
        )
        .where(
            col(AvailabilityWindow.machine_id).in_(list(machine_ids)),
            col(AvailabilityWindow.start_at) <= end,
            col(AvailabilityWindow.end_at) >= start,
        )
        .order_by(col(AvailabilityWindow.machine_id), col(AvailabilityWindow.start_at))
    ).all()
    for machine_id, s, e in windows:
        merged = out[machine_id]
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return out


def free_intervals(
    *, session: Session, user: User, machine_id: int, start: dt.datetime, end: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime]]:
    """The machine's offered time in [start, end) that no active booking holds."""
    get_machine_or_raise(session=session, user=user, machine_id=machine_id)
    return free_spans(session, [machine_id], start, end)[machine_id]
