"""The knapsack strategy, for components where the slot model is the whole problem
(single operations that may sit anywhere in their free slots: no release or latest end
inside a slot, no tardiness; e.g. GAP): SCIP on the 0-1 slot model first (it proves
small GAPs optimal fast), then, unless that settled it, CP-SAT on the slot model hinted
with the best so far; no LNS.  See ``matching/NOTES.md``."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

from ortools.sat.python import cp_model

from matching import bound as B
from matching import constraints as C
from matching.compiled import CompiledProblem
from matching.engine.common import (
    ComponentResult,
    ComponentTask,
    Search,
    Solution,
    component_cost,
    trivial_bound,
)
from matching.engine.repair import repair
from matching.engine.sequence import sequence_slot
from matching.engine.slots import sequence_slots, solve_slot_model


def slots_exact(cp: CompiledProblem, comp: list[int]) -> bool:
    """True when the slot model is exact for ``comp``: every option fits in its slots
    wherever it sits (release before the slot, latest end after it, no tardiness), so
    any set of jobs within a slot's length runs back to back in it (a GAP-like
    component: multiple knapsacks)."""
    for j in comp:
        job = cp.jobs[j]
        for opt in job.options:
            for s, e in cp.free[opt.machine]:
                if opt.duration > e - s:
                    continue
                if job.release > s or opt.latest_end < e or (job.tardiness_per_min and opt.due < e):
                    return False
    return True


def _places_all(cp: CompiledProblem, comp: list[int]) -> bool:
    """Every optimum places all jobs if some complete solution exists (SCIP answers only
    with one) and any incomplete solution costs more than any complete one: at least the
    sum of cheapest option costs plus, for one job left out, its penalty minus its
    cheapest cost, against at most the sum of dearest option costs."""
    cheapest = {j: min(o.cost for o in cp.jobs[j].options) for j in comp}
    dearest = sum(max(o.cost for o in cp.jobs[j].options) for j in comp)
    extra = [cp.jobs[j].penalty - cheapest[j] for j in comp]
    return min(extra) >= 0 and sum(cheapest.values()) + min(extra) > dearest


def solve_knapsack_slots(
    cp: CompiledProblem,
    comp: list[int],
    hint: Solution,
    share: float,
    wall: float,
    search: Search,
    cb: cp_model.CpSolverSolutionCallback | None,
) -> tuple[Solution, int, bool]:
    """SCIP, then CP-SAT, on the slot model of ``comp``.  Returns (solution, lower bound,
    proven optimal)."""
    tuning = search.tuning
    t_start = time.monotonic()
    slots, entries = C.slot_entries(cp, comp)
    v = C.SlotVars(slots, entries)
    mip_s = min(tuning.knapsack_mip_fraction * share, tuning.knapsack_mip_fraction * wall)
    # SCIP's answer counts only when proven, and its fixed costs may overrun a short
    # allotment: a grace on top, from CP-SAT's part and from the share alone (NOTES.md)
    grace = min(mip_s, tuning.knapsack_mip_grace_s, tuning.knapsack_mip_grace_fraction * share)
    mip_wall = min(mip_s + grace, wall)
    lb, chosen, mip_opt = B.mip_solve(
        cp,
        v,
        comp,
        mip_wall,
        place_all=_places_all(cp, comp),
        presolve=False,
        tuning=tuning,
    )
    best = dict(hint)
    # deterministic mode: SCIP's solution only when proven optimal (where a search
    # stopped by the wall clock ends is not deterministic; its optimum is)
    if chosen is not None and (mip_opt or not search.deterministic):
        by_slot: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for k in chosen:
            by_slot[entries[k].slot].append((entries[k].job, entries[k].option))
        got: Solution = {}
        for si, items in sorted(by_slot.items()):
            _m, s, t = slots[si]
            placed, _dropped = sequence_slot(cp, s, t, items, exact_up_to=0)
            for j, o, st in placed:
                got[j] = (o, st)
        got = repair(cp, got, comp)
        if component_cost(cp, got, comp) <= component_cost(cp, best, comp):
            best = got
    bound = lb or 0
    cost = component_cost(cp, best, comp)
    if mip_opt and bound >= cost:
        return best, cost, True
    spent = time.monotonic() - t_start
    rest_share = max(0.05, share - (mip_s + grace if search.deterministic else spent))
    answer = solve_slot_model(
        cp, comp, best, rest_share, max(0.05, wall - spent), search, cb, with_lp=lb is None
    )
    # any order fits in an exact slot: no enumeration of orders needed
    part = sequence_slots(cp, answer, exact_up_to=0)
    if not answer.chosen or component_cost(cp, best, comp) < component_cost(cp, part, comp):
        part = best
    return part, max(bound, answer.cp_bound, answer.lp_bound), answer.optimal


@dataclass(frozen=True, slots=True)
class KnapsackStrategy:
    """SCIP then CP-SAT on the exact slot model, repaired, never worse than the greedy."""

    name: str = "knapsack"

    def run(self, cp: CompiledProblem, task: ComponentTask) -> ComponentResult:
        comp = task.jobs
        floor = trivial_bound(cp, comp)
        part, cbound, optimal = solve_knapsack_slots(
            cp,
            comp,
            task.hint,
            task.share * task.search_rate,
            task.wall,
            task.search,
            task.callback,
        )
        cbound = max(cbound, floor)
        part = repair(cp, part, comp)
        if component_cost(cp, task.hint, comp) < component_cost(cp, part, comp):
            part = dict(task.hint)
        return ComponentResult(part, cbound, optimal)
