"""Machines an operation is excluded from (its owner declined, or let the proposal
lapse): never an option, a reason of their own, caught by validation."""

from __future__ import annotations

from matching import MatchProblem, MatchResult, Reason, SolveStatus, check_result, solve
from matching.compiled import compile_problem
from matching.domain import Assignment
from matching.greedy import best_greedy

from .builders import HANGZHOU, machine, op, order, problem

CHEAP = machine(id="cheap", rate=3000)
DEAR = machine(id="dear", rate=9000)


def run(p: MatchProblem) -> MatchResult:
    res = solve(p, time_limit_s=1.0)
    assert check_result(p, res) == []
    return res


def test_the_cheap_machine_wins_when_not_excluded() -> None:
    res = run(problem([CHEAP, DEAR], [order()]))
    assert [a.machine_id for a in res.assignments] == ["cheap"]


def test_excluding_the_cheap_machine_moves_the_operation() -> None:
    p = problem([CHEAP, DEAR], [order(ops=(op(excluded=frozenset({"cheap"})),))])
    res = run(p)
    assert [a.machine_id for a in res.assignments] == ["dear"]
    # the greedy baseline does not use it either
    cp = compile_problem(p)
    _name, gsol, _vals = best_greedy(cp)
    assert {cp.machine_keys[cp.jobs[j].options[o].machine] for j, (o, _s) in gsol.items()} == {
        "dear"
    }


def test_excluding_every_machine_gives_the_declined_reason() -> None:
    p = problem([CHEAP, DEAR], [order(ops=(op(excluded=frozenset({"cheap", "dear"})),))])
    res = run(p)
    assert not res.assignments
    (u,) = res.unassigned
    assert u.reason is Reason.DECLINED
    assert "2 otherwise eligible" in u.detail and "declined" in u.detail


def test_declined_when_the_exclusion_is_what_leaves_no_machine() -> None:
    # the other capable machine is too far anyway: the exclusion is the binding cause
    far = machine(id="far", site=HANGZHOU)
    p = problem([CHEAP, far], [order(ops=(op(excluded=frozenset({"cheap"})),), max_km=50)])
    assert run(p).unassigned[0].reason is Reason.DECLINED
    # an excluded machine that is too far as well changes nothing: still too far
    p = problem([far], [order(ops=(op(excluded=frozenset({"far"})),), max_km=50)])
    assert run(p).unassigned[0].reason is Reason.TOO_FAR


def test_the_whole_order_is_left_out_with_the_declined_reason() -> None:
    ops = (op(id="s1"), op(id="s2", excluded=frozenset({"cheap", "dear"})))
    res = run(problem([CHEAP, DEAR], [order(ops=ops)]))
    by_op = {u.operation_id: u for u in res.unassigned}
    assert {u.reason for u in by_op.values()} == {Reason.DECLINED}
    assert by_op["s1"].detail.startswith("another operation of the order")


def test_validation_flags_a_placement_on_an_excluded_machine() -> None:
    p = problem([CHEAP, DEAR], [order(ops=(op(excluded=frozenset({"cheap"})),))])
    placed = Assignment("op1", "r1", "cheap", 0, 60, 3000)
    res = MatchResult(SolveStatus.FEASIBLE, (placed,), (), 3000, 0, 1.0, 0.0)
    assert {v.rule for v in check_result(p, res)} == {"excluded"}
