"""Rows ↔ ``matching.domain`` dataclasses.

Time in the matcher is integer minutes from a horizon start (a whole UTC minute);
ids are strings: ``str(row.id)``. A machine's free time is its offered windows
(merged, clipped to the horizon) minus every booking that holds it and is not being
re-planned: confirmed and in-progress bookings and leases are frozen; proposed
bookings of the orders in the run may move (the run supersedes them), proposed
bookings of other orders stay put.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlmodel import Session, col, select

from app.catalog.service import list_clusters, nearest_cluster
from app.machines.free_time import Span, free_spans
from app.orders.service import POOL_STATES
from matching import MachineSpec, MatchProblem, ObjectiveMode, OperationSpec, OrderSpec, Weights
from models import (
    HELD_STATES,
    Booking,
    BookingState,
    Machine,
    MachineStatus,
    Operation,
    Order,
    Process,
)
from models.base import as_utc
from models.order import OperationBase

# An operation left out costs this much (per operation) in the objective, or the
# order's budget when that is higher: placing work always beats leaving it out
# unless it is tardier than it is worth.
UNPLACED_PENALTY_FEN = 5_000_000
Interval = tuple[int, int]


@dataclass(frozen=True)
class Horizon:
    start: dt.datetime  # a whole UTC minute
    minutes: int

    @classmethod
    def from_now(cls, now: dt.datetime, days: int) -> Horizon:
        start = as_utc(now).replace(second=0, microsecond=0)
        return cls(start=start, minutes=days * 24 * 60)

    @property
    def end(self) -> dt.datetime:
        return self.start + dt.timedelta(minutes=self.minutes)

    def floor(self, t: dt.datetime) -> int:
        return math.floor((as_utc(t) - self.start).total_seconds() / 60)

    def ceil(self, t: dt.datetime) -> int:
        return math.ceil((as_utc(t) - self.start).total_seconds() / 60)

    def at(self, minute: int) -> dt.datetime:
        return self.start + dt.timedelta(minutes=minute)


@dataclass
class MatchInput:
    """A problem built from the DB and what is needed to write its answer back."""

    problem: MatchProblem
    horizon: Horizon
    machines: dict[str, Machine]
    orders: dict[str, Order]
    operations: dict[str, Operation]
    movable_booking_ids: list[int] = field(default_factory=list)

    @property
    def free_intervals(self) -> int:
        return sum(len(m.free) for m in self.problem.machines)

    @property
    def operation_count(self) -> int:
        return sum(len(o.operations) for o in self.problem.orders)


def free_time(
    session: Session,
    machine_ids: Sequence[int],
    horizon: Horizon,
    *,
    ignore_booking_ids: Iterable[int] = (),
    extra_blocks: Mapping[int, Sequence[Span]] | None = None,
) -> dict[int, tuple[Interval, ...]]:
    """Per machine, its free whole minutes of the horizon (see
    :func:`app.machines.free_time.free_spans`)."""
    spans = free_spans(
        session, machine_ids, horizon.start, horizon.end,
        ignore_booking_ids=ignore_booking_ids, extra_blocks=extra_blocks,
    )  # fmt: skip
    out: dict[int, tuple[Interval, ...]] = {}
    for machine_id, free in spans.items():
        minutes = ((horizon.ceil(s), horizon.floor(e)) for s, e in free)
        out[machine_id] = tuple((s, e) for s, e in minutes if s < e)
    return out


def machine_spec(machine: Machine, family: str, free: tuple[Interval, ...]) -> MachineSpec:
    return MachineSpec(
        id=str(machine.id),
        owner_id=str(machine.owner_org_id),
        cluster=str(machine.cluster_id) if machine.cluster_id is not None else "",
        family=family,
        process=machine.process_key,
        materials=frozenset(machine.materials),
        free=free,
        rate_fen_per_hour=machine.hourly_rate_fen,
        envelope_mm=(machine.envelope_x_mm, machine.envelope_y_mm, machine.envelope_z_mm),
        tolerance_mm=machine.tolerance_mm,
        certifications=frozenset(machine.certifications),
        speed_factor=machine.speed_factor,
        min_booking_min=machine.min_booking_minutes,
        lat=machine.lat,
        lon=machine.lon,
    )


def operation_spec(key: str, op: OperationBase) -> OperationSpec:
    return OperationSpec(
        id=key,
        process=op.process_key,
        material=op.material_key,
        std_duration_min=op.std_duration_min,
        envelope_mm=(op.part_x_mm, op.part_y_mm, op.part_z_mm),
        tolerance_mm=op.tolerance_mm or 0.0,
        certifications=frozenset(op.certifications),
    )


def order_spec(
    *,
    key: str,
    order: Order,
    operations: Sequence[OperationSpec],
    horizon: Horizon,
    cluster_id: int | None,
    release_at: dt.datetime | None = None,
    due_at: dt.datetime | None = None,
) -> OrderSpec:
    release = max(as_utc(order.release_at), release_at or horizon.start)
    due = as_utc(order.due_at) if due_at is None else min(as_utc(order.due_at), due_at)
    hard = order.due_kind == "hard" or due_at is not None
    return OrderSpec(
        id=key,
        buyer_id=str(order.buyer_org_id),
        operations=tuple(operations),
        release_min=max(0, horizon.ceil(release)),
        due_min=horizon.floor(due),
        hard_due=hard,
        tardiness_fen_per_min=0 if hard else math.ceil(order.tardiness_fen_per_hour / 60),
        unassigned_penalty_fen=max(order.budget_fen or 0, UNPLACED_PENALTY_FEN),
        budget_fen=order.budget_fen,
        max_distance_km=float(order.max_distance_km) if order.max_distance_km is not None else None,
        delivery_lat=order.delivery_lat if order.delivery_lat is not None else 0.0,
        delivery_lon=order.delivery_lon if order.delivery_lon is not None else 0.0,
        cluster=str(cluster_id) if cluster_id is not None else None,
    )


def _families(session: Session) -> dict[str, str]:
    return {p.key: p.family for p in session.exec(select(Process)).all()}


def load_machines(
    session: Session,
    horizon: Horizon,
    *,
    cluster_id: int | None = None,
    process_keys: Iterable[str] | None = None,
    exclude_owner_org_id: int | None = None,
    ignore_booking_ids: Iterable[int] = (),
) -> tuple[list[MachineSpec], dict[str, Machine]]:
    """Active machines (of a cluster, of some processes) with their free time."""
    query = select(Machine).where(Machine.status == MachineStatus.active.value)
    if cluster_id is not None:
        query = query.where(Machine.cluster_id == cluster_id)
    if process_keys is not None:
        query = query.where(col(Machine.process_key).in_(list(process_keys)))
    if exclude_owner_org_id is not None:
        query = query.where(Machine.owner_org_id != exclude_owner_org_id)
    rows = list(session.exec(query.order_by(col(Machine.id))).all())
    ids = [m.id for m in rows if m.id is not None]
    free = free_time(session, ids, horizon, ignore_booking_ids=ignore_booking_ids)
    families = _families(session)
    specs = [
        machine_spec(m, families.get(m.process_key, ""), free[m.id])  # type: ignore[index]
        for m in rows
        if free.get(m.id)  # type: ignore[arg-type]
    ]
    return specs, {str(m.id): m for m in rows}


def build_match_input(
    session: Session,
    *,
    cluster_id: int | None,
    now: dt.datetime,
    horizon_days: int,
    weights: Weights | None = None,
) -> MatchInput:
    """The pool of a run: open and matched orders (of the cluster: delivered nearest
    to it) with every operation not yet held by a confirmed, running or finished
    booking; their proposed bookings are movable."""
    horizon = Horizon.from_now(now, horizon_days)
    weights = weights or Weights()
    clusters = list_clusters(session=session)
    orders = list(
        session.exec(
            select(Order).where(col(Order.status).in_(POOL_STATES)).order_by(col(Order.id))
        ).all()
    )
    order_cluster = {
        o.id: nearest_cluster(clusters, o.delivery_lat, o.delivery_lon) for o in orders
    }
    if cluster_id is not None:
        orders = [o for o in orders if order_cluster[o.id] == cluster_id]
    order_ids = [o.id for o in orders]
    ops_by_order: dict[int, list[Operation]] = defaultdict(list)
    bookings_by_op: dict[int, list[Booking]] = defaultdict(list)
    if order_ids:
        for op in session.exec(
            select(Operation)
            .where(col(Operation.order_id).in_(order_ids))
            .order_by(col(Operation.seq))
        ).all():
            ops_by_order[op.order_id].append(op)
        for b in session.exec(
            select(Booking).where(
                col(Booking.order_id).in_(order_ids),
                col(Booking.state).in_((*HELD_STATES, BookingState.proposed.value)),
            )
        ).all():
            if b.operation_id is not None:
                bookings_by_op[b.operation_id].append(b)
    in_cluster: set[int] | None = None
    if cluster_id is not None:  # a cluster run leaves alone what another run proposed elsewhere
        machine_ids = select(col(Machine.id)).where(Machine.cluster_id == cluster_id)
        in_cluster = {m for m in session.exec(machine_ids).all() if m is not None}
    movable: list[int] = []
    specs: list[OrderSpec] = []
    order_rows: dict[str, Order] = {}
    op_rows: dict[str, Operation] = {}
    for order in orders:
        assert order.id is not None
        ops = ops_by_order.get(order.id, [])
        held = {
            op.id: b
            for op in ops
            for b in bookings_by_op.get(op.id, [])  # type: ignore[arg-type]
            if b.state in HELD_STATES
        }
        unplaced = [op for op in ops if op.id not in held]
        if not unplaced:
            continue
        if in_cluster is not None and any(
            b.machine_id not in in_cluster
            for op in unplaced
            for b in bookings_by_op.get(op.id, [])  # type: ignore[arg-type]
            if b.state == BookingState.proposed.value
        ):
            continue
        movable += [
            b.id
            for op in unplaced
            for b in bookings_by_op.get(op.id, [])  # type: ignore[arg-type]
            if b.state == BookingState.proposed.value and b.id is not None
        ]
        first, last = unplaced[0].seq, unplaced[-1].seq
        before = [h for op in ops if op.seq < first and (h := held.get(op.id)) is not None]
        after = [h for op in ops if op.seq > last and (h := held.get(op.id)) is not None]
        release_at = None
        if before:  # wait for the goods from the frozen step before (plus the fixed handover)
            release_at = max(as_utc(b.end_at) for b in before) + dt.timedelta(
                minutes=weights.transport_fixed_min
            )
        due_at = None
        if after:  # finish before the frozen step after starts
            due_at = min(as_utc(b.start_at) for b in after) - dt.timedelta(
                minutes=weights.transport_fixed_min
            )
        key = str(order.id)
        order_rows[key] = order
        op_specs = []
        for op in unplaced:
            op_rows[str(op.id)] = op
            op_specs.append(operation_spec(str(op.id), op))
        specs.append(order_spec(
            key=key, order=order, operations=op_specs, horizon=horizon,
            cluster_id=order_cluster[order.id], release_at=release_at, due_at=due_at,
        ))  # fmt: skip
    machine_specs, machine_rows = load_machines(
        session, horizon, cluster_id=cluster_id, ignore_booking_ids=movable
    )
    problem = MatchProblem(
        machines=tuple(machine_specs), orders=tuple(specs), horizon_min=horizon.minutes,
        weights=weights, objective_mode=ObjectiveMode.COST,
    )  # fmt: skip
    return MatchInput(problem, horizon, machine_rows, order_rows, op_rows, movable)
