"""One ``add_<rule>`` function per rule, for the two CP-SAT models of the engine.

*Slot model* (:class:`SlotVars`): one Boolean per (job, option, free slot) in which the
job fits on its own; capability, eligibility, machine availability (one free interval),
release time and hard due are therefore enforced **by construction** (see
:func:`slot_entries`).  It is a relaxation of the true problem (order inside a slot is
decided afterwards, exactly), which is why its CP-SAT/LP bound is a valid bound.

*Interval model* (:class:`IntervalVars`): one optional interval per (job, option,
slot) with the start restricted to the feasible in-slot range; exact, used for orders
with several operations (precedence, transport lags), makespan mode and small
sub-problems.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from matching.compiled import CompiledProblem

# --------------------------------------------------------------------------- slot model


@dataclass(frozen=True, slots=True)
class SlotEntry:
    job: int
    option: int
    slot: int
    duration: int
    est: int  # earliest start inside the slot
    lft: int  # latest finish inside the slot
    cost: int  # option cost + tardiness at the earliest start


@dataclass(slots=True)
class SlotVars:
    slots: list[tuple[int, int, int]]  # machine, start, end
    entries: list[SlotEntry]
    x: list[cp_model.IntVar] = field(default_factory=list)  # parallel to entries
    u: dict[int, cp_model.IntVar] = field(default_factory=dict)  # job -> unassigned


def slot_entries(
    cp: CompiledProblem, jobs: list[int]
) -> tuple[list[tuple[int, int, int]], list[SlotEntry]]:
    """Hard, by construction: capability (only options exist), availability (the job
    fits inside one free slot on its own), release time and hard latest end."""
    slot_index: dict[tuple[int, int], int] = {}
    slots: list[tuple[int, int, int]] = []
    entries: list[SlotEntry] = []
    for j in jobs:
        job = cp.jobs[j]
        for oi, opt in enumerate(job.options):
            for g, (s, e) in enumerate(cp.free[opt.machine]):
                est = max(s, job.release)
                lft = min(e, opt.latest_end)
                if est + opt.duration > lft:
                    continue
                key = (opt.machine, g)
                si = slot_index.get(key)
                if si is None:
                    si = slot_index[key] = len(slots)
                    slots.append((opt.machine, s, e))
                end = est + opt.duration
                tard = job.tardiness_per_min * max(0, end - opt.due)
                entries.append(SlotEntry(j, oi, si, opt.duration, est, lft, opt.cost + tard))
    return slots, entries


def add_one_option_or_unassigned(model: cp_model.CpModel, v: SlotVars | IntervalVars) -> None:
    """Hard: every job takes exactly one of its (option, slot) choices or is unassigned."""
    by_job: dict[int, list[cp_model.IntVar]] = defaultdict(list)
    if isinstance(v, SlotVars):
        for e, x in zip(v.entries, v.x, strict=True):
            by_job[e.job].append(x)
    else:
        for (j, _o, _g), p in v.presence.items():
            by_job[j].append(p)
    for j, xs in by_job.items():
        model.add_exactly_one([*xs, v.u[j]])


def add_slot_capacity(model: cp_model.CpModel, v: SlotVars) -> None:
    """Hard (knapsack relaxation of no-overlap): the durations placed in a free slot
    sum to at most its length."""
    per_slot: dict[int, list[int]] = defaultdict(list)
    for k, e in enumerate(v.entries):
        per_slot[e.slot].append(k)
    for si, ks in per_slot.items():
        _m, s, t = v.slots[si]
        if sum(v.entries[k].duration for k in ks) <= t - s:
            continue
        model.add(sum(v.entries[k].duration * v.x[k] for k in ks) <= t - s)


def window_rows(
    v: SlotVars,
    max_points: int,
    stop_at: float | None = None,
) -> list[tuple[int, list[int], int]]:
    """(slot, entry indices, capacity) rows: for checkpoint pairs a < b in a slot, the
    jobs whose in-slot window lies inside [a, b] must fit in b - a.  Valid for every
    schedule, so adding them keeps the model a relaxation (also when ``stop_at``, a
    ``time.monotonic()`` instant, cuts the list short)."""
    per_slot: dict[int, list[int]] = defaultdict(list)
    for k, e in enumerate(v.entries):
        per_slot[e.slot].append(k)
    rows: list[tuple[int, list[int], int]] = []
    for si, ks in per_slot.items():
        if stop_at is not None and time.monotonic() > stop_at:
            break
        _m, s, t = v.slots[si]
        if len(ks) < 2 or sum(v.entries[k].duration for k in ks) <= t - s:
            continue
        ests = sorted({v.entries[k].est for k in ks})
        lfts = sorted({v.entries[k].lft for k in ks})
        los = _quantiles(ests, max_points)
        his = _quantiles(lfts, max_points)
        if s not in los:
            los.insert(0, s)
        if t not in his:
            his.append(t)
        seen: set[tuple[int, ...]] = set()
        for a in los:
            for b in his:
                if b <= a or (a == s and b == t):
                    continue
                inside = [k for k in ks if v.entries[k].est >= a and v.entries[k].lft <= b]
                if len(inside) < 2 or sum(v.entries[k].duration for k in inside) <= b - a:
                    continue
                key = tuple(inside)
                if key in seen:
                    continue
                seen.add(key)
                rows.append((si, inside, b - a))
    return rows


def add_slot_time_windows(model: cp_model.CpModel, v: SlotVars, max_points: int) -> None:
    """Hard (necessary condition for release and deadline inside a slot): see
    :func:`window_rows`."""
    for _si, ks, cap in window_rows(v, max_points):
        model.add(sum(v.entries[k].duration * v.x[k] for k in ks) <= cap)


def _quantiles(values: list[int], n: int) -> list[int]:
    if len(values) <= n:
        return list(values)
    return sorted({values[round(i * (len(values) - 1) / (n - 1))] for i in range(n)})


# ----------------------------------------------------------------------- interval model


@dataclass(slots=True)
class IntervalVars:
    presence: dict[tuple[int, int, int], cp_model.IntVar] = field(default_factory=dict)
    interval: dict[tuple[int, int, int], cp_model.IntervalVar] = field(default_factory=dict)
    start: dict[tuple[int, int, int], cp_model.IntVar] = field(default_factory=dict)
    u: dict[int, cp_model.IntVar] = field(default_factory=dict)
    job_start: dict[int, cp_model.IntVar] = field(default_factory=dict)
    job_end: dict[int, cp_model.IntVar] = field(default_factory=dict)
    uses_machine: dict[tuple[int, int], cp_model.IntVar] = field(default_factory=dict)
    tardiness: dict[int, cp_model.IntVar] = field(default_factory=dict)
    hop_terms: list[tuple[int, cp_model.IntVar]] = field(default_factory=list)
    hops: list[tuple[int, int, cp_model.IntVar]] = field(default_factory=list)  # (a, b, cost)
    makespan: cp_model.IntVar | None = None
    max_owner_load: cp_model.IntVar | None = None


def add_no_overlap_per_machine(
    model: cp_model.CpModel, cp: CompiledProblem, v: IntervalVars
) -> None:
    """Hard: two operations never overlap on one machine (half-open intervals)."""
    per_machine: dict[int, list[cp_model.IntervalVar]] = defaultdict(list)
    for (j, o, _g), iv in v.interval.items():
        per_machine[cp.jobs[j].options[o].machine].append(iv)
    for ivs in per_machine.values():
        if len(ivs) > 1:
            model.add_no_overlap(ivs)


def add_order_all_or_nothing(
    model: cp_model.CpModel, cp: CompiledProblem, v: IntervalVars, jobs: set[int]
) -> None:
    """Hard: the operations of one order are placed together or not at all."""
    for order in cp.orders:
        js = [j for j in order.jobs if j in jobs]
        for a, b in zip(js, js[1:], strict=False):
            model.add(v.u[a] == v.u[b])


def add_precedence_with_transport(
    model: cp_model.CpModel, cp: CompiledProblem, v: IntervalVars, jobs: set[int]
) -> None:
    """Hard: each operation starts after its predecessor ends plus the transport time
    between the two machines' sites; soft: the hop's transport cost.

    Per predecessor machine x (Boolean ``ya[x]``), the lag and the cost are linear in the
    successor's machine Booleans (exactly one is true when the order is placed):
    ``end_a + sum_y lag(x, y) yb[y] <= start_b`` and ``hop >= sum_y cost(x, y) yb[y]``,
    both enforced by ``ya[x]``; ``hop`` is minimised, so it equals the true cost.  This
    takes |A| + |B| terms' worth of objects instead of one Boolean per machine pair."""
    for order in cp.orders:
        js = [j for j in order.jobs if j in jobs]
        for a, b in zip(js, js[1:], strict=False):
            placed = v.u[a].Not()
            # machines the operation can actually use (some option may fit nowhere)
            ma = sorted({o.machine for o in cp.jobs[a].options if (a, o.machine) in v.uses_machine})
            mb = sorted({o.machine for o in cp.jobs[b].options if (b, o.machine) in v.uses_machine})
            model.add(v.job_end[a] <= v.job_start[b]).only_enforce_if(placed)
            hop: cp_model.IntVar | None = None
            for x in ma:
                lags, lvars, costs, cvars = [], [], [], []
                for y in mb:
                    lag, cost = cp.hop(x, y)
                    if lag:
                        lags.append(lag)
                        lvars.append(v.uses_machine[(b, y)])
                    if cost:
                        costs.append(cost)
                        cvars.append(v.uses_machine[(b, y)])
                ya = v.uses_machine[(a, x)]
                if lags:
                    model.add(
                        v.job_end[a] + cp_model.LinearExpr.weighted_sum(lvars, lags)
                        <= v.job_start[b]
                    ).only_enforce_if(ya)
                if costs:
                    if hop is None:
                        top = max(cp.hop(x2, y2)[1] for x2 in ma for y2 in mb)
                        hop = model.new_int_var(0, top, f"hop_{a}_{b}")
                        v.hop_terms.append((1, hop))
                        v.hops.append((a, b, hop))
                    model.add(
                        hop >= cp_model.LinearExpr.weighted_sum(cvars, costs)
                    ).only_enforce_if(ya)


def add_budget(
    model: cp_model.CpModel, cp: CompiledProblem, v: IntervalVars, jobs: set[int]
) -> None:
    """Hard: the processing prices of an order's operations sum to at most its budget."""
    by_job: dict[int, list[tuple[int, cp_model.IntVar]]] = defaultdict(list)
    for (j, o, _g), p in v.presence.items():
        by_job[j].append((cp.jobs[j].options[o].price, p))
    for order in cp.orders:
        if order.budget is None or not all(j in jobs for j in order.jobs):
            continue
        terms = [t for j in order.jobs for t in by_job[j]]
        if sum(max((c for c, _p in by_job[j]), default=0) for j in order.jobs) <= order.budget:
            continue  # cannot be exceeded
        model.add(
            cp_model.LinearExpr.weighted_sum([p for _c, p in terms], [c for c, _p in terms])
            <= order.budget
        )


def add_tardiness(model: cp_model.CpModel, cp: CompiledProblem, v: IntervalVars) -> None:
    """Soft: per-minute price of ending after the (option's) due time."""
    for (j, o, _g), p in v.presence.items():
        job = cp.jobs[j]
        if job.tardiness_per_min == 0:
            continue
        opt = job.options[o]
        t = v.tardiness.get(j)
        if t is None:
            t = v.tardiness[j] = model.new_int_var(0, 1 << 32, f"tard_{j}")
        model.add(t >= v.job_end[j] - opt.due).only_enforce_if(p)


def add_makespan(model: cp_model.CpModel, v: IntervalVars, horizon: int) -> None:
    """Objective helper (makespan mode): makespan >= end of every placed job."""
    v.makespan = model.new_int_var(0, horizon, "makespan")
    for j, e in v.job_end.items():
        model.add(v.makespan >= e).only_enforce_if(v.u[j].Not())


def add_owner_spread(
    model: cp_model.CpModel, cp: CompiledProblem, choices: list[tuple[int, int, cp_model.IntVar]]
) -> cp_model.IntVar | None:
    """Soft: the number of jobs given to the busiest owner (weighted by
    ``owner_spread_fen`` in the objective).  ``choices`` are (job, option, Boolean)."""
    if not cp.owner_spread_fen:
        return None
    per_owner: dict[str, list[cp_model.IntVar]] = defaultdict(list)
    for j, o, b in choices:
        per_owner[cp.owners[cp.jobs[j].options[o].machine]].append(b)
    top = model.new_int_var(0, len(cp.jobs), "max_owner_load")
    for bs in per_owner.values():
        model.add(top >= sum(bs))
    return top
