"""A province-sized market solved cluster by cluster, then across clusters.

SPEC §3: the matcher scales by decomposition, not by a bigger model. A market run over
more machines than ``match_split_machines`` is cut along the clusters: each cluster's
orders (delivered nearest to it) against its own machines, each part with a share of
the time limit by its size; then one cross-cluster pass takes every order a cluster
could not place whole — no capable machine at home, no room, over budget there — to
the machines of every cluster, in the free time the cluster passes left. The merged
answer is checked against the whole problem (``matching.check_result``) like any other.

Its objective is exact (the parts' objectives, with the penalties of the orders the
cross pass placed replaced by what they cost there). Its bound is not: a part's bound
holds for the part, not for the market (an order might be cheaper across a border), so
a split run reports no bound and no gap rather than a wrong one.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Iterable

from matching import Assignment, MachineSpec, MatchProblem, MatchResult, SolveStatus, Unassigned

Interval = tuple[int, int]
Solver = Callable[[MatchProblem, float, str], MatchResult]  # (problem, time limit, label)


def parts_by_cluster(problem: MatchProblem) -> list[tuple[str, MatchProblem]]:
    """One sub-problem per cluster that has orders: its orders and its machines."""
    machines: dict[str, list[MachineSpec]] = defaultdict(list)
    for m in problem.machines:
        machines[m.cluster].append(m)
    orders = defaultdict(list)
    for o in problem.orders:
        orders[o.cluster or ""].append(o)
    return [
        (c, dataclasses.replace(problem, machines=tuple(machines[c]), orders=tuple(orders[c])))
        for c in sorted(orders)
    ]


def _subtract(free: tuple[Interval, ...], taken: list[Interval]) -> tuple[Interval, ...]:
    out: list[Interval] = []
    taken = sorted(taken)
    for s, e in free:
        cur = s
        for ts, te in taken:
            if te <= cur or ts >= e:
                continue
            if ts > cur:
                out.append((cur, ts))
            cur = max(cur, te)
        if cur < e:
            out.append((cur, e))
    return tuple(out)


def leftover_problem(problem: MatchProblem, results: Iterable[MatchResult]) -> MatchProblem:
    """The orders no part placed whole, against every machine's free time less what the
    parts took."""
    taken: dict[str, list[Interval]] = defaultdict(list)
    unplaced: set[str] = set()
    for r in results:
        for a in r.assignments:
            taken[a.machine_id].append((a.start_min, a.end_min))
        unplaced.update(u.order_id for u in r.unassigned)
    machines = []
    for m in problem.machines:
        free = _subtract(m.free, taken[m.id]) if m.id in taken else m.free
        if free:
            machines.append(dataclasses.replace(m, free=free))
    orders = tuple(o for o in problem.orders if o.id in unplaced)
    return dataclasses.replace(problem, machines=tuple(machines), orders=orders)


def solve_split(problem: MatchProblem, time_limit_s: float, solve: Solver, *,
                cross_share: float = 0.25) -> MatchResult:  # fmt: skip
    """Solve ``problem`` cluster by cluster, then the leftovers across clusters."""
    parts = parts_by_cluster(problem)
    sizes = [max(1, sum(len(o.operations) for o in p.orders)) for _, p in parts]
    budget = time_limit_s * (1.0 - cross_share)
    results = []
    seconds = 0.0
    for (cluster, part), size in zip(parts, sizes, strict=True):
        got = solve(part, max(0.5, budget * size / sum(sizes)), f"cluster {cluster or '-'}")
        results.append(got)
        seconds += got.seconds
    rest = leftover_problem(problem, results)
    cross = None
    if rest.orders:
        cross = solve(rest, max(0.5, time_limit_s * cross_share), "across clusters")
        seconds += cross.seconds
    return merge(problem, results, cross, seconds)


def merge(
    problem: MatchProblem, parts: list[MatchResult], cross: MatchResult | None, seconds: float
) -> MatchResult:
    penalty = {o.id: o.unassigned_penalty_fen for o in problem.orders}
    assignments: list[Assignment] = [a for r in parts for a in r.assignments]
    unassigned: list[Unassigned] = [u for r in parts for u in r.unassigned]
    objective = sum(r.objective_fen for r in parts)
    if cross is not None:
        # the cross pass re-decided every order left out: its answer replaces their penalties
        objective -= sum(penalty[u.order_id] for u in unassigned)
        unassigned = list(cross.unassigned)
        assignments += cross.assignments
        objective += cross.objective_fen
    return MatchResult(
        status=SolveStatus.FEASIBLE,  # a part's optimum is not the market's
        assignments=tuple(sorted(assignments, key=lambda a: (a.machine_id, a.start_min))),
        unassigned=tuple(unassigned),
        objective_fen=objective,
        bound_fen=0,  # none proven for the market: the run reports no bound (see above)
        gap=1.0 if objective > 0 else 0.0,
        seconds=seconds,
        stats={
            "split": True,
            "parts": len(parts),
            "cross_placed": len(cross.assignments) if cross else 0,
            # the greedy baseline through the same passes: what each pass's greedy placed
            "greedy_placed": sum(_greedy(r) for r in (*parts, *([cross] if cross else []))),
        },
    )


def _greedy(result: MatchResult) -> int:
    placed = result.stats.get("greedy_placed", 0)
    return placed if isinstance(placed, int) else 0
