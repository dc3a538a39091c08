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
import time
from collections import defaultdict
from dataclasses import replace

from ortools.linear_solver import pywraplp  # type: ignore[import-untyped]

from matching.compiled import CompiledProblem
from matching.constraints import SlotVars, window_rows
from matching.tuning import DEFAULT_TUNING, SolverTuning


def lp_bound(
    cp: CompiledProblem,
    v: SlotVars,
    jobs: list[int],
    time_limit_s: float = 30.0,
    same: list[tuple[int, int]] | None = None,
    tuning: SolverTuning = DEFAULT_TUNING,
) -> int | None:
    """Floor of the LP optimum for ``jobs`` (None if GLOP did not finish).  ``same``:
    pairs of jobs placed together or not at all (``u[a] = u[b]``, orders)."""
    stop_at = time.monotonic() + time_limit_s  # building the LP counts too
    if time_limit_s < tuning.lp_build_s_per_entry * len(v.entries):
        return None  # not even time to build it
    solver = pywraplp.Solver.CreateSolver("GLOP")
    if solver is None:  # pragma: no cover - GLOP ships with ortools
        return None
    obj = _slot_relaxation(
        solver,
        cp,
        v,
        jobs,
        same,
        integer=False,
        stop_at=stop_at,
        window_points=tuning.window_points,
    )
    rest = stop_at - time.monotonic()
    if obj is None or rest <= 0.005:
        return None
    solver.SetTimeLimit(max(1, int(rest * 1000)))
    status = solver.Solve()
    if status != pywraplp.Solver.OPTIMAL:
        return None
    # GLOP tolerances: shave a tiny relative margin before flooring
    val = float(obj.Value())
    return max(0, math.floor(val - 1e-7 * abs(val) - 1e-6))


def mip_solve(
    cp: CompiledProblem,
    v: SlotVars,
    jobs: list[int],
    time_limit_s: float,
    place_all: bool = False,
    presolve: bool = True,
    tuning: SolverTuning = DEFAULT_TUNING,
) -> tuple[int | None, list[int] | None, bool]:
    """The 0-1 slot model solved by SCIP (one thread, no gap tolerance) for up to
    ``time_limit_s``: (lower bound or None, entries chosen by its best solution or None,
    proven optimal).  For knapsack-like slots
    (:func:`matching.engine.knapsack.slots_exact`) this is the whole problem.  Its path
    is deterministic (single thread); only the wall-clock limit is not.  ``place_all``:
    the caller knows that every optimum places all ``jobs`` (no unassigned variables
    then); ``presolve=False`` skips SCIP's presolving (``matching/NOTES.md`` §4)."""
    stop_at = time.monotonic() + time_limit_s
    if time_limit_s < 2 * tuning.lp_build_s_per_entry * len(v.entries):
        return None, None, False
    solver = pywraplp.Solver.CreateSolver("SCIP")
    if solver is None:  # pragma: no cover - depends on the ortools build
        return None, None, False
    solver.SetNumThreads(1)
    if not presolve:
        solver.SetSolverSpecificParametersAsString("presolving/maxrounds = 0\n")
    xs: list[pywraplp.Variable] = []
    obj = _slot_relaxation(
        solver,
        cp,
        v,
        jobs,
        None,
        integer=True,
        stop_at=stop_at,
        xs=xs,
        place_all=place_all,
        window_points=tuning.window_points,
    )
    rest = stop_at - time.monotonic()
    if obj is None or rest <= 0.05:
        return None, None, False
    solver.SetTimeLimit(max(1, int(rest * 1000)))
    params = pywraplp.MPSolverParameters()
    params.SetDoubleParam(params.RELATIVE_MIP_GAP, 0.0)
    status = solver.Solve(params)
    if status not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        return None, None, False
    val = float(obj.BestBound())
    bound = max(0, math.floor(val - 1e-6 * abs(val) - 1.0)) if math.isfinite(val) else None
    chosen = [k for k, x in enumerate(xs) if x.solution_value() > 0.5]
    optimal = status == pywraplp.Solver.OPTIMAL
    if optimal and math.isfinite(val):
        # integer costs, gap 0: the optimum is the bound rounded up (tolerance aside)
        bound = max(bound or 0, math.ceil(val - 1e-9 * abs(val) - 1e-6))
    return bound, chosen, optimal


def _slot_relaxation(
    solver: pywraplp.Solver,
    cp: CompiledProblem,
    v: SlotVars,
    jobs: list[int],
    same: list[tuple[int, int]] | None,
    integer: bool,
    stop_at: float | None = None,
    xs: list[pywraplp.Variable] | None = None,
    place_all: bool = False,
    window_points: int = DEFAULT_TUNING.window_points,
) -> pywraplp.Objective | None:
    """Builds the relaxation; None when ``stop_at`` passes before its core rows are in
    (window rows are optional: the rows built by then are kept, still a relaxation)."""
    var = solver.BoolVar if integer else (lambda name: solver.NumVar(0.0, 1.0, name))
    x = [var("") for _ in v.entries]
    if xs is not None:
        xs.extend(x)
    # place_all: no unassigned variables (every job takes one of its entries)
    u = {} if place_all else {j: var("") for j in jobs}
    by_job: dict[int, list[int]] = defaultdict(list)
    per_slot: dict[int, list[int]] = defaultdict(list)
    for k, e in enumerate(v.entries):
        by_job[e.job].append(k)
        per_slot[e.slot].append(k)
    for j in jobs:
        ct = solver.Constraint(1.0, 1.0)
        if j in u:
            ct.SetCoefficient(u[j], 1.0)
        for k in by_job.get(j, []):
            ct.SetCoefficient(x[k], 1.0)
    for a, b in same or ():
        if a in u and b in u:
            ct = solver.Constraint(0.0, 0.0)
            ct.SetCoefficient(u[a], 1.0)
            ct.SetCoefficient(u[b], -1.0)
    for si, ks in per_slot.items():
        _m, s, t = v.slots[si]
        if sum(v.entries[k].duration for k in ks) <= t - s:
            continue
        ct = solver.Constraint(-solver.infinity(), float(t - s))
        for k in ks:
            ct.SetCoefficient(x[k], float(v.entries[k].duration))
    if stop_at is not None and time.monotonic() > stop_at:
        return None
    for _si, ks, cap in window_rows(v, window_points, stop_at=stop_at):
        ct = solver.Constraint(-solver.infinity(), float(cap))
        for k in ks:
            ct.SetCoefficient(x[k], float(v.entries[k].duration))
    obj = solver.Objective()
    for k, e in enumerate(v.entries):
        obj.SetCoefficient(x[k], float(e.cost))
    for j in u:
        obj.SetCoefficient(u[j], float(cp.jobs[j].penalty))
    obj.SetMinimization()
    return obj


def chain_windows(cp: CompiledProblem, jobs: list[int]) -> CompiledProblem:
    """``cp`` with the time windows of chained operations tightened by precedence: an
    operation cannot start before its predecessor's earliest possible end, nor end
    after its successor's latest possible start (transport lags, >= 0, ignored).
    Implied by the rules, so every feasible schedule of ``cp`` stays feasible."""
    jobset = set(jobs)
    new = list(cp.jobs)

    def fits(j: int) -> list[tuple[int, int]]:  # (earliest end, latest start) per fit
        job = new[j]
        out = []
        for opt in job.options:
            for s, e in cp.free[opt.machine]:
                lo = max(s, job.release)
                hi = min(e, opt.latest_end)
                if lo + opt.duration <= hi:
                    out.append((lo + opt.duration, hi - opt.duration))
        return out

    changed = False
    for order in cp.orders:
        js = [j for j in order.jobs if j in jobset]
        if len(js) < 2:
            continue
        for a, b in zip(js, js[1:], strict=False):  # forward: releases
            f = fits(a)
            if not f:
                break
            ee = min(x for x, _ in f)
            if ee > new[b].release:
                new[b] = replace(new[b], release=ee)
                changed = True
        for a, b in zip(reversed(js[:-1]), reversed(js[1:]), strict=False):  # backward
            f = fits(b)
            if not f:
                break
            ls = max(y for _, y in f)
            opts = tuple(
                o if o.latest_end <= ls else replace(o, latest_end=ls) for o in new[a].options
            )
            if opts != new[a].options:
                new[a] = replace(new[a], options=opts)
                changed = True
    return replace(cp, jobs=tuple(new)) if changed else cp


def order_pairs(cp: CompiledProblem, jobs: list[int]) -> list[tuple[int, int]]:
    """Consecutive operations of an order (placed all-or-nothing)."""
    jobset = set(jobs)
    pairs = []
    for order in cp.orders:
        js = [j for j in order.jobs if j in jobset]
        pairs += list(zip(js, js[1:], strict=False))
    return pairs


# ------------------------------------------------------------------------ makespan mode


def _earliest_end(
    free: tuple[tuple[int, int], ...], t: int, dur: int, latest_end: int
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
            ends = [
                _earliest_end(cp.free[o.machine], t, o.duration, o.latest_end) for o in job.options
            ]
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
        work = sum(
            min(o.duration for o in cp.jobs[j].options)
            for j in jobs
            if all(o.machine in s for o in cp.jobs[j].options)
        )
        fit_t = _time_to_fit([cp.free[m] for m in sorted(s)], work)
        best = max(best, min_pen if fit_t is None else min(min_pen, fit_t))
    return const + best
