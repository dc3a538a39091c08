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


# ------------------------------------------------------------------------ makespan mode


def _earliest_end(free: tuple[tuple[int, int], ...], t: int, dur: int, latest_end: int
                  ) -> int | None:
    for s, e in free:
        st = max(s, t)
        if st + dur <= min(e, latest_end):
            return st + dur
    return None


def _time_to_fit(frees: list[tuple[tuple[int, int], ...]], work: int) -> int | None:
    """Smallest T such that the machines' free time inside [0, T) sums to ``work``
    (None when it never does)."""
    if work <= 0:
        return 0
    pieces = sorted((s, e) for f in frees for s, e in f)
    events: list[tuple[int, int]] = []  # (time, +1 start / -1 end)
    for s, e in pieces:
        events.append((s, 1))
        events.append((e, -1))
    events.sort()
    done, active, last = 0, 0, 0
    for t, d in events:
        if active and done + active * (t - last) >= work:
            return last + math.ceil((work - done) / active)
        done += active * (t - last)
        active += d
        last = t
    return None


def makespan_lower_bound(cp: CompiledProblem) -> int:
    """A lower bound on the makespan-mode objective (latest end + unassigned penalties).

    * chain bound: an order that is placed ends no earlier than its operations run back
      to back, each at its earliest fit on its fastest machine (transport ignored);
      left out, it costs its penalties; so the objective is at least the larger of the
      two smaller ones, over all orders;
    * load bound: for machine sets S (each job's option set, unions of two, all), the
      jobs that can only run on S need their shortest durations inside the free time of
      S before the makespan; unless some order is left out (at least the smallest
      order penalty).
    Penalties of jobs without options are a constant added on top."""
    const = sum(j.penalty for j in cp.jobs if not j.options)
    live = [o for o in cp.orders if all(cp.jobs[j].options for j in o.jobs)]
    if not live:
        return const
    best = 0
    order_pen = []
    for order in live:
        pen = sum(cp.jobs[j].penalty for j in order.jobs)
        order_pen.append(pen)
        t = 0
        for j in order.jobs:
            job = cp.jobs[j]
            t = max(t, job.release)
            ends = [_earliest_end(cp.free[o.machine], t, o.duration, o.latest_end)
                    for o in job.options]
            fit = [e for e in ends if e is not None]
            if not fit:
                t = -1
                break
            t = min(fit)
        chain = pen if t < 0 else min(pen, t)
        best = max(best, chain)
    min_pen = min(order_pen)
    jobs = [j for o in live for j in o.jobs]
    sets: dict[frozenset[int], int] = {}
    for j in jobs:
        sets.setdefault(frozenset(o.machine for o in cp.jobs[j].options), 0)
    base = list(sets)
    cands = set(base)
    cands.add(frozenset(m for s in base for m in s))
    if len(base) <= 60:
        for a in range(len(base)):
            for b in range(a + 1, len(base)):
                cands.add(base[a] | base[b])
    for s in sorted(cands, key=lambda x: sorted(x)):
        work = sum(min(o.duration for o in cp.jobs[j].options) for j in jobs
                   if all(o.machine in s for o in cp.jobs[j].options))
        t = _time_to_fit([cp.free[m] for m in sorted(s)], work)
        best = max(best, min_pen if t is None else min(min_pen, t))
    return const + best
