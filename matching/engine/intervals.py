"""The exact *interval model*: one optional interval per (job, option, free slot) with
the start restricted to the feasible in-slot range, no overlap per machine, orders
all-or-nothing with precedence and transport lags, budgets, tardiness, makespan and
owner spread (:mod:`matching.constraints`).  Used for components of multi-operation
orders, makespan mode and every LNS step."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

from ortools.sat.python import cp_model

from matching import constraints as C
from matching.compiled import CompiledProblem
from matching.domain import ObjectiveMode
from matching.engine.common import Search, Solution, set_params
from matching.objective import minimize


@dataclass(frozen=True, slots=True)
class IntervalAnswer:
    """``solution`` is None when there was no time to build or solve the model;
    ``dtime`` is CP-SAT's deterministic time, ``choices`` the number of placement
    Booleans (LNS charges for both)."""

    solution: Solution | None
    bound: int
    optimal: bool
    dtime: float
    choices: int


def solve_interval_model(
    cp: CompiledProblem,
    jobs: list[int],
    hint: Solution,
    time_s: float,
    wall_s: float,
    search: Search,
    cb: cp_model.CpSolverSolutionCallback | None,
) -> IntervalAnswer:
    """The exact model of ``jobs`` for ``time_s``, hinted with ``hint`` (completed, so
    that CP-SAT takes it as a first solution).  ``wall_s`` bounds the whole call: model
    building stops (and no solution is returned) when it runs out."""
    stop_at = time.monotonic() + wall_s
    model = cp_model.CpModel()
    v = C.IntervalVars()
    jobset = set(jobs)
    horizon = max((e for m in range(len(cp.free)) for _s, e in cp.free[m]), default=0)
    choices: list[tuple[int, int, cp_model.IntVar]] = []
    aggregated: list[tuple[int, int]] = []  # (job, machine) with a uses-machine sum
    # variables: per (job, option, free slot) an optional interval in the feasible range
    for j in jobs:
        if time.monotonic() > stop_at:
            return IntervalAnswer(None, 0, False, 0.0, 0)
        job = cp.jobs[j]
        v.u[j] = model.new_bool_var(f"u_{j}")
        v.job_start[j] = model.new_int_var(0, horizon, f"s_{j}")
        v.job_end[j] = model.new_int_var(0, horizon, f"e_{j}")
        dur_terms = []
        per_machine: dict[int, list[cp_model.IntVar]] = defaultdict(list)
        for oi, opt in enumerate(job.options):
            for g, (s, e) in enumerate(cp.free[opt.machine]):
                lo = max(s, job.release)
                hi = min(e, opt.latest_end) - opt.duration
                if lo > hi:
                    continue
                p = model.new_bool_var(f"p_{j}_{oi}_{g}")
                st = model.new_int_var(lo, hi, f"st_{j}_{oi}_{g}")
                iv = model.new_optional_fixed_size_interval_var(st, opt.duration, p, "")
                model.add(v.job_start[j] == st).only_enforce_if(p)
                v.presence[(j, oi, g)] = p
                v.interval[(j, oi, g)] = iv
                v.start[(j, oi, g)] = st
                dur_terms.append(opt.duration * p)
                per_machine[opt.machine].append(p)
                choices.append((j, oi, p))
        model.add(v.job_end[j] == v.job_start[j] + sum(dur_terms))
        for m, ps in per_machine.items():
            if len(ps) == 1:
                v.uses_machine[(j, m)] = ps[0]
            else:
                y = model.new_bool_var("")
                model.add(y == sum(ps))
                v.uses_machine[(j, m)] = y
                aggregated.append((j, m))
    # constraints
    C.add_one_option_or_unassigned(model, v)
    has_choice = {j for (j, _o, _g) in v.presence}
    for j in jobs:
        if j not in has_choice:
            model.add(v.u[j] == 1)
    C.add_no_overlap_per_machine(model, cp, v)
    C.add_order_all_or_nothing(model, cp, v, jobset)
    C.add_precedence_with_transport(model, cp, v, jobset)
    C.add_budget(model, cp, v, jobset)
    C.add_tardiness(model, cp, v)
    extra: list[cp_model.LinearExprT] = []
    if cp.mode is ObjectiveMode.MAKESPAN:
        C.add_makespan(model, v, horizon)
        assert v.makespan is not None
        extra.append(v.makespan)
    top = C.add_owner_spread(model, cp, choices)
    # objective
    terms: list[tuple[int, cp_model.LinearExprT]] = []
    for (j, oi, _g), p in v.presence.items():
        terms.append((cp.jobs[j].options[oi].cost, p))
    terms += v.hop_terms
    terms += [(cp.jobs[j].tardiness_per_min, t) for j, t in v.tardiness.items()]
    terms += [(cp.jobs[j].penalty, v.u[j]) for j in jobs]
    if top is not None:
        terms.append((cp.owner_spread_fen, top))
    minimize(model, terms, extra)
    # hint
    for (j, oi, g), p in v.presence.items():
        got = hint.get(j)
        on = False
        if got is not None and got[0] == oi:
            s, e = cp.free[cp.jobs[j].options[oi].machine][g]
            on = s <= got[1] < e
        model.add_hint(p, on)
        if on:
            model.add_hint(v.start[(j, oi, g)], got[1])  # type: ignore[index]
    # complete the hint (aggregates, tardiness, ends, hops), so that CP-SAT takes it as
    # a first solution without a repair search
    for j in jobs:
        model.add_hint(v.u[j], j not in hint)
        job = cp.jobs[j]
        got = hint.get(j)
        if got is not None:
            opt = job.options[got[0]]
            model.add_hint(v.job_start[j], got[1])
            model.add_hint(v.job_end[j], got[1] + opt.duration)
            if j in v.tardiness:
                model.add_hint(v.tardiness[j], max(0, got[1] + opt.duration - opt.due))
        else:
            model.add_hint(v.job_start[j], 0)
            model.add_hint(v.job_end[j], 0)
            if j in v.tardiness:
                model.add_hint(v.tardiness[j], 0)
    for (j, oi, g), st_var in v.start.items():
        got = hint.get(j)
        if (
            got is None
            or got[0] != oi
            or not (
                cp.free[cp.jobs[j].options[oi].machine][g][0]
                <= got[1]
                < cp.free[cp.jobs[j].options[oi].machine][g][1]
            )
        ):
            model.add_hint(st_var, st_var.proto.domain[0])
    for j, m in aggregated:
        got = hint.get(j)
        model.add_hint(
            v.uses_machine[(j, m)], got is not None and cp.jobs[j].options[got[0]].machine == m
        )
    for a, b, h in v.hops:
        ga, gb = hint.get(a), hint.get(b)
        cost = 0
        if ga is not None and gb is not None:
            cost = cp.hop(cp.jobs[a].options[ga[0]].machine, cp.jobs[b].options[gb[0]].machine)[1]
        model.add_hint(h, cost)
    # solve
    rest = stop_at - time.monotonic()
    if rest < search.tuning.min_solve_s:
        return IntervalAnswer(None, 0, False, 0.0, len(v.presence))
    solver = cp_model.CpSolver()
    set_params(solver, time_s, rest, search)
    status = solver.solve(model, cb)
    dtime = solver.response_proto.deterministic_time
    # extract
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return IntervalAnswer(None, 0, False, dtime, len(v.presence))
    sol: Solution = {}
    for (j, oi, g), p in v.presence.items():
        if solver.boolean_value(p):
            sol[j] = (oi, solver.value(v.start[(j, oi, g)]))
    bound = int(solver.best_objective_bound)
    return IntervalAnswer(sol, bound, status == cp_model.OPTIMAL, dtime, len(v.presence))
