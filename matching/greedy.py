"""Greedy list scheduling: the baseline, the warm start and the repair step.

Orders are taken one at a time in a priority order; each job of the order goes to the
option with the smallest cost (+ tardiness at its earliest start, + hop cost from the
previous job's machine), at the earliest start in the remaining free time.  An order
that cannot be completed is rolled back (all-or-nothing).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

from matching.compiled import NO_DUE, CompiledProblem, Job
from matching.domain import ObjectiveMode
from matching.objective import evaluate, tardiness_cost

Pieces = list[list[int]]  # per machine: sorted, disjoint [start, end) pieces, flat [s0,e0,s1,e1..]


class FreeTime:
    """Remaining free time per machine (sorted disjoint pieces), with the longest piece
    of each machine, so that a job longer than every piece is refused at once."""

    __slots__ = ("starts", "ends", "longest")

    def __init__(self, free: Sequence[Sequence[tuple[int, int]]]) -> None:
        self.starts = [[s for s, _ in f] for f in free]
        self.ends = [[e for _, e in f] for f in free]
        self.longest = [max((e - s for s, e in f), default=0) for f in free]

    def copy(self) -> FreeTime:
        other = FreeTime.__new__(FreeTime)
        other.starts = [list(s) for s in self.starts]
        other.ends = [list(e) for e in self.ends]
        other.longest = list(self.longest)
        return other

    def earliest(self, m: int, dur: int, release: int, latest_end: int) -> int | None:
        if dur > self.longest[m]:
            return None
        starts, ends = self.starts[m], self.ends[m]
        # first piece that ends after release + dur
        k = bisect.bisect_left(ends, release + dur)
        n = len(starts)
        while k < n:
            st = max(starts[k], release)
            if st + dur > latest_end:
                return None
            if st + dur <= ends[k]:
                return st
            k += 1
        return None

    def take(self, m: int, start: int, end: int) -> None:
        if end <= start:  # zero-length operations occupy nothing
            return
        starts, ends = self.starts[m], self.ends[m]
        k = bisect.bisect_right(starts, start) - 1
        s, e = starts[k], ends[k]
        assert s <= start and end <= e, "taking time that is not free"
        del starts[k], ends[k]
        if end < e:
            starts.insert(k, end)
            ends.insert(k, e)
        if s < start:
            starts.insert(k, s)
            ends.insert(k, start)
        if e - s == self.longest[m]:  # the longest piece may be gone
            self.longest[m] = max((b - a for a, b in zip(starts, ends, strict=True)), default=0)

    def give_back(self, m: int, start: int, end: int) -> None:
        if end <= start:
            return
        starts, ends = self.starts[m], self.ends[m]
        k = bisect.bisect_left(starts, start)
        if k > 0 and ends[k - 1] == start:
            k -= 1
            start = starts[k]
            del starts[k], ends[k]
        if k < len(starts) and starts[k] == end:
            end = ends[k]
            del starts[k], ends[k]
        starts.insert(k, start)
        ends.insert(k, end)
        if end - start > self.longest[m]:
            self.longest[m] = end - start

    def piece_of(self, m: int, t: int) -> tuple[int, int] | None:
        k = bisect.bisect_right(self.starts[m], t) - 1
        if k >= 0 and self.ends[m][k] > t:
            return self.starts[m][k], self.ends[m][k]
        return None


def place_order(
    cp: CompiledProblem, free: FreeTime, order_idx: int, sol: dict[int, tuple[int, int]]
) -> bool:
    """Place every job of one order greedily, or nothing (rolls back)."""
    order = cp.orders[order_idx]
    makespan = cp.mode is ObjectiveMode.MAKESPAN
    taken: list[tuple[int, int, int, int]] = []  # job, machine, start, end
    prev_m = -1
    prev_end = 0
    price = 0
    for j in order.jobs:
        job = cp.jobs[j]
        opts = job.options
        best: tuple[int, int, int] | None = None  # value, option, start
        if makespan:
            for oi, opt in enumerate(opts):
                rel = job.release
                if prev_m >= 0:
                    rel = max(rel, prev_end + cp.hop(prev_m, opt.machine)[0])
                st = free.earliest(opt.machine, opt.duration, rel, opt.latest_end)
                if st is not None and (best is None or st + opt.duration < best[0]):
                    best = (st + opt.duration, oi, st)
        else:
            # cheapest first: a value is at least the option's cost, so the scan stops
            # at the first option that cannot beat the best (ties: the lowest index)
            for oi in cp.options_by_cost(j):
                opt = opts[oi]
                if best is not None and (
                    opt.cost > best[0] or (opt.cost == best[0] and oi > best[1])
                ):
                    break
                rel = job.release
                hop_cost = 0
                if prev_m >= 0:
                    lag, hop_cost = cp.hop(prev_m, opt.machine)
                    rel = max(rel, prev_end + lag)
                st = free.earliest(opt.machine, opt.duration, rel, opt.latest_end)
                if st is None:
                    continue
                val = opt.cost + hop_cost + tardiness_cost(job, opt, st + opt.duration)
                if best is None or val < best[0] or (val == best[0] and oi < best[1]):
                    best = (val, oi, st)
        if best is None:
            break
        opt = job.options[best[1]]
        free.take(opt.machine, best[2], best[2] + opt.duration)
        taken.append((j, opt.machine, best[2], best[2] + opt.duration))
        sol[j] = (best[1], best[2])
        price += opt.price
        prev_m, prev_end = opt.machine, best[2] + opt.duration
    ok = len(taken) == len(order.jobs) and (order.budget is None or price <= order.budget)
    if not ok:
        for j, m, s, e in taken:
            free.give_back(m, s, e)
            del sol[j]
    return ok


def _order_due(cp: CompiledProblem, oi: int) -> int:
    last = cp.jobs[cp.orders[oi].jobs[-1]]
    dues = [min(o.due, o.latest_end) for o in last.options]
    d = min(dues, default=NO_DUE)
    return d


def priority_orders(cp: CompiledProblem) -> dict[str, list[int]]:
    """Named priority orders over orders that have options."""
    live = [oi for oi, o in enumerate(cp.orders) if all(cp.jobs[j].options for j in o.jobs)]
    due = {oi: _order_due(cp, oi) for oi in live}

    def nopts(oi: int) -> int:
        return min(len(cp.jobs[j].options) for j in cp.orders[oi].jobs)

    def work(oi: int) -> int:
        return sum(min(o.duration for o in cp.jobs[j].options) for j in cp.orders[oi].jobs)

    def value_density(oi: int) -> float:
        pen = sum(cp.jobs[j].penalty for j in cp.orders[oi].jobs)
        cheapest = sum(min(o.cost for o in cp.jobs[j].options) for j in cp.orders[oi].jobs)
        return -(pen - cheapest) / max(1, work(oi))

    return {
        "edd": sorted(live, key=lambda oi: (due[oi], oi)),
        "fewest_options": sorted(live, key=lambda oi: (nopts(oi), due[oi], oi)),
        "longest_first": sorted(live, key=lambda oi: (-work(oi), due[oi], oi)),
        "value_density": sorted(live, key=lambda oi: (value_density(oi), due[oi], oi)),
    }


def fewest_options(cp: CompiledProblem, orders: Sequence[int]) -> list[int]:
    """``priority_orders(cp)["fewest_options"]`` restricted to ``orders``."""
    live = [oi for oi in orders if all(cp.jobs[j].options for j in cp.orders[oi].jobs)]

    def key(oi: int) -> tuple[int, int, int]:
        nopts = min(len(cp.jobs[j].options) for j in cp.orders[oi].jobs)
        return (nopts, _order_due(cp, oi), oi)

    return sorted(live, key=key)


def greedy(
    cp: CompiledProblem,
    sequence: Sequence[int],
    free: FreeTime | None = None,
    sol: dict[int, tuple[int, int]] | None = None,
) -> dict[int, tuple[int, int]]:
    free = free if free is not None else FreeTime(cp.free)
    sol = sol if sol is not None else {}
    for oi in sequence:
        place_order(cp, free, oi, sol)
    return sol


def best_greedy(
    cp: CompiledProblem,
    names: Sequence[str] | None = None,
    deadline: Callable[[], bool] | None = None,
    orders: dict[str, list[int]] | None = None,
) -> tuple[str, dict[int, tuple[int, int]], dict[str, int]]:
    """Run several priority orders (the engine's, unless ``orders`` are given); return
    (name, solution, objective per order)."""
    orders = orders if orders is not None else priority_orders(cp)
    best_name, best_sol, best_val = "", {}, None
    values: dict[str, int] = {}
    for name, seq in orders.items():
        if names is not None and name not in names:
            continue
        sol = greedy(cp, seq)
        val = evaluate(cp, sol)
        values[name] = val
        if best_val is None or val < best_val:
            best_name, best_sol, best_val = name, sol, val
        if deadline is not None and deadline():
            break
    return best_name, best_sol, values


def free_after(cp: CompiledProblem, sol: dict[int, tuple[int, int]]) -> FreeTime:
    free = FreeTime(cp.free)
    for j, (oi, st) in sol.items():
        opt = cp.jobs[j].options[oi]
        free.take(opt.machine, st, st + opt.duration)
    return free


def job_value_estimate(job: Job) -> int:
    return job.penalty - min((o.cost for o in job.options), default=0)
