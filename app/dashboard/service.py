"""The operator's view of its clusters: offered and booked hours, utilization,
GMV, by process and by day, computed in SQL so it scales to large markets; and, from
telemetry, the machine networking rate and the actual utilization (of the offered hours in
which machines reported their state over the last week, the share they were running)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Float, and_, case, cast, func, literal
from sqlmodel import Session, col, select

from app.accounts.service import is_admin, operated_cluster_ids
from app.errors import PermissionDenied
from models import (
    AvailabilityWindow,
    Booking,
    BookingState,
    Cluster,
    Machine,
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


def _hours(session: Session, start: Any, end: Any) -> ColumnElement[float]:
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 24.0
    return cast(func.extract("epoch", end - start), Float(asdecimal=False)) / 3600.0


def _least(session: Session, *values: Any) -> Any:
    return func.min(*values) if session.get_bind().dialect.name == "sqlite" else func.least(*values)


def _greatest(session: Session, *values: Any) -> Any:
    return (
        func.max(*values) if session.get_bind().dialect.name == "sqlite" else func.greatest(*values)
    )


def _telemetry(session: Session, d: Dashboard, in_scope: tuple[Any, ...], now: dt.datetime,
               family_of: dict[str, str]) -> None:  # fmt: skip
    """Networking rate; and, over the last week, of the offered hours in which machines
    reported their state (time without reports is unknown, not idle), the share they
    reported running. Spans keep their offered seconds; the few that began before the
    week are clipped to it exactly, against the windows, in SQL."""
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
    W, S = AvailabilityWindow, MachineStateSpan
    rows = {r.process: r for r in d.by_process}

    def add(process: str, state: str, hours: float) -> None:
        r = rows.setdefault(process, ProcessRow(process, family_of.get(process, "")))
        r.monitored_offered_h += hours
        if state == MachineState.running.value:
            r.running_h += hours

    for process, state, seconds in session.exec(
        select(Machine.process_key, S.state, func.sum(S.offered_s))
        .join(Machine, col(Machine.id) == S.machine_id)
        .where(*in_scope, col(S.offered_s) > 0, col(S.start_at) >= a, col(S.start_at) < b)
        .group_by(Machine.process_key, S.state)
    ).all():
        add(process, state, int(seconds or 0) / 3600)
    lo, hi = literal(a, UTCDateTime()), literal(b, UTCDateTime())
    inside = _hours(session, _greatest(session, col(S.start_at), col(W.start_at), lo),
                    _least(session, col(S.end_at), col(W.end_at), hi))  # fmt: skip
    for process, state, hours in session.exec(
        select(Machine.process_key, S.state, func.sum(inside))
        .select_from(S)
        .join(
            W,
            and_(
                col(W.machine_id) == S.machine_id,
                col(W.start_at) < S.end_at,
                col(W.end_at) > S.start_at,
            ),
        )
        .join(Machine, col(Machine.id) == S.machine_id)
        .where(
            *in_scope,
            col(S.offered_s) > 0,
            col(S.start_at) < a,
            col(S.end_at) > a,
            col(W.end_at) > a,
        )
        .group_by(Machine.process_key, S.state)
    ).all():
        add(process, state, max(0.0, float(hours or 0)))
    d.by_process = sorted(rows.values(), key=lambda r: (r.family, r.process))
    d.monitored_offered_h = sum(r.monitored_offered_h for r in d.by_process)
    d.running_h = sum(r.running_h for r in d.by_process)


def _local_day(session: Session, column: Any, tz: str) -> Any:
    """The calendar day of a UTC timestamp in the display time zone, in SQL."""
    if session.get_bind().dialect.name == "sqlite":
        offset = dt.datetime.now(ZoneInfo(tz)).utcoffset() or dt.timedelta()
        return func.date(column, f"{offset.total_seconds() / 3600:+g} hours")
    return func.date(func.timezone(tz, column))


def operator_dashboard(
    *,
    session: Session,
    user: User,
    start: dt.datetime,
    end: dt.datetime,
    cluster_id: int | None = None,
    tz: str = "Asia/Shanghai",
    now: dt.datetime | None = None,
) -> Dashboard:
    """Days are calendar days in ``tz`` (the display time zone). Telemetry figures look
    back from ``now`` (default: the current time)."""
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

    w_hours = _hours(session, col(AvailabilityWindow.start_at), col(AvailabilityWindow.end_at))
    b_hours = _hours(session, col(Booking.start_at), col(Booking.end_at))
    day = _local_day(session, AvailabilityWindow.start_at, tz)
    rows: dict[str, ProcessRow] = {}
    family_of = dict(session.exec(select(Process.key, Process.family)).all())
    heat_offered: dict[tuple[int, str], float] = defaultdict(float)
    heat_booked: dict[tuple[int, str], float] = defaultdict(float)
    day_offered: dict[tuple[str, str], float] = defaultdict(float)
    day_booked: dict[tuple[str, str], float] = defaultdict(float)
    for process, cluster, when, hours in session.exec(
        select(Machine.process_key, Machine.cluster_id, day, func.sum(w_hours))
        .join(Machine, col(Machine.id) == AvailabilityWindow.machine_id)
        .where(
            *in_scope,
            col(AvailabilityWindow.start_at) >= start,
            col(AvailabilityWindow.start_at) < end,
        )
        .group_by(Machine.process_key, col(Machine.cluster_id), day)
    ).all():
        assert cluster is not None  # in_scope keeps only machines of the listed clusters
        row = rows.setdefault(process, ProcessRow(process, family_of.get(process, "")))
        row.offered_h += float(hours or 0)
        heat_offered[(cluster, process)] += float(hours or 0)
        day_offered[(str(when), process)] += float(hours or 0)
    bday = _local_day(session, Booking.start_at, tz)
    for process, cluster, when, state, hours, gmv in session.exec(
        # sqlmodel's select() stubs stop at four columns; at run time it takes any number
        select(
            Machine.process_key,
            Machine.cluster_id,
            bday,
            Booking.state,
            func.sum(b_hours),
            func.sum(Booking.price_fen),
        )  # type: ignore[call-overload]
        .join(Machine, col(Machine.id) == Booking.machine_id)
        .where(*in_scope, col(Booking.start_at) >= start, col(Booking.start_at) < end)
        .group_by(Machine.process_key, col(Machine.cluster_id), bday, Booking.state)
    ).all():
        hours = float(hours or 0)
        if state == BookingState.proposed.value:
            d.proposed_h += hours
        if state not in HELD:
            continue
        row = rows.setdefault(process, ProcessRow(process, family_of.get(process, "")))
        row.booked_h += hours
        d.gmv_fen += int(gmv or 0)
        heat_booked[(cluster, process)] += hours
        day_booked[(str(when), process)] += hours
    for process, machines in session.exec(
        select(Machine.process_key, func.count()).where(*in_scope).group_by(Machine.process_key)
    ).all():
        rows.setdefault(
            process, ProcessRow(process, family_of.get(process, ""))
        ).machines = machines
    d.by_process = sorted(rows.values(), key=lambda r: (r.family, r.process))
    d.offered_h = sum(r.offered_h for r in d.by_process)
    d.booked_h = sum(r.booked_h for r in d.by_process)
    for (cluster, process), offered in sorted(
        heat_offered.items(), key=lambda kv: (kv[0][1], kv[0][0])
    ):
        d.heatmap.setdefault(process, {})[names.get(cluster, "?")] = (
            heat_booked[(cluster, process)] / offered
        )
    for (when, process), offered in sorted(
        day_offered.items(), key=lambda kv: (kv[0][1], kv[0][0])
    ):
        d.by_day.setdefault(process, {})[when] = day_booked[(when, process)] / offered

    machine_ids = select(Machine.id).where(*in_scope)
    order_ids = select(Booking.order_id).where(col(Booking.machine_id).in_(machine_ids))
    d.matched_orders = session.exec(
        select(func.count())
        .select_from(Order)
        .where(col(Order.id).in_(order_ids), col(Order.status) != OrderStatus.open.value)
    ).one()
    # demand is market-wide: orders nobody has taken yet
    d.open_orders = session.exec(
        select(func.count()).select_from(Order).where(Order.status == OrderStatus.open.value)
    ).one()
    done = session.exec(
        select(func.count(), func.sum(case((col(Booking.end_at) <= Order.due_at, 1), else_=0)))
        .join(Order, col(Order.id) == Booking.order_id)
        .where(col(Booking.machine_id).in_(machine_ids), Booking.state == BookingState.done.value)
    ).one()
    d.done_bookings, d.on_time_bookings = int(done[0] or 0), int(done[1] or 0)
    d.idle = sorted(
        (
            (names.get(cluster, "?"), process, offered - heat_booked[(cluster, process)])
            for (cluster, process), offered in heat_offered.items()
            if offered > heat_booked[(cluster, process)]
        ),
        key=lambda row: -row[2],
    )[:30]
    _telemetry(session, d, in_scope, now or utcnow(), family_of)
    return d
