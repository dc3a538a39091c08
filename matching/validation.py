"""Check a result without the solver.

:func:`check_result` re-checks every hard rule of a :class:`MatchResult` against the
:class:`MatchProblem` in plain Python, straight from the domain data (it does not use
the compiled form), and recomputes the objective.  :func:`check_compiled` does the same
for a compiled problem and a raw solution (benchmarks).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from matching.compiled import CompiledProblem
from matching.domain import MatchProblem, MatchResult, ObjectiveMode, Reason, capable, run_minutes
from matching.objective import evaluate
from matching.rules import (
    haversine_km,
    price_fen,
    transport_fen,
    transport_minutes,
    transport_minutes_between,
)


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    detail: str


def expected_objective(problem: MatchProblem, result: MatchResult) -> int:
    """The objective of ``result`` under ``problem``'s rules, recomputed from scratch."""
    w = problem.weights
    mode = problem.objective_mode
    machines = {m.id: m for m in problem.machines}
    by_op = {a.operation_id: a for a in result.assignments}
    total = 0
    makespan = 0
    per_owner: Counter[str] = Counter()
    for order in problem.orders:
        ops = order.operations
        for k, op in enumerate(ops):
            a = by_op.get(op.id)
            if a is None or a.machine_id not in machines:
                total += order.unassigned_penalty_fen
                continue
            m = machines[a.machine_id]
            per_owner[m.owner_id] += 1
            makespan = max(makespan, a.end_min)
            if mode is ObjectiveMode.COST:
                total += price_fen(
                    minutes=a.end_min - a.start_min, hourly_rate_fen=m.rate_fen_per_hour
                )
                total += round(w.unreliability_fen * (1.0 - m.on_time_rate))
            last = k == len(ops) - 1
            if last:
                km = haversine_km(m.lat, m.lon, order.delivery_lat, order.delivery_lon)
                if mode is ObjectiveMode.COST:
                    total += transport_fen(km, w)
                    if order.cluster is not None and m.cluster != order.cluster:
                        total += w.cross_cluster_fen
                if not order.hard_due and mode is not ObjectiveMode.MAKESPAN:
                    late = a.end_min + transport_minutes(km, w) - order.due_min
                    total += order.tardiness_fen_per_min * max(0, late)
            elif mode is ObjectiveMode.COST:
                nxt = by_op.get(ops[k + 1].id)
                if (
                    nxt is not None
                    and nxt.machine_id in machines
                    and nxt.machine_id != a.machine_id
                ):
                    n = machines[nxt.machine_id]
                    total += transport_fen(haversine_km(m.lat, m.lon, n.lat, n.lon), w)
                    if n.cluster != m.cluster:
                        total += w.cross_cluster_fen
    if mode is ObjectiveMode.COST and w.owner_spread_fen and per_owner:
        total += w.owner_spread_fen * max(per_owner.values())
    if mode is ObjectiveMode.MAKESPAN:
        total += makespan
    return total


def check_result(problem: MatchProblem, result: MatchResult) -> list[Violation]:
    out: list[Violation] = []

    def bad(rule: str, detail: str) -> None:
        out.append(Violation(rule, detail))

    w = problem.weights
    machines = {m.id: m for m in problem.machines}
    seen: Counter[str] = Counter()
    for a in result.assignments:
        seen[a.operation_id] += 1
    for u in result.unassigned:
        seen[u.operation_id] += 1
    all_ops = {op.id for o in problem.orders for op in o.operations}
    for op_id in all_ops:
        if seen[op_id] != 1:
            bad("coverage", f"operation {op_id} is reported {seen[op_id]} times (expected once)")
    for op_id in seen:
        if op_id not in all_ops:
            bad("coverage", f"unknown operation {op_id}")
    by_op = {a.operation_id: a for a in result.assignments}
    per_machine: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for order in problem.orders:
        placed = [by_op.get(op.id) for op in order.operations]
        n_placed = sum(a is not None for a in placed)
        if 0 < n_placed < len(placed):
            bad(
                "all_or_nothing", f"order {order.id}: {n_placed} of {len(placed)} operations placed"
            )
        total_price = 0
        prev = None
        for k, (op, got) in enumerate(zip(order.operations, placed, strict=True)):
            if got is None:
                continue
            a = got
            if a.order_id != order.id:
                bad("coverage", f"operation {op.id} reported under order {a.order_id}")
            m = machines.get(a.machine_id)
            if m is None:
                bad("machine", f"operation {op.id}: unknown machine {a.machine_id}")
                continue
            if not capable(op, m):
                bad("capability", f"operation {op.id} cannot run on machine {m.id}")
            if m.id in op.excluded_machines:
                bad("excluded", f"operation {op.id} is excluded from machine {m.id}")
            dur = run_minutes(op, m)
            if a.end_min - a.start_min != dur:
                bad(
                    "duration",
                    f"operation {op.id} on {m.id}: booked {a.end_min - a.start_min}"
                    f" min, expected {dur} (speed factor, minimum booking)",
                )
            price = price_fen(minutes=a.end_min - a.start_min, hourly_rate_fen=m.rate_fen_per_hour)
            if a.price_fen != price:
                bad("price", f"operation {op.id}: price {a.price_fen}, expected {price}")
            total_price += price
            if not any(s <= a.start_min and a.end_min <= e for s, e in m.free):
                bad(
                    "availability",
                    f"operation {op.id} on {m.id}: [{a.start_min}, {a.end_min})"
                    " is not inside one free interval",
                )
            if a.start_min < order.release_min:
                bad(
                    "release",
                    f"operation {op.id} starts {a.start_min} before release {order.release_min}",
                )
            km = haversine_km(m.lat, m.lon, order.delivery_lat, order.delivery_lon)
            if order.max_distance_km is not None and km > order.max_distance_km:
                bad(
                    "max_distance",
                    f"operation {op.id} on {m.id}: {km:.1f} km > {order.max_distance_km} km",
                )
            if k == len(order.operations) - 1 and order.hard_due:
                arrive = a.end_min + transport_minutes(km, w)
                if arrive > order.due_min:
                    bad("hard_due", f"order {order.id} delivered at {arrive} > due {order.due_min}")
            if prev is not None:
                pm = machines.get(prev.machine_id)
                if pm is not None:
                    lag = (
                        0
                        if pm.id == m.id
                        else transport_minutes_between(pm.lat, pm.lon, m.lat, m.lon, w)
                    )
                    if a.start_min < prev.end_min + lag:
                        bad(
                            "precedence",
                            f"operation {op.id} starts {a.start_min} before "
                            f"{prev.operation_id} ends + transport "
                            f"({prev.end_min} + {lag})",
                        )
            prev = a
            per_machine[m.id].append((a.start_min, a.end_min, op.id))
        if order.budget_fen is not None and n_placed and total_price > order.budget_fen:
            bad("budget", f"order {order.id}: price {total_price} > budget {order.budget_fen}")
    for mid, lst in per_machine.items():
        lst.sort()
        for (s1, e1, o1), (s2, _e2, o2) in zip(lst, lst[1:], strict=False):
            if s2 < e1:
                bad("no_overlap", f"machine {mid}: {o1} [{s1}, {e1}) overlaps {o2} from {s2}")
    for u in result.unassigned:
        if not isinstance(u.reason, Reason):
            bad("reason", f"operation {u.operation_id} has no valid reason")
    exp = expected_objective(problem, result)
    if exp != result.objective_fen:
        bad("objective", f"reported objective {result.objective_fen}, recomputed {exp}")
    if result.bound_fen > result.objective_fen:
        bad("bound", f"bound {result.bound_fen} exceeds objective {result.objective_fen}")
    return out


def check_compiled(cp: CompiledProblem, sol: dict[int, tuple[int, int]]) -> list[Violation]:
    """Hard rules on the compiled form (benchmarks): option exists, release, latest end,
    one free interval, no overlap, precedence with transport lag, all-or-nothing,
    budget."""
    out: list[Violation] = []
    per_machine: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for j, (oi, st) in sol.items():
        job = cp.jobs[j]
        if not 0 <= oi < len(job.options):
            out.append(Violation("option", f"job {job.key}: no option {oi}"))
            continue
        o = job.options[oi]
        end = st + o.duration
        if st < job.release:
            out.append(Violation("release", f"job {job.key} starts {st} < {job.release}"))
        if end > o.latest_end:
            out.append(Violation("hard_due", f"job {job.key} ends {end} > {o.latest_end}"))
        if not any(s <= st and end <= e for s, e in cp.free[o.machine]):
            out.append(Violation("availability", f"job {job.key} not inside a free interval"))
        per_machine[o.machine].append((st, end, j))
    for m, lst in per_machine.items():
        lst.sort()
        for (s1, e1, j1), (s2, e2, j2) in zip(lst, lst[1:], strict=False):
            if s2 < e1 and s1 < e1 and s2 < e2:
                out.append(
                    Violation(
                        "no_overlap",
                        f"machine {cp.machine_keys[m]}: jobs "
                        f"{cp.jobs[j1].key} and {cp.jobs[j2].key}",
                    )
                )
    for order in cp.orders:
        n = sum(j in sol for j in order.jobs)
        if 0 < n < len(order.jobs):
            out.append(Violation("all_or_nothing", f"order {order.key}: {n} placed"))
            continue
        if n == 0:
            continue
        price = 0
        for a, b in zip(order.jobs, order.jobs[1:], strict=False):
            oa = cp.jobs[a].options[sol[a][0]]
            ob = cp.jobs[b].options[sol[b][0]]
            lag = cp.hop(oa.machine, ob.machine)[0]
            if sol[b][1] < sol[a][1] + oa.duration + lag:
                out.append(Violation("precedence", f"order {order.key}: {cp.jobs[b].key}"))
        for j in order.jobs:
            price += cp.jobs[j].options[sol[j][0]].price
        if order.budget is not None and price > order.budget:
            out.append(Violation("budget", f"order {order.key}: {price} > {order.budget}"))
    return out


def objective_of(cp: CompiledProblem, sol: dict[int, tuple[int, int]]) -> int:
    return evaluate(cp, sol)
