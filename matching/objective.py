"""Objective terms.

Cost mode (default), per placed job: option cost (processing price + reliability
charge + transport to the delivery point + cross-cluster charge on that hop) plus
``tardiness_per_min * max(0, end - due)``; per hop between consecutive operations of an
order: transport cost by distance (+ cross-cluster charge); per job left out: its
unassigned penalty; plus ``owner_spread_fen`` times the number of jobs of the busiest
owner.  Tardiness mode compiles option costs to 0; makespan mode adds the latest end.

This module holds the pure-Python evaluation used by greedy, repair and validation, and
the CP-SAT objective builders used by the two models in :mod:`matching.engine`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from ortools.sat.python import cp_model

from matching.compiled import CompiledProblem, Job, Option
from matching.domain import ObjectiveMode

# job index -> (option index, start minute)
Placement = Mapping[int, tuple[int, int]]


def tardiness_cost(job: Job, opt: Option, end: int) -> int:
    if job.tardiness_per_min == 0 or end <= opt.due:
        return 0
    return job.tardiness_per_min * (end - opt.due)


def placed_cost(job: Job, opt: Option, start: int) -> int:
    """Time-dependent cost of one placed job (hops excluded)."""
    return opt.cost + tardiness_cost(job, opt, start + opt.duration)


def breakdown(cp: CompiledProblem, sol: Placement) -> dict[str, int]:
    """Objective split into its terms (all integers)."""
    cost = tard = pen = hops = 0
    makespan = 0
    for j, job in enumerate(cp.jobs):
        got = sol.get(j)
        if got is None:
            pen += job.penalty
            continue
        opt = job.options[got[0]]
        cost += opt.cost
        tard += tardiness_cost(job, opt, got[1] + opt.duration)
        makespan = max(makespan, got[1] + opt.duration)
    for order in cp.orders:
        for a, b in zip(order.jobs, order.jobs[1:], strict=False):
            if a in sol and b in sol:
                ma = cp.jobs[a].options[sol[a][0]].machine
                mb = cp.jobs[b].options[sol[b][0]].machine
                hops += cp.hop(ma, mb)[1]
    spread = 0
    if cp.owner_spread_fen and sol:
        counts = Counter(cp.owners[cp.jobs[j].options[o].machine] for j, (o, _) in sol.items())
        spread = cp.owner_spread_fen * max(counts.values())
    out = {
        "option_cost": cost,
        "tardiness": tard,
        "unassigned_penalty": pen,
        "hop_cost": hops,
        "owner_spread": spread,
        "makespan": 0,
    }
    if cp.mode is ObjectiveMode.MAKESPAN:
        out["makespan"] = makespan
    out["total"] = sum(out.values())
    return out


def evaluate(cp: CompiledProblem, sol: Placement) -> int:
    return breakdown(cp, sol)["total"]


def constant_penalty(cp: CompiledProblem) -> int:
    """Penalty of jobs that cannot be placed at all (a constant of the instance)."""
    return sum(j.penalty for j in cp.jobs if not j.options)


def minimize(
    model: cp_model.CpModel,
    terms: Iterable[tuple[int, cp_model.LinearExprT]],
    extra: Iterable[cp_model.LinearExprT] = (),
) -> None:
    """Set ``min sum coef * var + sum extra`` (zero coefficients dropped)."""
    vs, cs = [], []
    for c, v in terms:
        if c:
            cs.append(c)
            vs.append(v)
    for e in extra:
        vs.append(e)
        cs.append(1)
    model.minimize(cp_model.LinearExpr.weighted_sum(vs, cs) if vs else 0)
