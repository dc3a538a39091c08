"""The dashboard's history: closed days rolled up into ``machine_day`` rows, and the raw
rows pruned once they are old and rolled up.

``roll_up`` (the periodic task ``history.rollup``) recomputes, per machine, every closed
day from the last ``settle_days`` (late telemetry, a booking finished late, a withdrawn
window change them) through yesterday, plus any day not rolled yet (on its first run,
every day back to the oldest row). Each day is one range scan per source, by
``start_at``. ``prune`` (``history.prune``) deletes telemetry spans and offered windows
that ended before their retention and before the first day not rolled up; it never
deletes bookings, orders or money rows."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, delete, func, insert
from sqlmodel import Session, col, select

from app.dashboard.sql import day_of, hours, midnight
from app.db import begin_write
from models import (
    AvailabilityWindow,
    Booking,
    BookingState,
    HistoryRollup,
    MachineDay,
    MachineHistory,
    MachineState,
    MachineStateSpan,
    Order,
)
from models.booking import HELD_STATES

PRUNE_BATCH = 10_000
FIGURES = ("offered_s", "held_s", "held_fen", "proposed_s", "monitored_s", "running_s",
           "done_bookings", "on_time_bookings")  # fmt: skip  # rows per delete statement: short transactions


def rolled_through(session: Session, tz: str) -> dt.date | None:
    """The last day the rollup covers in ``tz`` (None: read every day from the raw rows)."""
    state = session.get(HistoryRollup, 1)
    return state.through_day if state is not None and state.tz == tz else None


@dataclass
class RollupReport:
    first: dt.date | None = None
    last: dt.date | None = None
    rows: int = 0


def _oldest(session: Session) -> dt.datetime | None:
    found = [
        session.exec(select(func.min(column))).one()
        for column in (
            col(AvailabilityWindow.start_at),
            col(Booking.start_at),
            col(MachineStateSpan.start_at),
        )
    ]
    return min((f for f in found if f is not None), default=None)


def _day_rows(session: Session, lo: dt.datetime, hi: dt.datetime) -> dict[int, dict[str, int]]:
    """Each machine's figures from the rows that start in [lo, hi)."""
    rows: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    W, B, S = AvailabilityWindow, Booking, MachineStateSpan
    for machine_id, h in session.exec(
        select(W.machine_id, func.sum(hours(session, col(W.start_at), col(W.end_at))))
        .where(col(W.start_at) >= lo, col(W.start_at) < hi)
        .group_by(col(W.machine_id))
    ).all():
        rows[machine_id]["offered_s"] = round(float(h or 0) * 3600)
    held = col(B.state).in_(HELD_STATES)
    b_hours = hours(session, col(B.start_at), col(B.end_at))
    done = and_(col(B.state) == BookingState.done.value, col(Order.id).is_not(None))
    for machine_id, held_h, held_fen, proposed_h, done_n, on_time_n in session.exec(
        # sqlmodel's select() stubs stop at four columns; at run time it takes any number
        select(  # type: ignore[call-overload]
            B.machine_id,
            func.sum(case((held, b_hours), else_=0.0)),
            func.sum(case((held, col(B.price_fen)), else_=0)),
            func.sum(case((col(B.state) == BookingState.proposed.value, b_hours), else_=0.0)),
            func.sum(case((done, 1), else_=0)),
            func.sum(case((and_(done, col(B.end_at) <= col(Order.due_at)), 1), else_=0)),
        )
        .outerjoin(Order, col(Order.id) == B.order_id)
        .where(col(B.start_at) >= lo, col(B.start_at) < hi)
        .group_by(col(B.machine_id))
    ).all():
        row = rows[machine_id]
        row["held_s"] = round(float(held_h or 0) * 3600)
        row["held_fen"] = int(held_fen or 0)
        row["proposed_s"] = round(float(proposed_h or 0) * 3600)
        row["done_bookings"], row["on_time_bookings"] = int(done_n or 0), int(on_time_n or 0)
    running = col(S.state) == MachineState.running.value
    for machine_id, monitored, run in session.exec(
        select(
            S.machine_id,
            func.sum(S.offered_s),
            func.sum(case((running, col(S.offered_s)), else_=0)),
        )
        .where(col(S.start_at) >= lo, col(S.start_at) < hi, col(S.offered_s) > 0)
        .group_by(col(S.machine_id))
    ).all():
        rows[machine_id]["monitored_s"] = int(monitored or 0)
        rows[machine_id]["running_s"] = int(run or 0)
    return {m: {k: r[k] for k in FIGURES} for m, r in rows.items() if any(r.values())}


def roll_up(
    *, session: Session, tz: str, settle_days: int, now: dt.datetime | None = None
) -> RollupReport:
    """Recompute the ``machine_day`` rows of the days that may have changed (see the
    module) and each machine's all-time done bookings; one transaction."""
    begin_write(session)
    now = now or dt.datetime.now(dt.UTC)
    last = day_of(now, tz) - dt.timedelta(days=1)
    state = session.exec(select(HistoryRollup).with_for_update()).first()
    if state is not None and state.tz != tz:  # the days were another zone's: start over
        session.execute(delete(MachineDay))
        session.execute(delete(MachineHistory))
        session.delete(state)
        session.flush()
        state = None
    if state is None:
        oldest = _oldest(session)
        first = day_of(oldest, tz) if oldest is not None else last
    else:
        first = min(state.through_day + dt.timedelta(days=1),
                    last - dt.timedelta(days=settle_days - 1))  # fmt: skip
    report = RollupReport(first=first, last=last)
    delta: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    day = first
    while day <= last:
        for machine_id, done_n, on_time_n in session.exec(
            select(
                MachineDay.machine_id, MachineDay.done_bookings, MachineDay.on_time_bookings
            ).where(MachineDay.day == day, col(MachineDay.done_bookings) > 0)
        ).all():
            delta[machine_id][0] -= done_n
            delta[machine_id][1] -= on_time_n
        session.execute(delete(MachineDay).where(col(MachineDay.day) == day))
        rows = _day_rows(session, midnight(day, tz), midnight(day + dt.timedelta(days=1), tz))
        if rows:
            session.execute(
                insert(MachineDay), [{"day": day, "machine_id": m, **r} for m, r in rows.items()]
            )
        for machine_id, r in rows.items():
            if r.get("done_bookings"):
                delta[machine_id][0] += r["done_bookings"]
                delta[machine_id][1] += r.get("on_time_bookings", 0)
        report.rows += len(rows)
        day += dt.timedelta(days=1)
    _apply_totals(session, {m: d for m, d in delta.items() if d != [0, 0]})
    if state is None:
        state = HistoryRollup(tz=tz, through_day=last, rolled_at=now)
    state.through_day, state.rolled_at = max(last, state.through_day), now
    session.add(state)
    session.commit()
    return report


def _apply_totals(session: Session, delta: dict[int, list[int]]) -> None:
    ids = sorted(delta)
    for i in range(0, len(ids), 5000):
        chunk = ids[i : i + 5000]
        known = {
            m: (done, on_time)
            for m, done, on_time in session.exec(
                select(
                    MachineHistory.machine_id,
                    MachineHistory.done_bookings,
                    MachineHistory.on_time_bookings,
                ).where(col(MachineHistory.machine_id).in_(chunk))
            ).all()
        }
        session.execute(delete(MachineHistory).where(col(MachineHistory.machine_id).in_(chunk)))
        rows = []
        for m in chunk:
            done, on_time = known.get(m, (0, 0))
            rows.append({"machine_id": m, "done_bookings": done + delta[m][0],
                         "on_time_bookings": on_time + delta[m][1]})  # fmt: skip
        session.execute(insert(MachineHistory), rows)


@dataclass
class PruneReport:
    spans: int = 0
    windows: int = 0


def prune(
    *,
    session: Session,
    tz: str,
    span_retention_days: int,
    window_retention_days: int,
    now: dt.datetime | None = None,
) -> PruneReport:
    """Delete the spans and offered windows that ended more than their retention ago and
    lie in rolled-up days (nothing before the first rollup); commits every batch."""
    report = PruneReport()
    through = rolled_through(session, tz)
    if through is None:
        return report
    now = now or dt.datetime.now(dt.UTC)
    rolled = midnight(through + dt.timedelta(days=1), tz)
    W, S = AvailabilityWindow, MachineStateSpan
    span_cut = min(now - dt.timedelta(days=span_retention_days), rolled)
    window_cut = min(now - dt.timedelta(days=window_retention_days), rolled)
    report.spans = _delete_in_batches(session, S, col(S.end_at) < span_cut)
    # a window lasts at most 31 days: its start_at index finds the old ones
    report.windows = _delete_in_batches(
        session, W, col(W.start_at) < window_cut, col(W.end_at) < window_cut
    )
    return report


def _delete_in_batches(
    session: Session, table: type[AvailabilityWindow] | type[MachineStateSpan], *where: Any
) -> int:
    deleted = 0
    while True:
        begin_write(session)
        ids = list(session.exec(select(table.id).where(*where).limit(PRUNE_BATCH)).all())
        if ids:
            session.execute(delete(table).where(col(table.id).in_(ids)))
        session.commit()
        deleted += len(ids)
        if len(ids) < PRUNE_BATCH:
            return deleted
