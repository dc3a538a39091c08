"""The order lifecycle at the service level: steps confirmed as a whole, declines
remembered and answered at once, confirmed steps kept or the whole order re-matched,
start and completion rules, and cancelling an order as cancelling each booking."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from sqlmodel import Session, col, select

from app.bookings.flows import transition_booking
from app.config import Settings
from app.errors import LifecycleRuleBroken
from app.matching_runs.service import list_unmatched, run_matching
from app.orders.flows import cancel_order
from models import Booking, Machine, MatchRun, Order, OrderEvent, Payment
from tests.factories import hours_from_now, make_machine, make_window
from tests.factories_matching import Market, make_market, make_order

Clock = Callable[[dt.datetime], None]


@pytest.fixture
def market(session: Session) -> Market:
    return make_market(session)


def run(session: Session, market: Market, settings: Settings) -> MatchRun:
    result = run_matching(
        session=session,
        user=market.operator,
        cluster_id=market.cluster.id,
        time_limit_s=2,
        settings=settings,
    )
    assert result.status == "succeeded", result.error
    return result


def live(session: Session, order: Order) -> list[Booking]:
    """The order's proposed and held bookings, by step start."""
    return list(
        session.exec(
            select(Booking)
            .where(
                Booking.order_id == order.id,
                col(Booking.state).in_(("proposed", "confirmed", "in_progress", "done")),
            )
            .order_by(col(Booking.start_at))
        ).all()
    )


def act(session: Session, user: object, booking: Booking, action: str, reason: str = "") -> None:
    assert booking.id is not None
    transition_booking(
        session=session,
        user=user,  # type: ignore[arg-type]
        booking_id=booking.id,
        action=action,
        reason=reason,
    )


def events(session: Session, order: Order) -> list[str]:
    rows = session.exec(
        select(OrderEvent.state)
        .where(OrderEvent.order_id == order.id)
        .order_by(col(OrderEvent.at), col(OrderEvent.id))
    ).all()
    return list(rows)


class TestWholeOrder:
    def test_no_step_starts_until_every_step_is_confirmed(
        self, session: Session, market: Market, settings: Settings, clock: Clock
    ) -> None:
        order = make_order(session, buyer=market.buyer, operations=[{}, {}])
        run(session, market, settings)
        step1, step2 = live(session, order)
        act(session, market.owner, step2, "accept")  # allowed: an authorization only
        clock(step2.start_at)
        with pytest.raises(LifecycleRuleBroken, match="whole order"):
            act(session, market.owner, step2, "start")
        session.refresh(step2)
        assert step2.state == "confirmed"
        assert {p.kind for p in session.exec(select(Payment)).all()} <= {"authorize"}

    def test_a_decline_reopens_the_order_at_once(
        self, session: Session, market: Market, settings: Settings
    ) -> None:
        order = make_order(session, buyer=market.buyer, operations=[{}, {}])
        run(session, market, settings)
        session.refresh(order)
        assert order.status == "matched"
        step1, _ = live(session, order)
        act(session, market.owner, step1, "decline", reason="tooling is booked")
        session.refresh(order)
        assert order.status == "open"  # no periodic job needed
        assert events(session, order)[-2:] == ["booking_declined", "open"]


class TestRefusedPairs:
    def test_a_declined_machine_is_never_proposed_again_for_that_step(
        self, session: Session, market: Market, settings: Settings
    ) -> None:
        order = make_order(session, buyer=market.buyer)
        run(session, market, settings)
        [first] = live(session, order)
        act(session, market.owner, first, "decline", reason="no operator that night")
        run(session, market, settings)
        [second] = live(session, order)
        assert second.machine_id != first.machine_id
        act(session, market.owner, second, "decline", reason="maintenance")
        last = run(session, market, settings)
        assert live(session, order) == []
        assert last.id is not None
        [left_out] = list_unmatched(session=session, run_id=last.id)
        assert left_out.reason == "declined"

    def test_an_expired_pair_is_not_proposed_again(
        self, session: Session, market: Market, settings: Settings
    ) -> None:
        order = make_order(session, buyer=market.buyer)
        run(session, market, settings)
        [first] = live(session, order)
        later = first.created_at + dt.timedelta(minutes=settings.proposal_ttl_minutes + 1)
        run_matching(
            session=session, user=market.operator, cluster_id=market.cluster.id,
            time_limit_s=2, settings=settings, now=later,
        )  # fmt: skip
        session.refresh(first)
        assert first.state == "expired"
        assert all(b.machine_id != first.machine_id for b in live(session, order))


class TestRematch:
    def test_confirmed_steps_stay_where_they_still_fit(
        self, session: Session, market: Market, settings: Settings
    ) -> None:
        order = make_order(session, buyer=market.buyer, operations=[{}, {}])
        run(session, market, settings)
        step1, step2 = live(session, order)
        # leave room before step 2 (the matcher packed it right after step 1)
        step2.start_at, step2.end_at = hours_from_now(20), hours_from_now(22)
        session.add(step2)
        session.flush()
        act(session, market.owner, step2, "accept")
        act(session, market.owner, step1, "decline", reason="spindle repair")
        run(session, market, settings)
        new1, kept2 = live(session, order)
        assert kept2.id == step2.id and kept2.state == "confirmed"
        assert new1.state == "proposed" and new1.machine_id != step1.machine_id
        assert new1.end_at <= kept2.start_at

    def test_the_whole_order_is_rematched_when_the_step_no_longer_fits(
        self, session: Session, settings: Settings
    ) -> None:
        market = make_market(session, machines=1)
        late = make_machine(session, owner=market.owner, cluster_id=market.cluster.id,
                            hourly_rate_fen=15000)  # fmt: skip
        make_window(session, machine=late, start=hours_from_now(30), end=hours_from_now(60))
        order = make_order(session, buyer=market.buyer, operations=[{}, {}],
                           due=hours_from_now(100))  # fmt: skip
        run(session, market, settings)
        step1, step2 = live(session, order)
        assert step1.machine_id == step2.machine_id == market.machines[0].id
        act(session, market.owner, step2, "accept")
        act(session, market.owner, step1, "decline", reason="no material")
        run(session, market, settings)
        session.refresh(step2)
        assert step2.state == "cancelled" and "re-matched whole" in step2.reason
        new1, new2 = live(session, order)
        assert new1.machine_id == late.id  # the declined pair is not proposed again
        assert {new1.state, new2.state} == {"proposed"} and new1.end_at <= new2.start_at
        session.refresh(order)
        assert order.status == "matched"
        assert "booking_cancelled" in events(session, order)
        voids = session.exec(
            select(Payment).where(Payment.booking_id == step2.id, Payment.kind == "void")
        ).all()
        assert len(voids) == 1  # the released step's hold is given back


class TestStartAndComplete:
    def _confirmed(self, session: Session, market: Market, settings: Settings) -> list[Booking]:
        order = make_order(session, buyer=market.buyer, operations=[{}, {}])
        run(session, market, settings)
        steps = live(session, order)
        for b in steps:
            act(session, market.owner, b, "accept")
        return steps

    def test_no_start_before_the_early_start_allowance(
        self, session: Session, market: Market, settings: Settings, clock: Clock
    ) -> None:
        step1, _ = self._confirmed(session, market, settings)
        clock(step1.start_at - dt.timedelta(minutes=settings.early_start_minutes + 1))
        with pytest.raises(LifecycleRuleBroken, match="early start") as refused:
            act(session, market.owner, step1, "start")
        assert refused.value.field == "start_at"
        clock(step1.start_at - dt.timedelta(minutes=settings.early_start_minutes))
        act(session, market.owner, step1, "start")
        session.refresh(step1)
        assert step1.state == "in_progress" and step1.started_at is not None

    def test_a_step_starts_after_its_predecessor_is_done(
        self, session: Session, market: Market, settings: Settings, clock: Clock
    ) -> None:
        step1, step2 = self._confirmed(session, market, settings)
        clock(step2.start_at)
        with pytest.raises(LifecycleRuleBroken, match="precedence"):
            act(session, market.owner, step2, "start")
        act(session, market.owner, step1, "start")
        with pytest.raises(LifecycleRuleBroken, match="precedence"):
            act(session, market.owner, step2, "start")
        act(session, market.owner, step1, "complete")
        act(session, market.owner, step2, "start")  # the same site: no transport
        session.refresh(step2)
        assert step2.state == "in_progress"

    def test_goods_moving_between_sites_take_the_transport_time(
        self, session: Session, market: Market, settings: Settings, clock: Clock
    ) -> None:
        step1, step2 = self._confirmed(session, market, settings)
        far = session.get(Machine, step1.machine_id)
        assert far is not None
        other = make_machine(session, owner=market.owner, cluster_id=market.cluster.id,
                             lat=far.lat + 0.5, lon=far.lon)  # ~55 km north  # fmt: skip
        assert other.id is not None
        step2.machine_id = other.id  # assert on the rule, not on where the matcher put it
        session.add(step2)
        session.flush()
        clock(step2.start_at)
        act(session, market.owner, step1, "start")
        act(session, market.owner, step1, "complete")
        with pytest.raises(LifecycleRuleBroken, match="transport"):
            act(session, market.owner, step2, "start")  # 30 min handover + 55 km at 60 km/h
        clock(step2.start_at + dt.timedelta(minutes=90))
        act(session, market.owner, step2, "start")

    def test_no_completion_before_the_start(
        self, session: Session, market: Market, settings: Settings
    ) -> None:
        step1, _ = self._confirmed(session, market, settings)
        with pytest.raises(LifecycleRuleBroken, match="has not started") as refused:
            act(session, market.owner, step1, "complete")
        assert refused.value.status_code == 409


class TestCancelOrder:
    def test_cancelling_an_order_is_cancelling_each_booking(
        self, session: Session, market: Market, settings: Settings
    ) -> None:
        whole = make_order(session, buyer=market.buyer, operations=[{}, {}], title="whole")
        run(session, market, settings)
        for b in live(session, whole):
            act(session, market.owner, b, "accept")
        by_booking = make_order(session, buyer=market.buyer, operations=[{}, {}], title="each")
        run(session, market, settings)
        for b in live(session, by_booking):
            act(session, market.owner, b, "accept")

        held_whole = live(session, whole)
        assert whole.id is not None
        cancel_order(session=session, user=market.buyer, order_id=whole.id, reason="plan changed")
        for b in live(session, by_booking):
            act(session, market.buyer, b, "cancel", reason="plan changed")

        def trail(order: Order, held: list[Booking]) -> tuple[list[str], list[tuple[str, str]]]:
            booking_events = [e for e in events(session, order) if e.startswith("booking_")]
            money = sorted(
                (p.kind, p.purpose)
                for p in session.exec(
                    select(Payment).where(col(Payment.booking_id).in_([b.id for b in held]))
                ).all()
            )
            return booking_events, money

        each_held = list(
            session.exec(select(Booking).where(Booking.order_id == by_booking.id)).all()
        )
        assert trail(whole, held_whole) == trail(by_booking, each_held)
        assert events(session, whole)[-1] == "cancelled"
        assert all(b.state == "cancelled" for b in held_whole)
