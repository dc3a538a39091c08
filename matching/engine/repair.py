"""Repair: greedily place what is left out into the remaining free time, then move
single-operation orders to cheaper spots.  Run after every strategy and at the end."""

from __future__ import annotations

import time

from matching.compiled import CompiledProblem
from matching.domain import ObjectiveMode
from matching.engine.common import Solution
from matching.greedy import FreeTime, fewest_options, free_after, place_order, priority_orders
from matching.objective import placed_cost


def repair(
    cp: CompiledProblem, sol: Solution, jobs: list[int] | None = None, until: float | None = None
) -> Solution:
    """Greedily place unplaced orders into the remaining free time (fewest options
    first), then try moving each placed single-job order to a cheaper spot; with
    ``until`` (a ``time.monotonic()``), only as long as that time is not reached."""
    sol = dict(sol)
    free = free_after(cp, sol)
    allowed = None if jobs is None else set(jobs)
    if allowed is None:
        seq = priority_orders(cp)["fewest_options"]
    else:  # the component's orders only: a repair costs its size, not the market's
        seq = fewest_options(cp, sorted({cp.jobs[j].order for j in allowed}))
    for n, oi in enumerate(seq):
        if until is not None and n % 256 == 0 and time.monotonic() > until:
            return sol
        order = cp.orders[oi]
        if allowed is not None and order.jobs[0] not in allowed:
            continue
        if order.jobs[0] not in sol:
            place_order(cp, free, oi, sol)
    _reinsert(cp, sol, free, allowed, until)
    return sol


def _reinsert(
    cp: CompiledProblem,
    sol: Solution,
    free: FreeTime,
    allowed: set[int] | None,
    until: float | None = None,
) -> None:
    """Move single-job orders to a cheaper placement in the free time, one at a time."""
    if cp.owner_spread_fen or cp.mode is ObjectiveMode.MAKESPAN:
        return
    for n, order in enumerate(cp.orders):
        if until is not None and n % 256 == 0 and time.monotonic() > until:
            return
        if len(order.jobs) != 1:
            continue
        j = order.jobs[0]
        if j not in sol or (allowed is not None and j not in allowed):
            continue
        job = cp.jobs[j]
        oi, st = sol[j]
        cur = placed_cost(job, job.options[oi], st)
        opt = job.options[oi]
        free.give_back(opt.machine, st, st + opt.duration)
        best = (cur, oi, st)
        for k, o in enumerate(job.options):
            s2 = free.earliest(o.machine, o.duration, job.release, o.latest_end)
            if s2 is None:
                continue
            c = placed_cost(job, o, s2)
            if c < best[0]:
                best = (c, k, s2)
        o = job.options[best[1]]
        free.take(o.machine, best[2], best[2] + o.duration)
        sol[j] = (best[1], best[2])
