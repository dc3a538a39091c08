from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import NoReturn

import pytest
from sqlmodel import Session, col, func, select

import app.matching_runs.service as matching_runs
from app.bookings.flows import transition_booking
from app.config import Settings
from app.errors import PermissionDenied
from app.matching_runs.expiry import expire_proposals
from app.matching_runs.service import list_unmatched, run_matching
from matching import Assignment, MatchProblem, MatchResult, SolveStatus
from models import Booking, MatchRun, Order, OrderEvent, Organization, Role, User, utcnow
from tests.factories import make_cluster, make_user
from tests.factories_matching import Market, make_market, make_order


def count(session: Session, model: type) -> int:
    return session.exec(select(func.count()).select_from(model)).one()


def proposals(session: Session, order: Order) -> list[Booking]:
    return list(session.exec(
        select(Booking).where(Booking.order_id == order.id, Booking.state == "proposed").order_by(col(Booking.start_at))
    ).all())  # fmt: skip


def run_cluster(
    session: Session,
    market: Market,
    settings: Settings,
    *,
    user: User | None = None,
    time_limit_s: float = 1,
    progress: Callable[[dict[str, object]], None] | None = None,
) -> MatchRun:
    """A matching run over the market's cluster, by the system unless ``user`` is given."""
    return run_matching(
        session=session,
        user=user,
        cluster_id=market.cluster.id,
        time_limit_s=time_limit_s,
        settings=settings,
        progress=progress,
    )


def matched_order(session: Session, market: Market, settings: Settings) -> tuple[Order, Booking]:
    """A new one-step order, a run over the cluster, and the order's one proposal."""
    order = make_order(session, buyer=market.buyer)
    run_cluster(session, market, settings)
    (proposal,) = proposals(session, order)
    return order, proposal


@pytest.fixture
def market(session: Session) -> Market:
    return make_market(session)


class TestRunMatching:
    def test_writes_proposals_and_the_run(
        self, session: Session, market: Market, settings: Settings
    ) -> None:
        order = make_order(session, buyer=market.buyer, operations=[{}, {"std_duration_min": 60}])
        run = run_cluster(session, market, settings, user=market.operator, time_limit_s=2)
        assert (run.status, run.scope, run.proposals, run.unmatched) == (
            "succeeded",
            "cluster",
            2,
            0,
        )
        assert (run.orders_in, run.operations_in, run.machines_in, run.free_intervals_in) == (
            1,
            2,
            2,
            2,
        )
        assert (
            run.objective_fen is not None
            and run.bound_fen is not None
            and run.finished_at is not None
        )
        booked = proposals(session, order)
        assert len(booked) == 2 and booked[0].end_at <= booked[1].start_at
        assert all(b.kind == "service" and b.org_id == market.buyer.org_id for b in booked)
        cheap = market.machines[0]  # 90 yuan/h beats 120 yuan/h: 2 h = 18000 fen
        assert booked[0].machine_id == cheap.id and booked[0].price_fen == 18000
        session.refresh(order)
        assert order.status == "matched"
        states = session.exec(select(OrderEvent.state).where(OrderEvent.order_id == order.id)).all()
        assert "matched" in states and states.count("booking_proposed") == 2

    def test_progress_events_reach_the_caller(
        self, session: Session, market: Market, settings: Settings
    ) -> None:
        make_order(session, buyer=market.buyer, operations=[{}, {"std_duration_min": 60}])
        events: list[dict[str, object]] = []
        run = run_cluster(
            session, market, settings, user=market.operator, time_limit_s=2, progress=events.append
        )
        assert run.status == "succeeded"
        phases = [e["phase"] for e in events]
        assert phases[0] == "greedy" and phases[-1] == "done"
        assert events[-1]["objective"] == run.objective_fen and events[-1]["bound"] == run.bound_fen
        assert all(isinstance(e["seconds"], float) for e in events)

    def test_unmatched_reasons_are_recorded(
        self, session: Session, market: Market, settings: Settings
    ) -> None:
        make_order(
            session,
            buyer=market.buyer,
            operations=[{"process_key": "turning", "material_key": "steel"}],
        )
        make_order(session, buyer=market.buyer, budget_fen=100)
        run = run_cluster(session, market, settings, time_limit_s=2)
        assert run.status == "succeeded" and run.unmatched == 2
        assert run.id is not None
        reasons = sorted(u.reason for u in list_unmatched(session=session, run_id=run.id))
        assert reasons == ["no_eligible_machine", "over_budget"]

    def test_who_may_run(self, session: Session, market: Market, settings: Settings) -> None:
        other = make_market(session)
        with pytest.raises(PermissionDenied):
            run_matching(
                session=session,
                user=market.operator,
                cluster_id=other.cluster.id,
                settings=settings,
            )
        # an operator naming no cluster runs its own (runs are per cluster by default)
        own = run_matching(
            session=session, user=market.operator, cluster_id=None, time_limit_s=1,
            settings=settings,
        )  # fmt: skip
        assert (own.scope, own.cluster_id) == ("cluster", market.cluster.id)
        org = session.get(Organization, market.operator.org_id)
        make_cluster(session, operator_org=org)  # now it runs two: it must choose
        with pytest.raises(PermissionDenied):
            run_matching(session=session, user=market.operator, cluster_id=None, settings=settings)
        with pytest.raises(PermissionDenied):
            run_matching(
                session=session, user=market.buyer, cluster_id=market.cluster.id, settings=settings
            )
        admin = make_user(session, roles=(Role.admin,))
        run = run_matching(
            session=session, user=admin, cluster_id=None, time_limit_s=1, settings=settings
        )
        assert (run.status, run.scope) == ("succeeded", "market")

    def test_a_result_with_violations_is_not_persisted(
        self, session: Session, market: Market, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        order = make_order(session, buyer=market.buyer)

        def bad_solve(problem: MatchProblem, **_kw: object) -> MatchResult:
            o = problem.orders[0]
            a = Assignment(
                o.operations[0].id, o.id, problem.machines[0].id, -500, -380, 1
            )  # outside free time
            return MatchResult(SolveStatus.FEASIBLE, (a,), (), 1, 1, 0.0, 0.01)

        monkeypatch.setattr(matching_runs, "solve", bad_solve)
        before = count(session, Booking)
        run = run_cluster(session, market, settings)
        assert run.status == "failed" and "hard rule" in run.error and run.proposals == 0
        assert count(session, Booking) == before
        session.refresh(order)
        assert order.status == "open"
        assert session.get(MatchRun, run.id) is not None

    def test_a_failing_solver_leaves_no_proposals(
        self, session: Session, market: Market, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        order, old = matched_order(session, market, settings)

        def boom(problem: MatchProblem, **_kw: object) -> NoReturn:
            raise RuntimeError("solver crashed")

        monkeypatch.setattr(matching_runs, "solve", boom)
        run = run_cluster(session, market, settings)
        assert run.status == "failed" and "solver crashed" in run.error
        assert [b.id for b in proposals(session, order)] == [old.id]  # the old proposal stands
        assert count(session, Booking) == 1


class TestProposals:
    def test_accept_decline_and_rematch_without_moving_confirmed(
        self, session: Session, market: Market, settings: Settings
    ) -> None:
        a = make_order(session, buyer=market.buyer)
        b = make_order(session, buyer=market.buyer)
        run_cluster(session, market, settings)
        (pa,), (pb,) = proposals(session, a), proposals(session, b)
        assert pa.id is not None and pb.id is not None
        confirmed = transition_booking(
            session=session, user=market.owner, booking_id=pa.id, action="accept"
        )
        snapshot = (
            confirmed.id,
            confirmed.machine_id,
            confirmed.start_at,
            confirmed.end_at,
            confirmed.state,
        )
        transition_booking(
            session=session, user=market.owner, booking_id=pb.id, action="decline", reason="tooling"
        )
        run = run_cluster(session, market, settings)
        assert run.status == "succeeded" and run.orders_in == 1 and run.proposals == 1
        again = session.get(Booking, confirmed.id)
        assert again is not None
        assert (again.id, again.machine_id, again.start_at, again.end_at, again.state) == snapshot
        (pb2,) = proposals(session, b)
        assert pb2.id != pb.id
        assert not (
            pb2.machine_id == confirmed.machine_id
            and pb2.start_at < confirmed.end_at
            and confirmed.start_at < pb2.end_at
        )
        session.refresh(b)
        assert b.status == "matched"

    def test_unanswered_proposals_expire_and_return_to_the_pool(
        self, session: Session, market: Market, settings: Settings
    ) -> None:
        order, p = matched_order(session, market, settings)
        assert expire_proposals(session=session, now=utcnow(), settings=settings) == 0
        later = utcnow() + dt.timedelta(minutes=settings.proposal_ttl_minutes + 1)
        assert expire_proposals(session=session, now=later, settings=settings) == 1
        session.refresh(p)
        session.refresh(order)
        assert (p.state, order.status) == ("expired", "open")
        events = session.exec(select(OrderEvent.state).where(OrderEvent.order_id == order.id)).all()
        assert "booking_expired" in events and events[-1] == "open"
        run = run_cluster(session, market, settings)
        assert run.proposals == 1 and len(proposals(session, order)) == 1

    def test_a_rerun_supersedes_old_proposals(
        self, session: Session, market: Market, settings: Settings
    ) -> None:
        order, old = matched_order(session, market, settings)
        run = run_cluster(session, market, settings)
        assert run.superseded == 1 and run.proposals == 1
        session.refresh(old)
        assert old.state == "cancelled" and "superseded" in old.reason
        assert len(proposals(session, order)) == 1
