"""The compile step as it was before candidates came from an index (every operation
checked against every machine): the reference the indexed one must agree with."""

from __future__ import annotations

from matching.compiled import NO_DUE, CompiledProblem, Job, Option, Order, Site
from matching.domain import Interval, MatchProblem, ObjectiveMode, Reason, capable, run_minutes
from matching.rules import haversine_km, price_fen, transport_fen, transport_minutes


def _fits_somewhere(free: tuple[Interval, ...], release: int, dur: int, latest_end: int) -> bool:
    return any(max(s, release) + dur <= min(e, latest_end) for s, e in free)


def compile_problem(problem: MatchProblem) -> CompiledProblem:
    """Eligibility, durations, prices, transport and time windows of every operation.

    Operations without any feasible option keep a :class:`Reason` (checked in this
    order: capability, distance, budget, free time, exclusion: the reason is the last
    check that left no machine).  A machine in the operation's ``excluded_machines`` is
    never an option; when every machine that passes the other checks is excluded, the
    reason is :attr:`Reason.DECLINED`.  When one operation of an order has no option,
    the whole order has none (all-or-nothing).
    """
    w = problem.weights
    mode = problem.objective_mode
    machines = problem.machines
    sites = tuple(Site(m.lat, m.lon, m.cluster) for m in machines)
    jobs: list[Job] = []
    orders: list[Order] = []
    for oi, order in enumerate(problem.orders):
        per_op: list[list[Option]] = []
        reasons: list[tuple[Reason, str] | None] = []
        nops = len(order.operations)
        # minimum duration of each op over capable machines, for release propagation
        min_dur: list[int] = []
        capable_sets: list[list[int]] = []
        # capable machines an op is not excluded from, for the bounds on the other ops
        usable_sets: list[list[int]] = []
        for op in order.operations:
            caps = [mi for mi, m in enumerate(machines) if capable(op, m)]
            capable_sets.append(caps)
            usable = [mi for mi in caps if machines[mi].id not in op.excluded_machines]
            usable_sets.append(usable)
            min_dur.append(min((run_minutes(op, machines[mi]) for mi in usable), default=0))
        min_price = []
        for op, usable in zip(order.operations, usable_sets, strict=True):
            prices = [
                price_fen(
                    minutes=run_minutes(op, machines[mi]),
                    hourly_rate_fen=machines[mi].rate_fen_per_hour,
                )
                for mi in usable
            ]
            min_price.append(min(prices, default=0))
        release = order.release_min
        for k, (op, caps) in enumerate(zip(order.operations, capable_sets, strict=True)):
            last = k == nops - 1
            opts: list[Option] = []
            reason: tuple[Reason, str] | None = None
            if not caps:
                reason = (
                    Reason.NO_ELIGIBLE_MACHINE,
                    f"no machine does {op.process} in {op.material} with this envelope,"
                    " tolerance and certifications",
                )
            near = []
            for mi in caps:
                m = machines[mi]
                km = haversine_km(m.lat, m.lon, order.delivery_lat, order.delivery_lon)
                if order.max_distance_km is not None and km > order.max_distance_km:
                    continue
                near.append((mi, km))
            if caps and not near:
                reason = (
                    Reason.TOO_FAR,
                    f"{len(caps)} capable machine(s), all beyond {order.max_distance_km} km",
                )
            cheap = []
            for mi, km in near:
                m = machines[mi]
                dur = run_minutes(op, m)
                price = price_fen(minutes=dur, hourly_rate_fen=m.rate_fen_per_hour)
                if order.budget_fen is not None:
                    others = sum(min_price) - min_price[k]
                    if price + others > order.budget_fen:
                        continue
                cheap.append((mi, km, dur, price))
            if near and not cheap:
                reason = (
                    Reason.OVER_BUDGET,
                    f"cheapest capable machine exceeds the budget of {order.budget_fen} fen",
                )
            tail = sum(min_dur[k + 1 :])
            for mi, km, dur, price in cheap:
                m = machines[mi]
                lag_del = transport_minutes(km, w)
                if order.hard_due:
                    latest_end = order.due_min - lag_del - tail
                else:
                    latest_end = problem.horizon_min
                cost = 0
                tr = 0
                if mode is ObjectiveMode.COST:
                    cost = price + round(w.unreliability_fen * (1.0 - m.on_time_rate))
                    if last:
                        tr = transport_fen(km, w)
                        cost += tr
                        if order.cluster is not None and m.cluster != order.cluster:
                            cost += w.cross_cluster_fen
                due = order.due_min - lag_del if last and not order.hard_due else NO_DUE
                if not _fits_somewhere(m.free, release, dur, latest_end):
                    continue
                opts.append(
                    Option(
                        machine=mi,
                        duration=dur,
                        cost=cost,
                        latest_end=latest_end,
                        due=due,
                        price=price,
                        transport=tr,
                    )
                )
            if cheap and not opts:
                reason = (
                    Reason.NO_FREE_INTERVAL,
                    "no free interval of a capable machine fits between release and due",
                )
            if op.excluded_machines:
                eligible = len(opts)
                opts = [o for o in opts if machines[o.machine].id not in op.excluded_machines]
                if eligible and not opts:
                    reason = (
                        Reason.DECLINED,
                        f"{eligible} otherwise eligible machine(s); every one's owner"
                        " declined or let the proposal lapse",
                    )
            per_op.append(opts)
            reasons.append(reason)
            release += min_dur[k]
        failing = next((r for r in reasons if r is not None), None)
        idx = []
        rel = order.release_min
        for k, op in enumerate(order.operations):
            last = k == nops - 1
            tard = order.tardiness_fen_per_min if last and not order.hard_due else 0
            if mode is ObjectiveMode.MAKESPAN:
                tard = 0
            if failing is not None:
                r, d = reasons[k] or (failing[0], "another operation of the order: " + failing[1])
                job = Job(op.id, oi, rel, tard, order.unassigned_penalty_fen, (), r, d)
            else:
                job = Job(op.id, oi, rel, tard, order.unassigned_penalty_fen, tuple(per_op[k]))
            idx.append(len(jobs))
            jobs.append(job)
            rel += min_dur[k]
        budget = order.budget_fen if nops > 1 else None
        orders.append(Order(order.id, tuple(idx), budget))
    return CompiledProblem(
        name="match",
        machine_keys=tuple(m.id for m in machines),
        free=tuple(tuple(sorted(m.free)) for m in machines),
        jobs=tuple(jobs),
        orders=tuple(orders),
        mode=mode,
        owners=tuple(m.owner_id for m in machines),
        owner_spread_fen=w.owner_spread_fen if mode is ObjectiveMode.COST else 0,
        sites=sites,
        weights=w,
    )
