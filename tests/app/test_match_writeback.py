"""A match run's write-back: per order, in batches; an order whose inputs changed during
the solve is skipped and stays in the pool, the run succeeds and reports it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from sqlalchemy import event
from sqlmodel import Session, col, select

import app.matching_runs.service as matching_runs
from app.bookings.flows import create_lease, transition_booking
from app.config import Settings
from app.matching_runs.service import list_unmatched, run_matching
from app.matching_runs.writeback import INPUTS_CHANGED
from app.matching_runs.writeback import write_result as real_write
from matching import MatchProblem, MatchResult
from matching import solve as real_solve
from models import Booking, MatchRun, Order, Role
from models.booking import LeaseCreate
from tests.factories import hours_from_now, make_user
from tests.factories_matching import Market, make_market, make_order


def run(session: Session, market: Market, settings: Settings) -> MatchRun:
    return run_matching(
        session=session, user=None, cluster_id=market.cluster.id, time_limit_s=1,
        settings=settings,
    )  # fmt: skip


def proposed(session: Session, order: Order) -> list[Booking]:
    return list(
        session.exec(
            select(Booking).where(Booking.order_id == order.id, Booking.state == "proposed")
        ).all()
    )


def solve_then(action: Callable[[MatchProblem, MatchResult], None]) -> Callable[..., MatchResult]:
    """The real solver, then ``action`` — what the market did while it ran."""

    def wrapped(problem: MatchProblem, **kw: object) -> MatchResult:
        result = real_solve(problem, **kw)  # type: ignore[arg-type]
        action(problem, result)
        return result

    return wrapped


@pytest.fixture
def market(session: Session) -> Market:
    m = make_market(session, machines=3, rates=(9000, 12000, 15000))
    for machine in m.machines:
        machine.leasable = True
        session.add(machine)
    session.commit()
    return m


def test_a_lease_booked_during_the_solve_requeues_only_the_orders_it_hits(
    session: Session, market: Market, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    orders = [make_order(session, buyer=market.buyer) for _ in range(4)]
    session.commit()
    renter = make_user(session, roles=(Role.buyer,))
    hit: set[str] = set()

    def lease_the_first_placed_machine(_problem: MatchProblem, result: MatchResult) -> None:
        machine_id = result.assignments[0].machine_id
        hit.update(a.order_id for a in result.assignments if a.machine_id == machine_id)
        create_lease(session=session, user=renter, data=LeaseCreate(
            machine_id=int(machine_id), start_at=hours_from_now(2), end_at=hours_from_now(50)))  # fmt: skip

    monkeypatch.setattr(matching_runs, "solve", solve_then(lease_the_first_placed_machine))
    done = run(session, market, settings)

    assert done.status == "succeeded", done.error
    assert done.requeued == len(hit) >= 1
    lines = list_unmatched(session=session, run_id=done.id)  # type: ignore[arg-type]
    assert {str(u.order_id) for u in lines if u.reason == INPUTS_CHANGED} == hit
    assert all("booked" in u.detail for u in lines if u.reason == INPUTS_CHANGED)
    for order in orders:
        session.refresh(order)
        if str(order.id) in hit:  # left as it was: open, in the pool for the next run
            assert proposed(session, order) == [] and order.status == "open"
        else:
            assert len(proposed(session, order)) == 1 and order.status == "matched"
    assert done.proposals == len(orders) - len(hit)
    # the next run places what was requeued, around the lease
    monkeypatch.setattr(matching_runs, "solve", real_solve)
    again = run(session, market, settings)
    assert again.status == "succeeded" and again.requeued == 0
    for order in orders:
        assert len(proposed(session, order)) == 1


def test_a_proposal_answered_during_the_solve_is_left_as_answered(
    session: Session, market: Market, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = make_order(session, buyer=market.buyer), make_order(session, buyer=market.buyer)
    session.commit()
    assert run(session, market, settings).proposals == 2
    (old,) = proposed(session, first)

    def owner_accepts(_problem: MatchProblem, _result: MatchResult) -> None:
        transition_booking(session=session, user=market.owner, booking_id=old.id, action="accept")  # type: ignore[arg-type]

    monkeypatch.setattr(matching_runs, "solve", solve_then(owner_accepts))
    done = run(session, market, settings)

    assert done.status == "succeeded" and done.requeued == 1
    session.refresh(old)
    assert old.state == "confirmed"  # the owner's answer stands, nothing superseded it
    assert proposed(session, first) == []
    (renewed,) = proposed(session, second)
    assert renewed.id != old.id  # the other order was re-planned as usual


def test_an_order_cancelled_during_the_solve_is_skipped(
    session: Session, market: Market, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone, kept = make_order(session, buyer=market.buyer), make_order(session, buyer=market.buyer)
    session.commit()

    def buyer_cancels(_problem: MatchProblem, _result: MatchResult) -> None:
        row = session.get(Order, gone.id)
        assert row is not None
        row.status = "cancelled"  # type: ignore[assignment]  # as if by another request
        session.add(row)
        session.commit()

    monkeypatch.setattr(matching_runs, "solve", solve_then(buyer_cancels))
    done = run(session, market, settings)
    assert done.status == "succeeded" and done.requeued == 1 and done.proposals == 1
    assert proposed(session, gone) == [] and len(proposed(session, kept)) == 1


def _statements_of_a_run(
    session: Session, market: Market, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, MatchRun]:
    """(statements the write-back sent, the run)."""
    sent: list[str] = []
    writing = {"on": False}

    def count(*args: object) -> None:
        if writing["on"]:
            sent.append(str(args[2]))

    def write(*args: object, **kw: object) -> object:
        writing["on"] = True
        try:
            return real_write(*args, **kw)  # type: ignore[arg-type]
        finally:
            writing["on"] = False

    monkeypatch.setattr(matching_runs, "write_result", write)
    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", count)
    try:
        done = run(session, market, settings)
    finally:
        event.remove(engine, "before_cursor_execute", count)
        monkeypatch.setattr(matching_runs, "write_result", real_write)
    return len(sent), done


def test_the_write_back_does_not_grow_statement_by_statement(
    session: Session, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    market = make_market(session, machines=12)
    two = [
        make_order(session, buyer=market.buyer, operations=[{}, {"std_duration_min": 60}])
        for _ in range(2)
    ]
    session.commit()
    small, a = _statements_of_a_run(session, market, settings, monkeypatch)
    for order in two:  # out of the pool: the second run plans ten new orders only
        order.status = "cancelled"  # type: ignore[assignment]
        session.add(order)
    for _ in range(10):
        make_order(session, buyer=market.buyer, operations=[{}, {"std_duration_min": 60}])
    session.commit()
    large, b = _statements_of_a_run(session, market, settings, monkeypatch)
    assert (a.proposals, b.proposals, a.orders_in, b.orders_in) == (4, 20, 2, 10)
    assert large == small  # one batch: the same statements for 2 orders or 10


def test_batches_write_the_same_as_one_transaction(
    session: Session, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    market = make_market(session, machines=3)
    orders = [make_order(session, buyer=market.buyer) for _ in range(5)]
    session.commit()
    one = run(session, market, settings.model_copy(update={"match_write_batch_orders": 1}))
    placed = {o.id: [(b.machine_id, b.start_at) for b in proposed(session, o)] for o in orders}
    again = run(session, market, settings)  # re-plans the same orders in one batch
    assert (one.status, again.status) == ("succeeded", "succeeded")
    assert one.proposals == again.proposals == again.superseded == 5
    assert {
        o.id: [(b.machine_id, b.start_at) for b in proposed(session, o)] for o in orders
    } == placed
    replaced = session.exec(select(Booking).where(col(Booking.reason).startswith("superseded by")))
    assert len(replaced.all()) == 5
    assert one.write_seconds is not None and one.write_seconds >= 0


def test_an_order_may_take_the_old_place_of_one_in_a_later_batch(
    session: Session, market: Market, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = make_order(session, buyer=market.buyer), make_order(session, buyer=market.buyer)
    session.commit()
    one_by_one = settings.model_copy(update={"match_write_batch_orders": 1})
    run(session, market, one_by_one)
    (old_a,), (old_b,) = proposed(session, a), proposed(session, b)

    def swapped(problem: MatchProblem, **kw: object) -> MatchResult:
        got = real_solve(problem, **kw)  # type: ignore[arg-type]
        x, y = sorted(got.assignments, key=lambda g: int(g.order_id))
        moved = (
            dataclasses.replace(x, machine_id=y.machine_id, start_min=y.start_min, end_min=y.end_min,
                                price_fen=y.price_fen),
            dataclasses.replace(y, machine_id=x.machine_id, start_min=x.start_min, end_min=x.end_min,
                                price_fen=x.price_fen),
        )  # fmt: skip
        return dataclasses.replace(got, assignments=moved)

    monkeypatch.setattr(matching_runs, "solve", swapped)
    done = run(session, market, one_by_one)  # a's batch comes first, b's old place is a's now
    assert done.status == "succeeded" and done.requeued == 0, done.error
    (new_a,), (new_b,) = proposed(session, a), proposed(session, b)
    assert (new_a.machine_id, new_a.start_at) == (old_b.machine_id, old_b.start_at)
    assert (new_b.machine_id, new_b.start_at) == (old_a.machine_id, old_a.start_at)


def test_no_transaction_is_held_while_the_solver_runs(
    session: Session, market: Market, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_order(session, buyer=market.buyer, operations=[{}, {"std_duration_min": 60}])
    session.commit()
    seen: list[bool] = []
    monkeypatch.setattr(
        matching_runs, "solve", solve_then(lambda *_: seen.append(session.in_transaction()))
    )
    assert run(session, market, settings).proposals == 2
    assert seen == [False]  # the pool was read, its transaction ended, then the solve
