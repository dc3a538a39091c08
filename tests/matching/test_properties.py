"""Every solve() output passes check_result (Hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matching import solve
from matching.domain import MatchProblem, ObjectiveMode, Weights
from matching.validation import check_result

from .builders import HANGZHOU, NINGBO, machine, op, order, problem

PROCESSES = ["mill3", "turn"]
SITES = [NINGBO, HANGZHOU]


@st.composite
def problems(draw: st.DrawFn) -> MatchProblem:
    machines = []
    for i in range(draw(st.integers(1, 4))):
        free = []
        t = draw(st.integers(0, 100))
        for _ in range(draw(st.integers(1, 3))):
            length = draw(st.integers(30, 400))
            free.append((t, t + length))
            t += length + draw(st.integers(1, 200))
        machines.append(
            machine(
                id=f"m{i}",
                owner_id=f"o{i % 2}",
                process=draw(st.sampled_from(PROCESSES)),
                free=tuple(free),
                rate=draw(st.integers(1000, 20000)),
                speed=draw(st.sampled_from([0.8, 1.0, 1.3])),
                min_booking=draw(st.sampled_from([0, 90])),
                site=draw(st.sampled_from(SITES)),
                on_time=draw(st.sampled_from([0.7, 1.0])),
            )
        )
    orders = []
    for k in range(draw(st.integers(1, 5))):
        n_ops = draw(st.integers(1, 2))
        ops = tuple(
            op(
                id=f"r{k}.{i}",
                process=draw(st.sampled_from(PROCESSES)),
                minutes=draw(st.integers(10, 200)),
            )
            for i in range(n_ops)
        )
        release = draw(st.integers(0, 300))
        orders.append(
            order(
                id=f"r{k}",
                ops=ops,
                release=release,
                due=release + draw(st.integers(50, 900)),
                hard=draw(st.booleans()),
                tardiness=draw(st.integers(0, 50)),
                penalty=draw(st.integers(1000, 200_000)),
                budget=draw(st.one_of(st.none(), st.integers(1000, 80_000))),
                max_km=draw(st.one_of(st.none(), st.just(50.0))),
                delivery=draw(st.sampled_from(SITES)),
            )
        )
    weights = Weights(
        owner_spread_fen=draw(st.sampled_from([0, 500])),
        unreliability_fen=draw(st.sampled_from([0, 1000])),
        cross_cluster_fen=draw(st.sampled_from([0, 300])),
    )
    mode = draw(st.sampled_from(list(ObjectiveMode)))
    return problem(machines, orders, horizon=2000, weights=weights, mode=mode)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_every_solution_validates(p: MatchProblem) -> None:
    res = solve(p, time_limit_s=0.5)
    assert check_result(p, res) == []
    assert res.bound_fen <= res.objective_fen
    placed = {a.operation_id for a in res.assignments}
    assert len(placed) == len(res.assignments)
