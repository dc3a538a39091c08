"""The operator's view of its clusters: offered and booked hours, utilization,
GMV, by process and by day, computed in SQL so it scales to large markets; and, from
telemetry, the machine networking rate and the actual utilization (of the offered hours in
which machines reported their state over the last week, the share they were running).

Every query is bounded by its period and served by an index on ``start_at``. Closed
days the history rollup covers (``app.dashboard.history``) are read from ``machine_day``
rows; the rest of a period (today, the future, a partial first or last day) from the raw
rows, so the figures are the same either way."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, case, exists, func, literal, true
from sqlmodel import Session, col, select

from app.accounts.service import is_admin, operated_cluster_ids
from app.dashboard.history import rolled_through
from app.dashboard.sql import day_of, greatest, hours, least, local_day, midnight
from app.errors import PermissionDenied
from models import (
    AvailabilityWindow,
    Booking,
    BookingState,
    Cluster,
    Machine,
    MachineDay,
    MachineHistory,
    MachineState,
    MachineStateSpan,
    MachineStatus,
    Order,
    OrderStatus,
    Process,
    User,
    UTCDateTime,
    utcnow,
)

HELD = (BookingState.confirmed.value, BookingState.in_progress.value, BookingState.done.value)
NETWORKED_WITHIN = dt.timedelta(hours=24)  # a machine is networked if it reported this recently
ACTUAL_OVER = dt.timedelta(days=7)  # actual utilization looks back this far


@dataclass
class ProcessRow:
    process: str
    family: str
    machines: int = 0
    offered_h: float = 0.0
    booked_h: float = 0.0
    monitored_offered_h: float = 0.0  # offered hours in which machines reported a state (last week)
    running_h: float = 0.0  # of those, the hours they reported running

    @property
    def utilization(self) -> float:
        return self.booked_h / self.offered_h if self.offered_h else 0.0

    @property
    def actual_utilization(self) -> float | None:
        return self.running_h / self.monitored_offered_h if self.monitored_offered_h else None


@dataclass
class Dashboard:
    clusters: list[Cluster]
    start: dt.datetime
    end: dt.datetime
    machines: int = 0
    offered_h: float = 0.0
    booked_h: float = 0.0
    proposed_h: float = 0.0
    gmv_fen: int = 0
    open_orders: int = 0
    matched_orders: int = 0
    done_bookings: int = 0
    on_time_bookings: int = 0
    by_process: list[ProcessRow] = field(default_factory=list)
    by_day: dict[str, dict[str, float]] = field(
        default_factory=dict
    )  # process -> day -> utilization
    heatmap: dict[str, dict[str, float]] = field(
        default_factory=dict
    )  # process -> cluster -> utilization
    idle: list[tuple[str, str, float]] = field(
        default_factory=list
    )  # cluster, process, unbooked offered hours
    networked: int = 0  # machines that reported in the last 24 h
    actual_start: dt.datetime | None = None  # the week the actual utilization covers
    actual_end: dt.datetime | None = None
    monitored_machines: int = 0
    monitored_offered_h: float = 0.0
    running_h: float = 0.0

    @property
    def utilization(self) -> float:
        return self.booked_h / self.offered_h if self.offered_h else 0.0

    @property
    def networking_rate(self) -> float:
        return self.networked / self.machines if self.machines else 0.0

    @property
    def actual_utilization(self) -> float | None:
        return self.running_h / self.monitored_offered_h if self.monitored_offered_h else None

    @property
    def match_rate(self) -> float:
        total = self.open_orders + self.matched_orders
        return self.matched_orders / total if total else 0.0

    @property
    def on_time_rate(self) -> float:
        return self.on_time_bookings / self.done_bookings if self.done_bookings else 0.0


Range = tuple[dt.datetime, dt.datetime]


@dataclass
class _Split:
    """A period cut into whole rolled-up days (``first``..``last``, read from
    ``machine_day``) and the ranges around them read from the raw rows."""

    first: dt.date | None
    last: dt.date | None
    raw: list[Range]


def _split(lo: dt.datetime, hi: dt.datetime, rolled: dt.datetime | None, tz: str) -> _Split:
    if rolled is None or lo >= hi:
        return _Split(None, None, [(lo, hi)] if lo < hi else [])
    first = day_of(lo, tz)
    if midnight(first, tz) < lo:
        first += dt.timedelta(days=1)
    agg_lo = midnight(first, tz)
    agg_hi = min(rolled, midnight(day_of(hi, tz), tz))
    if agg_lo >= agg_hi:
        return _Split(None, None, [(lo, hi)])
    raw = [r for r in ((lo, agg_lo), (agg_hi, hi)) if r[0] < r[1]]
    return _Split(first, day_of(agg_hi, tz) - dt.timedelta(days=1), raw)


@dataclass
class _Sums:
    rows: dict[str, ProcessRow]
    family_of: dict[str, str]
    heat_offered: dict[tuple[int, str], float] = field(default_factory=lambda: defaultdict(float))
    heat_booked: dict[tuple[int, str], float] = field(default_factory=lambda: defaultdict(float))
    day_offered: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    day_booked: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))

    def row(self, process: str) -> ProcessRow:
        return self.rows.setdefault(process, ProcessRow(process, self.family_of.get(process, "")))

    def offered(self, process: str, cluster: int | None, when: Any, h: float) -> None:
        assert cluster is not None  # in_scope keeps only machines of the listed clusters
        self.row(process).offered_h += h
        self.heat_offered[(cluster, process)] += h
        self.day_offered[(str(when), process)] += h

    def booked(self, process: str, cluster: int | None, when: Any, h: float) -> None:
        assert cluster is not None
        self.row(process).booked_h += h
        self.heat_booked[(cluster, process)] += h
        self.day_booked[(str(when), process)] += h

    def observed(self, process: str, state: str, h: float) -> None:
        r = self.row(process)
        r.monitored_offered_h += h
        if state == MachineState.running.value:
            r.running_h += h


def _period_raw(session: Session, d: Dashboard, s: _Sums, in_scope: tuple[Any, ...],
                lo: dt.datetime, hi: dt.datetime, tz: str) -> None:  # fmt: skip
    """Offered and booked hours of the windows and bookings starting in [lo, hi)."""
    W, B = AvailabilityWindow, Booking
    day = local_day(session, W.start_at, tz)
    for process, cluster, when, h in session.exec(
        select(
            Machine.process_key,
            Machine.cluster_id,
            day,
            func.sum(hours(session, col(W.start_at), col(W.end_at))),
        )  # fmt: skip
        .join(Machine, col(Machine.id) == W.machine_id)
        .where(*in_scope, col(W.start_at) >= lo, col(W.start_at) < hi)
        .group_by(Machine.process_key, col(Machine.cluster_id), day)
    ).all():
        s.offered(process, cluster, when, float(h or 0))
    bday = local_day(session, B.start_at, tz)
    for process, cluster, when, state, h, gmv in session.exec(
        # sqlmodel's select() stubs stop at four columns; at run time it takes any number
        select(  # type: ignore[call-overload]
            Machine.process_key,
            Machine.cluster_id,
            bday,
            B.state,
            func.sum(hours(session, col(B.start_at), col(B.end_at))),
            func.sum(B.price_fen),
        )
        .join(Machine, col(Machine.id) == B.machine_id)
        .where(*in_scope, col(B.start_at) >= lo, col(B.start_at) < hi)
        .group_by(Machine.process_key, col(Machine.cluster_id), bday, B.state)
    ).all():
        h = float(h or 0)
        if state == BookingState.proposed.value:
            d.proposed_h += h
        if state in HELD:
            d.gmv_fen += int(gmv or 0)
            s.booked(process, cluster, when, h)


def _period_rolled(session: Session, d: Dashboard, s: _Sums, in_scope: tuple[Any, ...],
                   first: dt.date, last: dt.date) -> None:  # fmt: skip
    """The same figures for whole rolled-up days, from ``machine_day``."""
    D = MachineDay
    for process, cluster, when, offered, held, fen, proposed in session.exec(
        select(  # type: ignore[call-overload]
            Machine.process_key,
            Machine.cluster_id,
            D.day,
            func.sum(D.offered_s),
            func.sum(D.held_s),
            func.sum(D.held_fen),
            func.sum(D.proposed_s),
        )
        .join(Machine, col(Machine.id) == D.machine_id)
        .where(*in_scope, col(D.day) >= first, col(D.day) <= last)
        .group_by(Machine.process_key, col(Machine.cluster_id), D.day)
    ).all():
        if offered:
            s.offered(process, cluster, when, int(offered) / 3600)
        if held:
            d.gmv_fen += int(fen or 0)
            s.booked(process, cluster, when, int(held) / 3600)
        d.proposed_h += int(proposed or 0) / 3600


def _spans_raw(session: Session, s: _Sums, in_scope: tuple[Any, ...], lo: dt.datetime,
               hi: dt.datetime, sign: int = 1) -> None:  # fmt: skip
    S = MachineStateSpan
    for process, state, seconds in session.exec(
        select(Machine.process_key, S.state, func.sum(S.offered_s))
        .join(Machine, col(Machine.id) == S.machine_id)
        .where(*in_scope, col(S.offered_s) > 0, col(S.start_at) >= lo, col(S.start_at) < hi)
        .group_by(Machine.process_key, S.state)
    ).all():
        s.observed(process, state, sign * int(seconds or 0) / 3600)


def _spans_rolled(session: Session, s: _Sums, in_scope: tuple[Any, ...], first: dt.date,
                  last: dt.date) -> None:  # fmt: skip
    D = MachineDay
    for process, monitored, running in session.exec(
        select(Machine.process_key, func.sum(D.monitored_s), func.sum(D.running_s))
        .join(Machine, col(Machine.id) == D.machine_id)
        .where(*in_scope, col(D.day) >= first, col(D.day) <= last)
        .group_by(Machine.process_key)
    ).all():
        s.observed(process, MachineState.running.value, int(running or 0) / 3600)
        s.observed(process, "", (int(monitored or 0) - int(running or 0)) / 3600)


def _spans_across(session: Session, s: _Sums, in_scope: tuple[Any, ...], a: dt.datetime,
                  b: dt.datetime) -> None:  # fmt: skip
    """Spans that began before the week and reach into it, clipped to it exactly against
    the windows, in SQL. A machine's spans never overlap, so on PostgreSQL it is each
    machine's last span begun before the week (one index probe per machine, whatever
    the history); SQLite, without LATERAL, filters the spans ending in the week."""
    W, S = AvailabilityWindow, MachineStateSpan
    if session.get_bind().dialect.name == "postgresql":
        span: Any = (
            select(S.state, S.start_at, S.end_at, S.offered_s)
            .where(col(S.machine_id) == Machine.id, col(S.start_at) < a)
            .order_by(col(S.start_at).desc())
            .limit(1)
            .lateral("across")
        )
        spans = select(Machine.process_key, span.c.state).select_from(Machine).join(span, true())
    else:
        span = MachineStateSpan.__table__  # type: ignore[attr-defined]
        spans = select(Machine.process_key, span.c.state).join(
            Machine, col(Machine.id) == span.c.machine_id
        )
    lo, hi = literal(a, UTCDateTime()), literal(b, UTCDateTime())
    inside = hours(session, greatest(session, span.c.start_at, col(W.start_at), lo),
                   least(session, span.c.end_at, col(W.end_at), hi))  # fmt: skip
    for process, state, h in session.execute(
        spans.add_columns(func.sum(inside))
        .join(
            W,
            and_(
                col(W.machine_id) == Machine.id,
                col(W.start_at) < span.c.end_at,
                col(W.end_at) > span.c.start_at,
            ),
        )  # fmt: skip
        .where(
            *in_scope,
            span.c.offered_s > 0,
            span.c.start_at < a,
            span.c.end_at > a,
            col(W.end_at) > a,
        )  # fmt: skip
        .group_by(Machine.process_key, span.c.state)
    ).all():
        s.observed(process, state, max(0.0, float(h or 0)))


def _telemetry(session: Session, d: Dashboard, s: _Sums, in_scope: tuple[Any, ...],
               now: dt.datetime, rolled: dt.datetime | None, tz: str) -> None:  # fmt: skip
    """Networking rate; and, over the last week, of the offered hours in which machines
    reported their state (time without reports is unknown, not idle), the share they
    reported running. Spans keep their offered seconds (filed under the day they begin);
    those that began before the week are clipped to it."""
    d.networked = session.exec(
        select(func.count())
        .select_from(Machine)
        .where(*in_scope, col(Machine.last_reported_at) >= now - NETWORKED_WITHIN)
    ).one()
    a, b = now - ACTUAL_OVER, now
    d.actual_start, d.actual_end = a, b
    d.monitored_machines = session.exec(
        select(func.count())
        .select_from(Machine)
        .where(*in_scope, col(Machine.last_reported_at) >= a)
    ).one()
    split = _split(a, b, rolled, tz)
    if split.first is not None and split.last is not None:
        _spans_rolled(session, s, in_scope, split.first, split.last)
    whole = split.first - dt.timedelta(days=1) if split.first is not None else None
    for lo, hi in split.raw:
        if whole is not None and split.first is not None and hi == midnight(split.first, tz) \
                and lo - midnight(whole, tz) < hi - lo:  # fmt: skip
            # the week begins early in a rolled-up day: that day, less its hours before it
            _spans_rolled(session, s, in_scope, whole, whole)
            _spans_raw(session, s, in_scope, midnight(whole, tz), lo, sign=-1)
        else:
            _spans_raw(session, s, in_scope, lo, hi)
    _spans_across(session, s, in_scope, a, b)


def operator_dashboard(
    *,
    session: Session,
    user: User,
    start: dt.datetime,
    end: dt.datetime,
    cluster_id: int | None = None,
    tz: str = "Asia/Shanghai",
    now: dt.datetime | None = None,
    history: bool = True,
) -> Dashboard:
    """Days are calendar days in ``tz`` (the display time zone). Telemetry figures look
    back from ``now`` (default: the current time). ``history=False`` reads every figure
    from the raw rows (the reference the rolled-up figures are checked against)."""
    if is_admin(user):
        clusters = list(session.exec(select(Cluster).order_by(col(Cluster.id))).all())
    else:
        ids = operated_cluster_ids(session=session, user=user)
        if not ids:
            raise PermissionDenied("only cluster operators see the cluster dashboard")
        clusters = list(
            session.exec(
                select(Cluster).where(col(Cluster.id).in_(ids)).order_by(col(Cluster.id))
            ).all()
        )
    if cluster_id is not None:
        clusters = [c for c in clusters if c.id == cluster_id]
    ids = [c.id for c in clusters if c.id is not None]
    names = {c.id: c.name_en for c in clusters}
    d = Dashboard(clusters=clusters, start=start, end=end)
    in_scope = (
        col(Machine.cluster_id).in_(ids),
        col(Machine.status) != MachineStatus.retired.value,
    )
    d.machines = session.exec(select(func.count()).select_from(Machine).where(*in_scope)).one()
    through = rolled_through(session, tz) if history else None
    rolled = midnight(through + dt.timedelta(days=1), tz) if through is not None else None
    s = _Sums(rows={}, family_of=dict(session.exec(select(Process.key, Process.family)).all()))
    split = _split(start, end, rolled, tz)
    if split.first is not None and split.last is not None:
        _period_rolled(session, d, s, in_scope, split.first, split.last)
    for lo, hi in split.raw:
        _period_raw(session, d, s, in_scope, lo, hi, tz)
    for process, machines in session.exec(
        select(Machine.process_key, func.count()).where(*in_scope).group_by(Machine.process_key)
    ).all():
        s.row(process).machines = machines
    heat_offered, heat_booked = s.heat_offered, s.heat_booked
    for (cluster, process), offered in sorted(
        heat_offered.items(), key=lambda kv: (kv[0][1], kv[0][0])
    ):
        d.heatmap.setdefault(process, {})[names.get(cluster, "?")] = (
            heat_booked[(cluster, process)] / offered
        )
    for (when, process), offered in sorted(
        s.day_offered.items(), key=lambda kv: (kv[0][1], kv[0][0])
    ):
        d.by_day.setdefault(process, {})[when] = s.day_booked[(when, process)] / offered

    # an order is matched (here) once it is out of the pool with a booking on a machine here
    on_machine_here = exists(
        select(Booking.id)
        .join(Machine, col(Machine.id) == Booking.machine_id)
        .where(col(Booking.order_id) == Order.id, *in_scope)
    )
    d.matched_orders = session.exec(
        select(func.count())
        .select_from(Order)
        .where(col(Order.status) != OrderStatus.open.value, on_machine_here)
    ).one()
    # demand is market-wide: orders nobody has taken yet
    d.open_orders = session.exec(
        select(func.count()).select_from(Order).where(Order.status == OrderStatus.open.value)
    ).one()
    _done_bookings(session, d, in_scope, rolled)
    d.idle = sorted(
        (
            (names.get(cluster, "?"), process, offered - heat_booked[(cluster, process)])
            for (cluster, process), offered in heat_offered.items()
            if offered > heat_booked[(cluster, process)]
        ),
        key=lambda row: -row[2],
    )[:30]
    _telemetry(session, d, s, in_scope, now or utcnow(), rolled, tz)
    d.by_process = sorted(s.rows.values(), key=lambda r: (r.family, r.process))
    d.offered_h = sum(r.offered_h for r in d.by_process)
    d.booked_h = sum(r.booked_h for r in d.by_process)
    d.monitored_offered_h = sum(r.monitored_offered_h for r in d.by_process)
    d.running_h = sum(r.running_h for r in d.by_process)
    return d


def _done_bookings(
    session: Session, d: Dashboard, in_scope: tuple[Any, ...], rolled: dt.datetime | None
) -> None:
    """All-time done bookings of orders and how many were on time: each machine's rolled-up
    total, and the bookings that began after the rolled-up days."""
    if rolled is not None:
        done = session.exec(
            select(
                func.sum(MachineHistory.done_bookings), func.sum(MachineHistory.on_time_bookings)
            )
            .join(Machine, col(Machine.id) == MachineHistory.machine_id)
            .where(*in_scope)
        ).one()
        d.done_bookings, d.on_time_bookings = int(done[0] or 0), int(done[1] or 0)
    later = (col(Booking.start_at) >= rolled,) if rolled is not None else ()
    done = session.exec(
        select(func.count(), func.sum(case((col(Booking.end_at) <= Order.due_at, 1), else_=0)))
        .join(Order, col(Order.id) == Booking.order_id)
        .join(Machine, col(Machine.id) == Booking.machine_id)
        .where(*in_scope, Booking.state == BookingState.done.value, *later)
    ).one()
    d.done_bookings += int(done[0] or 0)
    d.on_time_bookings += int(done[1] or 0)
