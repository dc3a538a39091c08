"""A match run's answer written back in batches of whole orders, in two phases.

Each batch is one short write transaction over a few hundred orders (other writers wait
for a batch, not for the run). Phase 1 locks the orders and their old proposals and
supersedes those of every order still as the solver saw it; an order that left the pool
or whose proposal was answered meanwhile is requeued. Phase 2 locks again and proposes
the new places where the machine still offers the time and nobody booked it during the
solve (orders re-matched whole are released from their confirmed steps here); an order
one of whose places was taken meanwhile — a lease, a withdrawn window, a requeued
order's proposal that stayed — is requeued too. A requeued order keeps what it had (or,
if phase 1 superseded its proposals, goes back to the pool open) and the run reports it:
``requeued``, one line per step with reason ``inputs_changed``. The run does not fail.

Every batch reads what it checks in a handful of statements whatever its size and writes
in bulk. A batch that lost a race at the database (PostgreSQL's exclusion constraint
caught a lease committed between the check and the insert) is rolled back and checked
again.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.bookings import flows as booking_flows
from app.bulk import insert_rows
from app.db import begin_write
from app.machines.availability import offered_spans_many
from app.matching_runs.adapter import MatchInput
from app.orders import service as orders
from matching import Assignment, MatchResult
from models import Booking, BookingState, MatchRunUnmatched, Order, User
from models.booking import holding

INPUTS_CHANGED = "inputs_changed"  # the reason recorded for a requeued order's steps
BATCH_RETRIES = 3


@dataclass
class WriteReport:
    proposals: int = 0
    superseded: int = 0
    unmatched: int = 0
    requeued: dict[str, str] = field(default_factory=dict)  # order key -> why
    batches: int = 0


@dataclass
class _Plan:
    """What the run wants for one order."""

    key: str
    data: MatchInput  # the input its placements refer to
    placements: list[Assignment]
    old: list[int]  # movable proposals to supersede
    released: list[int]  # confirmed steps to release (the whole-order pass)
    unassigned: list[tuple[str, str, str]]  # (operation key, reason, detail)
    operations: list[str] = field(default_factory=list)  # its steps in the run


def plan_orders(
    data: MatchInput,
    result: MatchResult,
    whole: tuple[MatchInput, MatchResult] | None,
    old_by_order: dict[str, list[int]],
) -> list[_Plan]:
    """Per order of the run, what to write (the whole-order pass's answer replaces the
    first pass's for the orders it placed)."""
    first: dict[str, list[Assignment]] = defaultdict(list)
    for a in result.assignments:
        first[a.order_id].append(a)
    renewed: dict[str, list[Assignment]] = defaultdict(list)
    w_data = None
    if whole is not None:
        w_data, w_result = whole
        for a in w_result.assignments:
            renewed[a.order_id].append(a)
    left: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for u in result.unassigned:
        left[u.order_id].append((u.operation_id, str(u.reason), u.detail))
    steps: dict[str, list[str]] = defaultdict(list)
    for op_key, op in data.operations.items():
        steps[str(op.order_id)].append(op_key)
    plans = []
    for key in sorted(data.orders, key=int):
        if key in renewed and w_data is not None:
            plan = _Plan(key, w_data, renewed[key], old_by_order.get(key, []),
                         w_data.released.get(key, []), [])  # fmt: skip
        else:
            plan = _Plan(key, data, first.get(key, []), old_by_order.get(key, []), [],
                         left.get(key, []))  # fmt: skip
        plan.operations = steps[key]
        plans.append(plan)
    return plans


def write_result(
    session: Session,
    run_id: int,
    data: MatchInput,
    result: MatchResult,
    user: User | None,
    whole: tuple[MatchInput, MatchResult] | None = None,
    *,
    batch_orders: int = 500,
    on_batch: Callable[[WriteReport], None] | None = None,
) -> WriteReport:
    """Write the answer, ``batch_orders`` orders per transaction (each committed;
    ``on_batch`` hears the totals after each)."""
    report = WriteReport()
    note = f"match run {run_id}"
    old_by_order = _old_proposals_by_order(session, data.movable_booking_ids)
    plans = plan_orders(data, result, whole, old_by_order)
    # a commit must not expire the input's rows (the machines): each would reload one by
    # one in the next batch; what a batch checks it re-reads, locked
    keep = session.expire_on_commit
    session.expire_on_commit = False
    try:
        size = max(1, batch_orders)
        # 1. the old proposals of every order still as the solver saw it, superseded, so
        #    that no order's new place is blocked by a proposal that is about to go
        for start in range(0, len(plans), size):
            begin_write(session)
            _supersede_batch(session, note, plans[start : start + size], report)
            session.commit()
        # 2. the new proposals, batch by batch; what collides now is really taken
        todo = [p for p in plans if p.key not in report.requeued]
        for start in range(0, len(todo), size):
            batch = todo[start : start + size]
            for attempt in range(BATCH_RETRIES):
                begin_write(session)
                try:
                    _propose_batch(session, run_id, note, batch, user, report)
                    session.commit()
                    break
                except IntegrityError:  # a booking committed between our check and insert
                    session.rollback()
                    if attempt == BATCH_RETRIES - 1:
                        raise
            report.batches += 1
            if on_batch is not None:
                on_batch(report)
        _record_requeued(session, run_id, plans, report)
    finally:
        session.expire_on_commit = keep
    return report


def _old_proposals_by_order(session: Session, ids: Sequence[int]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    if not ids:
        return out
    rows = session.exec(
        select(Booking.id, Booking.order_id).where(col(Booking.id).in_(list(ids)))
    ).all()
    for booking_id, order_id in rows:
        if booking_id is not None and order_id is not None:
            out[str(order_id)].append(booking_id)
    return out


def _locked_orders(session: Session, keys: Iterable[str]) -> dict[str, Order]:
    ids = [int(k) for k in keys]
    rows = session.exec(
        select(Order)
        .where(col(Order.id).in_(ids))
        .order_by(col(Order.id))
        .with_for_update()
        .execution_options(populate_existing=True)  # the rows as they are now, not as read
    ).all()
    return {str(o.id): o for o in rows}


def _locked_bookings(session: Session, ids: list[int]) -> dict[int, Booking]:
    if not ids:
        return {}
    rows = session.exec(
        select(Booking)
        .where(col(Booking.id).in_(ids))
        .order_by(col(Booking.id))
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    return {b.id: b for b in rows if b.id is not None}


def _span(plan: _Plan, a: Assignment) -> tuple[int, dt.datetime, dt.datetime]:
    horizon = plan.data.horizon
    return int(a.machine_id), horizon.at(a.start_min), horizon.at(a.end_min)


def _supersede_batch(session: Session, note: str, batch: list[_Plan], report: WriteReport) -> None:
    """Phase 1: lock the orders and their old proposals; an order that left the pool or
    whose proposal was answered is requeued, the others' old proposals superseded."""
    current = _locked_orders(session, (p.key for p in batch))
    bookings = _locked_bookings(session, [i for p in batch for i in p.old])
    old: list[Booking] = []
    for p in batch:
        order = current.get(p.key)
        if order is None or order.status not in orders.POOL_STATES:
            report.requeued[p.key] = "the order left the pool during the solve"
        elif any((b := bookings.get(i)) is None or b.state != BookingState.proposed for i in p.old):
            report.requeued[p.key] = "one of its proposals was answered during the solve"
        else:
            old += [bookings[i] for i in p.old]
    booking_flows.supersede_proposals(session, old, reason=f"superseded by {note}")
    report.superseded += len(old)


def _propose_batch(
    session: Session,
    run_id: int,
    note: str,
    batch: list[_Plan],
    user: User | None,
    report: WriteReport,
) -> None:
    """Phase 2: lock again, check what changed since, propose in bulk, move statuses."""
    current = _locked_orders(session, (p.key for p in batch))
    bookings = _locked_bookings(session, [i for p in batch for i in p.released])
    skipped: dict[str, str] = {}
    for p in batch:
        order = current.get(p.key)
        if order is None or order.status not in orders.POOL_STATES:
            skipped[p.key] = "the order left the pool during the solve"
        elif any(
            (b := bookings.get(i)) is None or b.state != BookingState.confirmed for i in p.released
        ):
            skipped[p.key] = "one of its confirmed steps changed during the solve"
    _skip_colliding(session, batch, skipped)

    survivors = [p for p in batch if p.key not in skipped]
    reason = f"{note}: the missing steps did not fit around it; the order was re-matched whole"
    for p in survivors:
        for i in p.released:
            booking_flows.apply(
                session, booking=bookings[i], action="release", reason=reason, sync_order=False
            )
    session.flush()  # free their slots before the new proposals take them
    proposals = []
    for p in survivors:
        whole = bool(p.released)
        order = current[p.key]
        assert order.id is not None
        for a in p.placements:
            machine = p.data.machines[a.machine_id]
            _, start, end = _span(p, a)
            proposals.append(booking_flows.Proposal(
                machine=machine, order_id=order.id, buyer_org_id=order.buyer_org_id,
                operation_id=int(a.operation_id), start_at=start, end_at=end,
                price_fen=a.price_fen, note=f"{note} (whole order)" if whole else note,
            ))  # fmt: skip
    written = booking_flows.propose_many(session, proposals, user=user)
    # every order of the batch: the skipped ones lost their old proposals in phase 1
    orders.sync_statuses(session, order_ids=[int(p.key) for p in batch], note=note)
    _unmatched_lines(
        session, run_id, ((p.key, op, r, d) for p in survivors for op, r, d in p.unassigned)
    )
    session.flush()
    report.proposals += written
    report.unmatched += sum(len(p.unassigned) for p in survivors)
    report.requeued.update(skipped)


def _record_requeued(
    session: Session, run_id: int, plans: list[_Plan], report: WriteReport
) -> None:
    """A line per step of every requeued order, with why (one small transaction)."""
    if not report.requeued:
        return
    begin_write(session)
    _unmatched_lines(
        session, run_id,
        ((p.key, op, INPUTS_CHANGED, f"requeued: {report.requeued[p.key]}")
         for p in plans if p.key in report.requeued for op in p.operations),
    )  # fmt: skip
    session.commit()


def _skip_colliding(session: Session, batch: list[_Plan], skipped: dict[str, str]) -> None:
    """Skip the orders a placement of which is no longer offered or is held by a booking
    that stays (made during the solve, or an old proposal of an order skipped here)."""
    spans = {p.key: [_span(p, a) for a in p.placements] for p in batch}
    every = [s for ss in spans.values() for s in ss]
    if not every:
        return
    machine_ids = sorted({m for m, _, _ in every})
    lo, hi = min(s for _, s, _ in every), max(e for _, _, e in every)
    offered = offered_spans_many(session, machine_ids, lo, hi)
    held: dict[int, list[tuple[int, dt.datetime, dt.datetime]]] = defaultdict(list)
    for i, m, s, e in session.exec(
        select(Booking.id, Booking.machine_id, Booking.start_at, Booking.end_at).where(
            col(Booking.machine_id).in_(machine_ids), holding(lo, hi)
        )
    ).all():
        if i is not None:
            held[m].append((i, s, e))
    for p in batch:
        if p.key in skipped:
            continue
        for m, s, e in spans[p.key]:
            if not any(a <= s and e <= b for a, b in offered.get(m, [])):
                skipped[p.key] = f"machine {m} no longer offers {s.isoformat()}"
                break
    while True:  # an order skipped keeps its bookings: they may now block another
        moving = {i for p in batch if p.key not in skipped for i in (*p.old, *p.released)}
        blocked = False
        for p in batch:
            if p.key in skipped:
                continue
            for m, s, e in spans[p.key]:
                hit = next(
                    (i for i, bs, be in held.get(m, ()) if bs < e and s < be and i not in moving),
                    None,
                )
                if hit is not None:
                    skipped[p.key] = f"machine {m} was booked at {s.isoformat()} during the solve"
                    blocked = True
                    break
        if not blocked:
            return


def _unmatched_lines(
    session: Session, run_id: int, lines: Iterable[tuple[str, str, str, str]]
) -> None:
    """The run's lines for steps left out: (order key, operation key, reason, detail)."""
    insert_rows(
        session,
        MatchRunUnmatched,
        [
            {
                "run_id": run_id,
                "order_id": int(order),
                "operation_id": int(op),
                "reason": reason,
                "detail": detail[:500],
            }  # fmt: skip
            for order, op, reason, detail in lines
        ],
    )
