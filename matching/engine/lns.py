"""Large neighbourhood search on actual schedules, and the strategy that runs it from
the greedy.

:func:`lns` (single-operation orders) frees the jobs placed nearest a point in time, on
all the component's machines or on a few related ones, and re-solves them exactly with
the interval model in the free time the rest of the schedule leaves; :func:`lns_orders`
does the same with whole orders.  A step is kept when it is not worse.  Budgets are
deterministic time; see ``matching/NOTES.md`` for the charges and neighbourhoods."""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace

from matching.bound import chain_windows
from matching.compiled import CompiledProblem
from matching.engine.common import (
    ComponentResult,
    ComponentTask,
    Search,
    Solution,
    component_cost,
    trivial_bound,
)
from matching.engine.intervals import solve_interval_model
from matching.engine.repair import repair
from matching.greedy import FreeTime, free_after
from matching.objective import placed_cost


def _give_back(cp: CompiledProblem, sol: Solution, free: FreeTime, freed: list[int]) -> None:
    """An LNS step frees these jobs' time (they stay in ``sol`` until :func:`_replace`)."""
    for j in freed:
        if j in sol:
            oi, st = sol[j]
            o = cp.jobs[j].options[oi]
            free.give_back(o.machine, st, st + o.duration)


def _replace(
    cp: CompiledProblem,
    sol: Solution,
    free: FreeTime,
    on_machine: dict[int, set[int]],
    freed: list[int],
    new: Solution,
    key: Callable[[int], int],
) -> None:
    """End an LNS step: the freed jobs leave ``sol`` and ``new`` (their kept placements)
    takes its time; ``on_machine`` indexes ``key(job)`` (a job or its order) by machine."""
    for j in freed:
        if j in sol:
            on_machine[cp.jobs[j].options[sol[j][0]].machine].discard(key(j))
            del sol[j]
    for j, (oi, st) in new.items():
        o = cp.jobs[j].options[oi]
        free.take(o.machine, st, st + o.duration)
        sol[j] = (oi, st)
        on_machine[o.machine].add(key(j))


def lns(
    cp: CompiledProblem,
    sol: Solution,
    comp: list[int],
    budget: float,
    wall_end: float,
    search: Search,
) -> tuple[Solution, dict[str, int]]:
    """Improve the schedule of one component of single-job orders by large neighbourhood
    search on actual schedules: free the jobs placed nearest a point in time, on all the
    component's machines (a band of time: jobs may trade machines) or on a few related
    machines (around an unplaced / costly job), re-solve them exactly with the interval
    model in the free time the rest of the schedule leaves, keep the result when it is
    not worse.  ``budget`` is deterministic time (CP-SAT units plus a charge per step
    and per interval for model building and CP-SAT's set-up), so equal inputs and seed
    give equal results unless ``wall_end`` (wall clock) stops the loop first."""
    tuning = search.tuning

    sol = {j: sol[j] for j in comp if j in sol}
    stats = {"steps": 0, "improved": 0, "gain": 0}
    if not comp or budget <= 0:
        return sol, stats
    rng = random.Random(search.seed * 7919 + comp[0])  # a stream per component
    cand: dict[int, list[int]] = defaultdict(list)  # machine -> jobs with an option there
    for j in comp:
        for o in cp.jobs[j].options:
            cand[o.machine].append(j)
    machines = sorted(cand)
    # machines related to m: sharing candidate jobs, most shared first
    share_count: dict[int, dict[int, int]] = {}

    def related(m: int) -> list[int]:
        got = share_count.get(m)
        if got is None:
            cnt: dict[int, int] = defaultdict(int)
            for j in cand[m]:
                for o in cp.jobs[j].options:
                    if o.machine != m:
                        cnt[o.machine] += 1
            got = share_count[m] = dict(cnt)
        return sorted(got, key=lambda x: (-got[x], x))

    free = free_after(cp, sol)
    on_machine: dict[int, set[int]] = defaultdict(set)
    for j, (oi, _st) in sol.items():
        on_machine[cp.jobs[j].options[oi].machine].add(j)
    size = tuning.lns_start
    spent = 0.0
    while spent < budget and time.monotonic() < wall_end - tuning.lns_wall_margin_s:
        stats["steps"] += 1
        unplaced = [j for j in comp if j not in sol]
        kind = rng.random()
        if unplaced and kind < tuning.lns_unplaced:
            j0 = unplaced[rng.randrange(len(unplaced))]
            job0 = cp.jobs[j0]
            ms = sorted({o.machine for o in job0.options})
            rng.shuffle(ms)
            ms = ms[: rng.randint(*tuning.lns_unplaced_machines)]
            lo = job0.release
            hi = max(o.latest_end for o in job0.options)
            center = (lo + min(hi, lo + tuning.lns_unplaced_window_min)) // 2
        elif (kind := rng.random()) < tuning.lns_costly and sol:
            # a job placed far above its cheapest option: its machine and cheaper ones
            regret = sorted(
                sol,
                key=lambda j: (
                    -(
                        placed_cost(cp.jobs[j], cp.jobs[j].options[sol[j][0]], sol[j][1])
                        - min(o.cost for o in cp.jobs[j].options)
                    ),
                    j,
                ),
            )[: tuning.lns_regret_pool]
            j0 = regret[rng.randrange(len(regret))]
            job0 = cp.jobs[j0]
            cur = job0.options[sol[j0][0]]
            cheaper = sorted(
                (o for o in job0.options if o.cost < cur.cost), key=lambda o: (o.cost, o.machine)
            )
            ms = [
                cur.machine,
                *(o.machine for o in cheaper[: rng.randint(*tuning.lns_cheaper_machines)]),
            ]
            center = sol[j0][1]
        elif kind < tuning.lns_costly + tuning.lns_band and sol:
            # a band of time across all the component's machines: the jobs placed
            # nearest a point in time may trade machines with each other
            placed_all = sorted(sol)
            center = sol[placed_all[rng.randrange(len(placed_all))]][1]
            ms = machines
        else:
            m0 = machines[rng.randrange(len(machines))]
            rel = related(m0)[: tuning.lns_related_pool]
            rng.shuffle(rel)
            ms = [m0, *rel[: rng.randint(*tuning.lns_related_machines)]]
            placed_here = [j for m in ms for j in on_machine[m]]
            if placed_here and rng.random() < tuning.lns_center_on_job:
                j0 = placed_here[rng.randrange(len(placed_here))]
                center = sol[j0][1]
            else:
                spans = [(s, e) for m in ms for s, e in cp.free[m]]
                lo = min(s for s, _ in spans)
                hi = max(e for _, e in spans)
                center = rng.randint(lo, hi)
        mset = set(ms)
        placed = [j for m in ms for j in on_machine[m]]
        placed.sort(key=lambda j: (abs(sol[j][1] - center), j))
        freed = placed[:size]
        waiting = [j for j in {j for m in ms for j in cand[m]} if j not in sol]
        waiting.sort(key=lambda j: (abs(cp.jobs[j].release - center), j))
        freed += waiting[: max(tuning.lns_waiting_min, size // tuning.lns_waiting_divisor)]
        if not freed:
            spent += tuning.lns_step_dtime
            continue
        _give_back(cp, sol, free, freed)
        residual = tuple(
            tuple(zip(free.starts[m], free.ends[m], strict=True)) if m in mset else ()
            for m in range(len(cp.free))
        )
        sub = replace(cp, free=residual)
        hint = {j: sol[j] for j in freed if j in sol}
        before = component_cost(cp, sol, freed)
        step = min(max(0.05, budget - spent), tuning.lns_step_limit)
        # deterministic: the wall clock is only the overall safety net
        step_wall = wall_end - time.monotonic()
        if not search.deterministic:
            step_wall = min(step * tuning.lns_step_wall_factor, step_wall)
        answer = solve_interval_model(
            sub,
            sorted(freed),
            hint,
            step,
            max(0.05, step_wall),
            search.reseeded(search.seed + stats["steps"]),
            None,
        )
        got, optimal = answer.solution, answer.optimal
        spent += answer.dtime + tuning.lns_step_dtime + tuning.lns_var_dtime * answer.choices
        new = hint
        if got is not None:
            cost = component_cost(cp, got, freed)
            if cost <= before and all(cp.jobs[j].options[got[j][0]].machine in mset for j in got):
                new = got
                if cost < before:
                    stats["improved"] += 1
                    stats["gain"] += before - cost
        _replace(cp, sol, free, on_machine, freed, new, lambda j: j)
        if optimal:
            size = min(tuning.lns_max, size + tuning.lns_grow)
        else:
            size = max(tuning.lns_min, size - tuning.lns_shrink)
    if math.isfinite(budget):
        # more than 0: the wall clock, not the deterministic budget, ended the search
        stats["budget_left_pct"] = round(100 * max(0.0, budget - spent) / budget)
    return sol, stats


def _orders_cost(cp: CompiledProblem, sol: Solution, orders: list[int]) -> int:
    """Cost of whole orders: placed costs, tardiness, hop costs, penalties."""
    total = 0
    for oi in orders:
        js = cp.orders[oi].jobs
        total += component_cost(cp, sol, list(js))
        for a, b in zip(js, js[1:], strict=False):
            if a in sol and b in sol:
                total += cp.hop(
                    cp.jobs[a].options[sol[a][0]].machine, cp.jobs[b].options[sol[b][0]].machine
                )[1]
    return total


def lns_orders(
    cp: CompiledProblem,
    sol: Solution,
    comp: list[int],
    budget: float,
    wall_end: float,
    search: Search,
) -> tuple[Solution, dict[str, int]]:
    """LNS for components with multi-operation orders (cost mode): free a few whole
    orders (an unplaced or a costly one, and the orders placed on its machines near its
    time), re-solve them exactly with the interval model in the free time the rest of
    the schedule leaves (all machines), keep the result when it is not worse.  Budget
    in deterministic time as in :func:`lns`."""
    tuning = search.tuning

    sol = {j: sol[j] for j in comp if j in sol}
    stats = {"steps": 0, "improved": 0, "gain": 0}
    order_ids = sorted({cp.jobs[j].order for j in comp})
    if not order_ids or budget <= 0:
        return sol, stats
    rng = random.Random(search.seed * 7919 + comp[0])  # a stream per component
    free = free_after(cp, sol)
    on_machine: dict[int, set[int]] = defaultdict(set)  # machine -> orders placed there
    for j, (oi, _st) in sol.items():
        on_machine[cp.jobs[j].options[oi].machine].add(cp.jobs[j].order)
    size = tuning.order_lns_start
    spent = 0.0
    while spent < budget and time.monotonic() < wall_end - tuning.lns_wall_margin_s:
        stats["steps"] += 1
        unplaced = [o for o in order_ids if cp.orders[o].jobs[0] not in sol]
        if unplaced and rng.random() < tuning.order_lns_unplaced:
            o0 = unplaced[rng.randrange(len(unplaced))]
        else:
            o0 = order_ids[rng.randrange(len(order_ids))]
        jobs0 = cp.orders[o0].jobs
        center = sol[jobs0[0]][1] if jobs0[0] in sol else cp.jobs[jobs0[0]].release
        ms = sorted({o.machine for j in jobs0 for o in cp.jobs[j].options})
        rng.shuffle(ms)
        near: set[int] = set()
        for m in ms[: rng.randint(*tuning.order_lns_machines)]:
            near |= on_machine[m]
        near.discard(o0)

        def dist(o: int, center: int = center) -> tuple[int, int]:
            return (min(abs(sol[j][1] - center) for j in cp.orders[o].jobs if j in sol), o)

        freed_orders = [o0, *sorted(near, key=dist)[: size - 1]]
        freed = sorted(j for o in freed_orders for j in cp.orders[o].jobs)
        _give_back(cp, sol, free, freed)
        residual = tuple(
            tuple(zip(free.starts[m], free.ends[m], strict=True)) for m in range(len(cp.free))
        )
        sub = chain_windows(replace(cp, free=residual), freed)
        hint = {j: sol[j] for j in freed if j in sol}
        before = _orders_cost(cp, sol, freed_orders)
        step = min(max(0.05, budget - spent), tuning.order_lns_step_limit)
        step_wall = wall_end - time.monotonic()
        if not search.deterministic:
            step_wall = min(step * tuning.lns_step_wall_factor, step_wall)
        answer = solve_interval_model(
            sub,
            freed,
            hint,
            step,
            max(0.05, step_wall),
            search.reseeded(search.seed + stats["steps"]),
            None,
        )
        got, optimal = answer.solution, answer.optimal
        spent += (
            answer.dtime + tuning.order_lns_step_dtime + tuning.order_lns_var_dtime * answer.choices
        )
        new = hint
        if got is not None:
            cost = _orders_cost(cp, got, freed_orders)
            if cost <= before:
                new = got
                if cost < before:
                    stats["improved"] += 1
                    stats["gain"] += before - cost
        _replace(cp, sol, free, on_machine, freed, new, lambda j: cp.jobs[j].order)
        if optimal:
            size = min(tuning.order_lns_max, size + tuning.order_lns_grow)
        else:
            size = max(tuning.order_lns_min, size - tuning.order_lns_shrink)
    return sol, stats


def improve_by_lns(
    cp: CompiledProblem, task: ComponentTask, part: Solution, spent_share: float
) -> Solution:
    """Repair ``part`` (never worse than the greedy's part), then LNS on it for what is
    left of the task's share after ``spent_share`` (deterministic mode; otherwise until
    the share's wall time, or the solve's end when nothing waits for this thread)."""
    comp = task.jobs
    part = repair(cp, part, comp, until=task.started + task.wall)
    if component_cost(cp, task.hint, comp) < component_cost(cp, part, comp):
        part = dict(task.hint)
    t_lns = time.monotonic()
    if task.search.deterministic:
        budget = (task.share - spent_share) * task.lns_rate * task.search.tuning.dtime_per_second
        end = task.started + task.wall
    else:
        budget = float("inf")
        end = task.started + task.share
        if task.open_end is not None:
            end = task.open_end  # nothing waits for this thread
    part, stats = lns(cp, part, comp, budget, end, task.search)
    task.report(
        phase="lns",
        component=task.index,
        slot_s=round(t_lns - task.started, 2),
        slot_charged=round(spent_share, 2),
        **stats,
    )
    return part


@dataclass(frozen=True, slots=True)
class GreedyLnsStrategy:
    """For components too large for the slot model within the time: LNS from the
    greedy for the whole share."""

    name: str = "greedy-lns"

    def run(self, cp: CompiledProblem, task: ComponentTask) -> ComponentResult:
        part = improve_by_lns(cp, task, dict(task.hint), 0.0)
        return ComponentResult(part, trivial_bound(cp, task.jobs), False)
