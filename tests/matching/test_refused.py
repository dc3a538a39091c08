"""Machines an operation must never go to (their owners declined it or let it lapse)."""

from __future__ import annotations

import dataclasses

from matching import check_result, solve
from matching.domain import Assignment, MatchResult, Reason, SolveStatus

from .builders import machine, op, order, problem


def _problem(excluded: frozenset[str]):  # type: ignore[no-untyped-def]
    step = dataclasses.replace(op(), excluded_machines=excluded)
    cheap, dear = machine(id="cheap", rate=3000), machine(id="dear", rate=9000)
    return problem([cheap, dear], [order(ops=(step,))])


def test_an_excluded_machine_is_not_used_even_when_cheapest() -> None:
    free = solve(_problem(frozenset()), time_limit_s=2, seed=0, workers=1)
    assert [a.machine_id for a in free.assignments] == ["cheap"]
    refused = solve(_problem(frozenset({"cheap"})), time_limit_s=2, seed=0, workers=1)
    assert [a.machine_id for a in refused.assignments] == ["dear"]


def test_when_every_capable_machine_refused_the_reason_says_so() -> None:
    p = _problem(frozenset({"cheap", "dear"}))
    r = solve(p, time_limit_s=2, seed=0, workers=1)
    assert r.assignments == ()
    [left] = r.unassigned
    assert left.reason == Reason.DECLINED
    assert check_result(p, r) == []


def test_no_capable_machine_at_all_is_still_no_eligible_machine() -> None:
    step = dataclasses.replace(op(process="lathe"), excluded_machines=frozenset({"cheap"}))
    r = solve(problem([machine(id="cheap")], [order(ops=(step,))]), time_limit_s=2, seed=0)
    assert [u.reason for u in r.unassigned] == [Reason.NO_ELIGIBLE_MACHINE]


def test_validation_flags_an_assignment_to_a_refused_machine() -> None:
    p = _problem(frozenset({"cheap"}))
    bad = MatchResult(
        SolveStatus.FEASIBLE, (Assignment("op1", "r1", "cheap", 0, 60, 3000),), (), 0, 0, 0.0, 0.0
    )
    assert "refused" in {v.rule for v in check_result(p, bad)}
