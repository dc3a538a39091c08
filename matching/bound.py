"""Lower bounds: the LP relaxation of the slot model, solved with GLOP.

Variables x[e] in [0, 1] per (job, option, slot) entry and u[j] in [0, 1] per job;
``sum x + u = 1`` per job; slot knapsack and window rows (see
:func:`matching.constraints.window_rows`); cost of x = option cost + tardiness at the
earliest start in the slot, cost of u = penalty.  Ignoring order inside slots,
precedence, hop costs (>= 0) and the owner-spread term (>= 0) only relaxes the
problem, so the optimum is a valid lower bound in cost and tardiness modes.
"""

from __future__ import annotations

import math
from collections import defaultdict

from ortools.linear_solver import pywraplp

from matching.compiled import CompiledProblem
from matching.constraints import SlotVars, window_rows


def lp_bound(cp: CompiledProblem, v: SlotVars, jobs: list[int], time_limit_s: float = 30.0
             ) -> int | None:
    """Floor of the LP optimum for ``jobs`` (None if GLOP did not finish)."""
    solver = pywraplp.Solver.CreateSolver("GLOP")
    if solver is None:  # pragma: no cover - GLOP ships with ortools
        return None
    solver.SetTimeLimit(int(time_limit_s * 1000))
    x = [solver.NumVar(0.0, 1.0, "") for _ in v.entries]
    u = {j: solver.NumVar(0.0, 1.0, "") for j in jobs}
    by_job: dict[int, list[int]] = defaultdict(list)
    per_slot: dict[int, list[int]] = defaultdict(list)
    for k, e in enumerate(v.entries):
        by_job[e.job].append(k)
        per_slot[e.slot].append(k)
    for j in jobs:
        ct = solver.Constraint(1.0, 1.0)
        ct.SetCoefficient(u[j], 1.0)
        for k in by_job.get(j, []):
            ct.SetCoefficient(x[k], 1.0)
    for si, ks in per_slot.items():
        _m, s, t = v.slots[si]
        if sum(v.entries[k].duration for k in ks) <= t - s:
            continue
        ct = solver.Constraint(-solver.infinity(), float(t - s))
        for k in ks:
            ct.SetCoefficient(x[k], float(v.entries[k].duration))
    for _si, ks, cap in window_rows(v):
        ct = solver.Constraint(-solver.infinity(), float(cap))
        for k in ks:
            ct.SetCoefficient(x[k], float(v.entries[k].duration))
    obj = solver.Objective()
    scale = 1.0
    for k, e in enumerate(v.entries):
        obj.SetCoefficient(x[k], e.cost * scale)
    for j in jobs:
        obj.SetCoefficient(u[j], cp.jobs[j].penalty * scale)
    obj.SetMinimization()
    status = solver.Solve()
    if status != pywraplp.Solver.OPTIMAL:
        return None
    # GLOP tolerances: shave a tiny relative margin before flooring
    val = obj.Value()
    return max(0, math.floor(val - 1e-7 * abs(val) - 1e-6))
