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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement
from sqlmodel import Session, col, select

from app.bookings.states import REFUSED_STATES
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
    # order key -> confirmed, unstarted bookings that bound its missing steps
    kept: dict[str, list[int]] = field(default_factory=dict)
    # order key -> confirmed bookings this input treats as movable (whole-order re-match)
    released: dict[str, list[int]] = field(default_factory=dict)

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


def operation_spec(
    key: str, op: OperationBase, *, excluded_machine_ids: Iterable[int] = ()
) -> OperationSpec:
    """An operation as the matcher sees it; ``excluded_machine_ids`` are machines it must
    never be placed on (their owners declined it or let the proposal lapse)."""
    return OperationSpec(
        id=key,
        process=op.process_key,
        material=op.material_key,
        std_duration_min=op.std_duration_min,
        envelope_mm=(op.part_x_mm, op.part_y_mm, op.part_z_mm),
        tolerance_mm=op.tolerance_mm or 0.0,
        certifications=frozenset(op.certifications),
        excluded_machines=frozenset(str(m) for m in excluded_machine_ids),
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
    extra_blocks: Mapping[int, Sequence[Span]] | None = None,
    keep: Callable[[list[Machine]], list[Machine]] | None = None,
    where: Sequence[ColumnElement[bool]] = (),
) -> tuple[list[MachineSpec], dict[str, Machine]]:
    """Active machines (of a cluster, of some processes, meeting ``where``) with their
    free time; ``keep`` narrows the rows before their free time is computed (a quote's
    shortlist)."""
    query = select(Machine).where(Machine.status == MachineStatus.active.value, *where)
    if cluster_id is not None:
        query = query.where(Machine.cluster_id == cluster_id)
    if process_keys is not None:
        query = query.where(col(Machine.process_key).in_(list(process_keys)))
    if exclude_owner_org_id is not None:
        query = query.where(Machine.owner_org_id != exclude_owner_org_id)
    rows = list(session.exec(query.order_by(col(Machine.id))).all())
    if keep is not None:
        rows = keep(rows)
    ids = [m.id for m in rows if m.id is not None]
    free = free_time(
        session, ids, horizon, ignore_booking_ids=ignore_booking_ids, extra_blocks=extra_blocks
    )
    families = _families(session)
    specs = [
        machine_spec(m, families.get(m.process_key, ""), free[m.id])  # type: ignore[index]
        for m in rows
        if free.get(m.id)  # type: ignore[arg-type]
    ]
    return specs, {str(m.id): m for m in rows}


def refused_pairs(session: Session, operation_ids: Sequence[int]) -> dict[int, set[int]]:
    """Per operation, the machines whose owners declined it or let its proposal lapse:
    the matcher never proposes that pair again."""
    out: dict[int, set[int]] = defaultdict(set)
    if not operation_ids:
        return out
    for operation_id, machine_id in session.exec(
        select(Booking.operation_id, Booking.machine_id).where(
            col(Booking.operation_id).in_(list(operation_ids)),
            col(Booking.state).in_(REFUSED_STATES),
        )
    ).all():
        if operation_id is not None:
            out[operation_id].add(machine_id)
    return out


def build_match_input(
    session: Session,
    *,
    cluster_id: int | None,
    now: dt.datetime,
    horizon_days: int,
    weights: Weights | None = None,
    only_order_ids: Iterable[int] | None = None,
    whole_order_ids: Iterable[int] = (),
    extra_blocks: Mapping[int, Sequence[Span]] | None = None,
) -> MatchInput:
    """The pool of a run: orders in the pool (of the cluster: delivered nearest to it)
    with every step not yet held by a confirmed, running or finished booking; their
    proposed bookings are movable. The steps already confirmed stay where they are and
    bound the others (release after the step before, due before the step after).

    ``whole_order_ids`` are re-matched as a whole: their confirmed steps that have not
    started are movable too (the run releases them if it places the order anew), for
    when the missing steps no longer fit around them. An order whose missing steps lie
    on both sides of a confirmed one is always re-matched as a whole."""
    horizon = Horizon.from_now(now, horizon_days)
    weights = weights or Weights()
    whole_ids = set(whole_order_ids)
    clusters = list_clusters(session=session)
    query = select(Order).where(col(Order.status).in_(POOL_STATES))
    if only_order_ids is not None:
        query = query.where(col(Order.id).in_(list(only_order_ids)))
    orders = list(session.exec(query.order_by(col(Order.id))).all())
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
    refused = refused_pairs(
        session, [op.id for ops in ops_by_order.values() for op in ops if op.id]
    )
    data = MatchInput(
        problem=MatchProblem(machines=(), orders=(), horizon_min=horizon.minutes),
        horizon=horizon, machines={}, orders={}, operations={},
    )  # fmt: skip
    specs: list[OrderSpec] = []
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
        proposed = [
            b
            for op in unplaced
            for b in bookings_by_op.get(op.id, [])  # type: ignore[arg-type]
            if b.state == BookingState.proposed.value and b.id is not None
        ]
        if in_cluster is not None and any(b.machine_id not in in_cluster for b in proposed):
            continue
        seqs = [op.seq for op in unplaced]
        kept = [b for b in held.values() if b.state == BookingState.confirmed.value]
        started = len(kept) < len(held)
        gapped = any(seqs[0] < op.seq < seqs[-1] for op in ops if op.id in held)
        if (order.id in whole_ids or gapped) and kept and not started:
            unplaced, released = ops, kept  # the whole order, its confirmed steps movable
        elif gapped:
            continue  # a running order with a hole in its middle: nothing fits the model
        else:
            released = []
        data.movable_booking_ids += [b.id for b in proposed if b.id is not None]
        key = str(order.id)
        if released:
            data.released[key] = [b.id for b in released if b.id is not None]
        elif kept and not started:
            data.kept[key] = [b.id for b in kept if b.id is not None]
        first, last = unplaced[0].seq, unplaced[-1].seq
        before = [h for op in ops if op.seq < first and (h := held.get(op.id)) is not None]
        after = [h for op in ops if op.seq > last and (h := held.get(op.id)) is not None]
        release_at = None
        if before:  # wait for the goods from the frozen step before (plus the fixed handover)
            release_at = max(as_utc(b.finished_at or b.end_at) for b in before) + dt.timedelta(
                minutes=weights.transport_fixed_min
            )
        due_at = None
        if after:  # finish before the frozen step after starts
            due_at = min(as_utc(b.start_at) for b in after) - dt.timedelta(
                minutes=weights.transport_fixed_min
            )
        data.orders[key] = order
        op_specs = []
        for op in unplaced:
            assert op.id is not None
            data.operations[str(op.id)] = op
            op_specs.append(
                operation_spec(str(op.id), op, excluded_machine_ids=refused.get(op.id, set()))
            )
        specs.append(order_spec(
            key=key, order=order, operations=op_specs, horizon=horizon,
            cluster_id=order_cluster[order.id], release_at=release_at, due_at=due_at,
        ))  # fmt: skip
    released_ids = [i for ids in data.released.values() for i in ids]
    machine_specs, data.machines = load_machines(
        session, horizon, cluster_id=cluster_id,
        ignore_booking_ids=[*data.movable_booking_ids, *released_ids], extra_blocks=extra_blocks,
    )  # fmt: skip
    data.problem = MatchProblem(
        machines=tuple(machine_specs), orders=tuple(specs), horizon_min=horizon.minutes,
        weights=weights, objective_mode=ObjectiveMode.COST,
    )  # fmt: skip
    return data
