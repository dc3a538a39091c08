"""A match run's answer written back in one transaction: the run's orders locked (each
still in the pool), the old proposals superseded, the new ones proposed where the machine
still offers the time and nobody booked it during the solve, orders that were re-matched
whole released from their confirmed steps, order statuses, and the steps left out."""

from __future__ import annotations

from sqlmodel import Session, col, select

from app.bookings import flows as booking_flows
from app.bookings.service import collision
from app.machines.availability import offered_spans
from app.matching_runs.adapter import MatchInput
from app.orders import service as orders
from matching import Assignment, MatchResult
from models import Booking, BookingState, MatchRun, MatchRunUnmatched, Order, User


class InputsChanged(Exception):
    """The market moved while the solver ran; run again."""


def lock_pool_orders(session: Session, data: MatchInput) -> dict[int, Order]:
    """The run's orders, locked; each must still be in the pool."""
    order_ids = [o.id for o in data.orders.values()]
    if not order_ids:
        return {}
    current = {
        o.id: o
        for o in session.exec(
            select(Order).where(col(Order.id).in_(order_ids)).with_for_update()
        ).all()
        if o.id is not None
    }
    for key in data.orders:
        row = current.get(int(key))
        if row is None or row.status not in orders.POOL_STATES:
            raise InputsChanged(f"order {key} left the pool during the solve")
    return current


def locked_bookings(session: Session, ids: list[int]) -> list[Booking]:
    if not ids:
        return []
    return list(
        session.exec(
            select(Booking)
            .where(col(Booking.id).in_(ids))
            .order_by(col(Booking.id))
            .with_for_update()
        ).all()
    )


def propose_all(
    session: Session,
    data: MatchInput,
    current: dict[int, Order],
    assignments: list[Assignment],
    note: str,
    user: User | None,
) -> None:
    for a in assignments:
        machine = data.machines[a.machine_id]
        order = current[int(a.order_id)]
        start, end = data.horizon.at(a.start_min), data.horizon.at(a.end_min)
        assert machine.id is not None and order.id is not None
        if not any(
            s <= start and end <= e for s, e in offered_spans(session, machine.id, start, end)
        ):
            raise InputsChanged(f"machine {machine.id} no longer offers {start.isoformat()}")
        if collision(session, machine.id, start, end) is not None:
            raise InputsChanged(
                f"machine {machine.id} was booked at {start.isoformat()} during the solve"
            )
        booking_flows.propose(
            session, machine=machine, order_id=order.id, buyer_org_id=order.buyer_org_id,
            operation_id=int(a.operation_id), start_at=start, end_at=end,
            price_fen=a.price_fen, note=note, user=user,
        )  # fmt: skip


def write_result(
    session: Session,
    run: MatchRun,
    data: MatchInput,
    result: MatchResult,
    user: User | None,
    whole: tuple[MatchInput, MatchResult] | None = None,
) -> None:
    """Supersede, propose, move order statuses, record what was left out (flush only).
    With ``whole``, the orders that pass placed anew release their confirmed steps and
    take its proposals instead of their unmatched lines."""
    assert run.id is not None
    note = f"match run {run.id}"
    current = lock_pool_orders(session, data)
    old = locked_bookings(session, data.movable_booking_ids)
    for booking in old:  # the old proposals must still be proposed
        if booking.state != BookingState.proposed.value:
            raise InputsChanged(f"proposal {booking.id} was answered during the solve")
    for booking in old:
        booking_flows.apply(
            session, booking=booking, action="supersede", reason=f"superseded by {note}",
            sync_order=False,
        )  # fmt: skip
    session.flush()  # free their slots before the new proposals take them
    run.superseded = len(old)
    propose_all(session, data, current, list(result.assignments), note, user)
    run.proposals = len(result.assignments)

    renewed: set[str] = set()
    if whole is not None:
        w_data, w_result = whole
        renewed = {a.order_id for a in w_result.assignments}
        reason = f"{note}: the missing steps did not fit around it; the order was re-matched whole"
        for key in sorted(renewed):
            for booking in locked_bookings(session, w_data.released.get(key, [])):
                if booking.state != BookingState.confirmed.value:
                    raise InputsChanged(f"booking {booking.id} changed during the solve")
                booking_flows.apply(
                    session, booking=booking, action="release", reason=reason, sync_order=False
                )
        session.flush()
        assignments = [a for a in w_result.assignments if a.order_id in renewed]
        propose_all(session, w_data, current, assignments, f"{note} (whole order)", user)
        run.proposals += len(assignments)
    for key in data.orders:  # every re-planned order's status follows its bookings
        orders.sync_status(session, order_id=int(key), note=note)
    unmatched = [u for u in result.unassigned if u.order_id not in renewed]
    for u in unmatched:
        session.add(MatchRunUnmatched(
            run_id=run.id, order_id=int(u.order_id), operation_id=int(u.operation_id),
            reason=str(u.reason), detail=u.detail[:500],
        ))  # fmt: skip
    run.unmatched = len(unmatched)
    session.flush()
