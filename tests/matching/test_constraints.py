"""Each rule with a tiny instance where it is satisfied and one where it binds."""

from __future__ import annotations

import pytest

from matching import solve
from matching.domain import MatchResult, ObjectiveMode, Reason, Weights
from matching.validation import check_result

from .builders import HANGZHOU, NINGBO, machine, op, order, problem


def run(p, t: float = 2.0) -> MatchResult:  # type: ignore[no-untyped-def]
    res = solve(p, time_limit_s=t)
    assert check_result(p, res) == []
    return res


def reason_of(res: MatchResult, op_id: str) -> Reason:
    return next(u.reason for u in res.unassigned if u.operation_id == op_id)


class TestCapabilityMatch:
    @pytest.mark.parametrize(
        ("m_kw", "o_kw"),
        [
            ({"process": "turn"}, {}),
            ({"materials": frozenset({"steel"})}, {}),
            ({"envelope": (50, 50, 50)}, {}),
            ({"tolerance": 0.1}, {}),
            ({}, {"certs": frozenset({"iso13485"})}),
        ],
        ids=["process", "material", "envelope", "tolerance", "certification"],
    )
    def test_violated(self, m_kw: dict, o_kw: dict) -> None:  # type: ignore[type-arg]
        res = run(problem([machine(**m_kw)], [order(ops=(op(**o_kw),))]))
        assert not res.assignments
        assert reason_of(res, "op1") is Reason.NO_ELIGIBLE_MACHINE

    def test_satisfied(self) -> None:
        res = run(problem([machine(process="turn", id="lathe"), machine()], [order()]))
        assert [a.machine_id for a in res.assignments] == ["m1"]

    def test_envelope_rotates(self) -> None:
        res = run(
            problem([machine(envelope=(300, 400, 500))], [order(ops=(op(envelope=(450, 10, 10)),))])
        )
        assert len(res.assignments) == 1


class TestAvailability:
    def test_runs_inside_one_free_interval(self) -> None:
        # 60 min do not fit into either 40-minute piece, although 80 minutes are free
        res = run(problem([machine(free=((0, 40), (41, 81)))], [order()]))
        assert reason_of(res, "op1") is Reason.NO_FREE_INTERVAL

    def test_satisfied(self) -> None:
        res = run(problem([machine(free=((0, 40), (100, 200)))], [order()]))
        a = res.assignments[0]
        assert 100 <= a.start_min and a.end_min <= 200


class TestNoOverlap:
    def test_two_fit_one_after_the_other(self) -> None:
        ops = [order(id=f"r{i}", ops=(op(id=f"op{i}"),)) for i in range(2)]
        res = run(problem([machine(free=((0, 120),))], ops))
        a, b = sorted(res.assignments, key=lambda x: x.start_min)
        assert a.end_min <= b.start_min

    def test_only_one_fits_other_displaced(self) -> None:
        ops = [
            order(id=f"r{i}", ops=(op(id=f"op{i}"),), penalty=10_000 * (i + 1)) for i in range(2)
        ]
        res = run(problem([machine(free=((0, 100),))], ops))
        assert [a.operation_id for a in res.assignments] == ["op1"]  # the higher penalty wins
        assert reason_of(res, "op0") is Reason.DISPLACED


class TestReleaseAndDue:
    def test_release(self) -> None:
        res = run(problem([machine()], [order(release=300)]))
        assert res.assignments[0].start_min >= 300

    def test_hard_due_violated(self) -> None:
        res = run(problem([machine(free=((500, 1000),))], [order(due=400, hard=True)]))
        assert reason_of(res, "op1") is Reason.NO_FREE_INTERVAL

    def test_hard_due_satisfied(self) -> None:
        res = run(problem([machine()], [order(due=100, hard=True)]))
        assert res.assignments[0].end_min <= 100

    def test_soft_due_costs_tardiness(self) -> None:
        res = run(problem([machine(free=((500, 1000),))], [order(due=400, tardiness=7)]))
        a = res.assignments[0]
        assert a.tardiness_fen == 7 * (a.end_min - 400)


class TestPrecedenceWithTransport:
    def test_second_step_waits_for_transport(self) -> None:
        ms = [
            machine(id="a", process="mill3"),
            machine(id="b", process="anodize", site=HANGZHOU, materials=frozenset({"al"})),
        ]
        o = order(ops=(op(id="s1"), op(id="s2", process="anodize")))
        res = run(problem(ms, [o]))
        s1, s2 = sorted(res.assignments, key=lambda x: x.start_min)
        assert s2.start_min >= s1.end_min + 30 + 120  # fixed + ~130 km at 60 km/h
        assert s1.transport_fen > 0

    def test_all_or_nothing(self) -> None:
        ms = [machine(id="a")]  # nobody anodizes
        o = order(ops=(op(id="s1"), op(id="s2", process="anodize")))
        res = run(problem(ms, [o]))
        assert not res.assignments
        assert reason_of(res, "s2") is Reason.NO_ELIGIBLE_MACHINE
        assert reason_of(res, "s1") is Reason.NO_ELIGIBLE_MACHINE


class TestMinimumBookingAndSpeed:
    def test_min_booking_pads(self) -> None:
        res = run(problem([machine(min_booking=240)], [order()]))
        a = res.assignments[0]
        assert a.end_min - a.start_min == 240
        assert a.price_fen == 240 * 6000 // 60

    def test_speed_factor(self) -> None:
        res = run(problem([machine(speed=1.5)], [order()]))
        assert res.assignments[0].end_min - res.assignments[0].start_min == 40


class TestBuyerLimits:
    def test_too_far(self) -> None:
        res = run(problem([machine(site=HANGZHOU)], [order(max_km=50)]))
        assert reason_of(res, "op1") is Reason.TOO_FAR

    def test_near_enough(self) -> None:
        res = run(
            problem([machine(site=HANGZHOU), machine(id="m2", site=NINGBO)], [order(max_km=50)])
        )
        assert res.assignments[0].machine_id == "m2"

    def test_over_budget(self) -> None:
        res = run(problem([machine(rate=60_000)], [order(budget=50_000)]))
        assert reason_of(res, "op1") is Reason.OVER_BUDGET

    def test_budget_on_multi_step_order(self) -> None:
        ms = [machine(id="a"), machine(id="b", process="anodize")]
        o = order(ops=(op(id="s1"), op(id="s2", process="anodize")), budget=11_000)
        res = run(problem(ms, [o]))
        assert reason_of(res, "s1") is Reason.OVER_BUDGET  # 6000 + 6000 > 11000

    def test_within_budget(self) -> None:
        res = run(problem([machine(rate=6000)], [order(budget=6000)]))
        assert res.assignments[0].price_fen == 6000


class TestSoftPreferences:
    def test_cheaper_machine_wins(self) -> None:
        res = run(
            problem([machine(id="dear", rate=9000), machine(id="cheap", rate=3000)], [order()])
        )
        assert res.assignments[0].machine_id == "cheap"

    def test_transport_counts(self) -> None:
        ms = [machine(id="far", rate=5000, site=HANGZHOU), machine(id="near", rate=6000)]
        res = run(problem(ms, [order()]))
        assert res.assignments[0].machine_id == "near"

    def test_reliability(self) -> None:
        ms = [machine(id="flaky", rate=5900, on_time=0.5), machine(id="solid", rate=6000)]
        w = Weights(unreliability_fen=1000)
        res = run(problem(ms, [order()], weights=w))
        assert res.assignments[0].machine_id == "solid"

    def test_same_cluster(self) -> None:
        ms = [machine(id="other", rate=5900, cluster="hz"), machine(id="home", rate=6000)]
        w = Weights(cross_cluster_fen=500)
        res = run(problem(ms, [order(cluster="ningbo")], weights=w))
        assert res.assignments[0].machine_id == "home"

    def test_owner_spread(self) -> None:
        ms = [machine(id="a", owner_id="A", rate=5000), machine(id="b", owner_id="B", rate=6000)]
        orders = [order(id=f"r{i}", ops=(op(id=f"op{i}"),)) for i in range(2)]
        res = run(problem(ms, orders, weights=Weights(owner_spread_fen=5000)))
        assert {a.machine_id for a in res.assignments} == {"a", "b"}


class TestModes:
    def test_makespan(self) -> None:
        ms = [machine(id="slow", speed=0.5, rate=1), machine(id="fast", rate=100_000)]
        res = run(problem(ms, [order()], mode=ObjectiveMode.MAKESPAN))
        assert res.assignments[0].machine_id == "fast"
        assert res.objective_fen == 60

    def test_tardiness(self) -> None:
        ms = [machine(id="late", free=((600, 1000),), rate=1), machine(id="ontime", rate=100_000)]
        res = run(problem(ms, [order(due=100)], mode=ObjectiveMode.TARDINESS))
        assert res.assignments[0].machine_id == "ontime"
        assert res.objective_fen == 0
