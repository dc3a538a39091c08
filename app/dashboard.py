"""The operator's view of its clusters: offered and booked hours, utilization,
GMV, by process and by day, computed in SQL so it scales to large markets."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Float, case, cast, func
from sqlalchemy.orm import Mapped
from sqlmodel import Session, col, select

from app.accounts import is_admin, operated_cluster_ids
from app.errors import PermissionDenied
from models import (
    AvailabilityWindow,
    Booking,
    BookingState,
    Cluster,
    Machine,
    MachineStatus,
    Order,
    OrderStatus,
    Process,
    User,
)

HELD = (BookingState.confirmed.value, BookingState.in_progress.value, BookingState.done.value)


@dataclass
class ProcessRow:
    process: str
    family: str
    machines: int = 0
    offered_h: float = 0.0
    booked_h: float = 0.0

    @property
    def utilization(self) -> float:
        return self.booked_h / self.offered_h if self.offered_h else 0.0


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
    by_day: dict[str, dict[str, float]] = field(default_factory=dict)  # process -> day -> utilization
    heatmap: dict[str, dict[str, float]] = field(default_factory=dict)  # process -> cluster -> utilization
    idle: list[tuple[str, str, float]] = field(default_factory=list)  # cluster, process, unbooked offered hours

    @property
    def utilization(self) -> float:
        return self.booked_h / self.offered_h if self.offered_h else 0.0

    @property
    def match_rate(self) -> float:
        total = self.open_orders + self.matched_orders
        return self.matched_orders / total if total else 0.0

    @property
    def on_time_rate(self) -> float:
        return self.on_time_bookings / self.done_bookings if self.done_bookings else 0.0


def _hours(session: Session, start: Mapped[dt.datetime], end: Mapped[dt.datetime]) -> ColumnElement[float]:
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 24.0
    return cast(func.extract("epoch", end - start), Float(asdecimal=False)) / 3600.0


def _local_day(session: Session, column: Any, tz: str) -> Any:
    """The calendar day of a UTC timestamp in the display time zone, in SQL."""
    if session.get_bind().dialect.name == "sqlite":
        offset = dt.datetime.now(ZoneInfo(tz)).utcoffset() or dt.timedelta()
        return func.date(column, f"{offset.total_seconds() / 3600:+g} hours")
    return func.date(func.timezone(tz, column))


def operator_dashboard(
    *, session: Session, user: User, start: dt.datetime, end: dt.datetime, cluster_id: int | None = None,
    tz: str = "Asia/Shanghai",
) -> Dashboard:
    """Days are calendar days in ``tz`` (the display time zone)."""
    if is_admin(user):
        clusters = list(session.exec(select(Cluster).order_by(col(Cluster.id))).all())
    else:
        ids = operated_cluster_ids(session=session, user=user)
        if not ids:
            raise PermissionDenied("only cluster operators see the cluster dashboard")
        clusters = list(session.exec(select(Cluster).where(col(Cluster.id).in_(ids)).order_by(col(Cluster.id))).all())
    if cluster_id is not None:
        clusters = [c for c in clusters if c.id == cluster_id]
    ids = [c.id for c in clusters if c.id is not None]
    names = {c.id: c.name_en for c in clusters}
    d = Dashboard(clusters=clusters, start=start, end=end)
    in_scope = (col(Machine.cluster_id).in_(ids), col(Machine.status) != MachineStatus.retired.value)
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
        .where(*in_scope, col(AvailabilityWindow.start_at) >= start, col(AvailabilityWindow.start_at) < end)
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
        select(Machine.process_key, Machine.cluster_id, bday, Booking.state, func.sum(b_hours), func.sum(Booking.price_fen))  # type: ignore[call-overload]
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
        rows.setdefault(process, ProcessRow(process, family_of.get(process, ""))).machines = machines
    d.by_process = sorted(rows.values(), key=lambda r: (r.family, r.process))
    d.offered_h = sum(r.offered_h for r in d.by_process)
    d.booked_h = sum(r.booked_h for r in d.by_process)
    for (cluster, process), offered in sorted(heat_offered.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        d.heatmap.setdefault(process, {})[names.get(cluster, "?")] = heat_booked[(cluster, process)] / offered
    for (when, process), offered in sorted(day_offered.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        d.by_day.setdefault(process, {})[when] = day_booked[(when, process)] / offered

    machine_ids = select(Machine.id).where(*in_scope)
    order_ids = select(Booking.order_id).where(col(Booking.machine_id).in_(machine_ids))
    d.matched_orders = session.exec(
        select(func.count()).select_from(Order).where(col(Order.id).in_(order_ids), col(Order.status) != OrderStatus.open.value)
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
        ((names.get(cluster, "?"), process, offered - heat_booked[(cluster, process)])
         for (cluster, process), offered in heat_offered.items() if offered > heat_booked[(cluster, process)]),
        key=lambda row: -row[2],
    )[:30]
    return d
