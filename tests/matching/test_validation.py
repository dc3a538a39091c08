"""check_result flags every broken hard rule and a wrong objective."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import pytest

from matching import solve
from matching.domain import (
    Assignment,
    MatchProblem,
    MatchResult,
    Reason,
    SolveStatus,
    Unassigned,
)
from matching.validation import check_result, expected_objective

from .builders import HANGZHOU, machine, op, order, problem


def result(
    p: MatchProblem, assignments: Iterable[Assignment], unassigned: Iterable[Unassigned] = ()
) -> MatchResult:
    r = MatchResult(SolveStatus.FEASIBLE, tuple(assignments), tuple(unassigned), 0, 0, 0.0, 0.0)
    return dataclasses.replace(r, objective_fen=expected_objective(p, r))


def rules(
    p: MatchProblem, assignments: Iterable[Assignment], unassigned: Iterable[Unassigned] = ()
) -> set[str]:
    return {v.rule for v in check_result(p, result(p, assignments, unassigned))}


def a(
    op_id: str = "op1",
    order_id: str = "r1",
    m: str = "m1",
    start: int = 0,
    end: int = 60,
    price: int = 6000,
    *,
    transport_fen: int = 0,
    tardiness_fen: int = 0,
) -> Assignment:
    return Assignment(op_id, order_id, m, start, end, price, transport_fen, tardiness_fen)


P = problem([machine(free=((0, 200), (300, 400)))], [order(release=10, due=150, hard=True)])


def test_valid_result_has_no_violations() -> None:
    assert rules(P, [a(start=10, end=70)]) == set()


@pytest.mark.parametrize(
    ("assignment", "rule"),
    [
        (a(start=0, end=60), "release"),
        (a(start=100, end=160), "hard_due"),
        (a(start=180, end=240), "availability"),
        (a(start=10, end=60, price=5000), "duration"),
        (a(start=10, end=70, price=1), "price"),
        (a(m="nope", start=10, end=70), "machine"),
    ],
)
def test_broken_rule_is_flagged(assignment: Assignment, rule: str) -> None:
    assert rule in rules(P, [assignment])


def test_missing_operation_is_flagged() -> None:
    assert "coverage" in rules(P, [])


def test_overlap_is_flagged() -> None:
    p = problem([machine()], [order(id="r1"), order(id="r2", ops=(op(id="op2"),))])
    got = rules(p, [a(start=0, end=60), a("op2", "r2", start=30, end=90)])
    assert "no_overlap" in got


def test_capability_and_distance_and_budget() -> None:
    p = problem([machine(site=HANGZHOU, process="turn")], [order(max_km=10, budget=10)])
    assert {"capability", "max_distance", "budget"} <= rules(p, [a()])


def test_precedence_and_all_or_nothing() -> None:
    ms = [machine(id="a"), machine(id="b", process="x", site=HANGZHOU)]
    o = order(ops=(op(id="s1"), op(id="s2", process="x")))
    p = problem(ms, [o])
    assert "precedence" in rules(p, [a("s1", m="a"), a("s2", m="b", start=60, end=120)])
    assert "all_or_nothing" in rules(
        p, [a("s1", m="a")], [Unassigned("s2", "r1", Reason.DISPLACED)]
    )


def test_wrong_objective_is_flagged() -> None:
    r = dataclasses.replace(result(P, [a(start=10, end=70)]), objective_fen=1)
    assert {v.rule for v in check_result(P, r)} == {"objective"}


def test_solver_output_validates_and_bound_holds() -> None:
    res = solve(P, time_limit_s=1)
    assert check_result(P, res) == []
    assert res.bound_fen <= res.objective_fen
