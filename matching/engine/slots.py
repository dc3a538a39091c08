"""The slot strategy, for components of single-operation orders (cost and tardiness
modes): the *slot model* (one Boolean per (job, option, free slot), a knapsack row and
window rows per slot; :mod:`matching.constraints`), hinted with the greedy, then exact
sequencing inside every slot (:mod:`.sequence`); then, unless it proved the component
optimal, repair and LNS on the actual schedule (:mod:`.lns`) for the rest of the share.
Very large components are cut into time slices.  See ``matching/NOTES.md``."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, replace

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
    set_params,
    trivial_bound,
)
from matching.engine.lns import improve_by_lns
from matching.engine.sequence import sequence_slot
from matching.greedy import FreeTime
from matching.objective import minimize


@dataclass(frozen=True, slots=True)
class SlotAnswer:
    """What the slot model chose: ``chosen`` maps a slot to its (job, option) pairs;
    ``charged`` is the deterministic time it is charged for (SCIP's allotment plus
    CP-SAT's deterministic time, at most its ``time_s``)."""

    chosen: dict[int, list[tuple[int, int]]]
    vars: C.SlotVars
    cp_bound: int
    lp_bound: int
    optimal: bool
    charged: float


def solve_slot_model(
    cp: CompiledProblem,
    jobs: list[int],
    hint: Solution,
    time_s: float,
    wall_s: float,
    search: Search,
    cb: cp_model.CpSolverSolutionCallback | None,
    *,
    with_lp: bool = True,
    take_mip: bool = False,
) -> SlotAnswer:
    """The slot model of ``jobs`` for ``time_s`` (``wall_s`` bounds the whole call, model
    building and LP included).  Its 0-1 version first goes to SCIP for a small share of
    the time (for its bound); with ``take_mip``, when SCIP proves it optimal (and the
    objective has no owner-spread term, which SCIP's version leaves out), its solution is
    the answer and CP-SAT does not run."""
    tuning = search.tuning
    # data
    stop_at = time.monotonic() + wall_s
    slots, entries = C.slot_entries(cp, jobs)
    v = C.SlotVars(slots, entries)
    # bounds: LP relaxation, then its 0-1 version
    lp = (
        B.lp_bound(
            cp,
            v,
            jobs,
            time_limit_s=max(0.02, tuning.slot_lp_fraction * (stop_at - time.monotonic())),
            tuning=tuning,
        )
        if with_lp
        else None
    )
    chosen: dict[int, list[tuple[int, int]]] = defaultdict(list)
    charged = 0.0
    if lp is not None and tuning.mip_bound_fraction > 0:
        mip_s = min(
            tuning.mip_bound_fraction * time_s,
            tuning.mip_bound_wall_fraction * (stop_at - time.monotonic()),
        )
        if mip_s >= tuning.mip_bound_min_s:
            charged = mip_s
            mlb, mchosen, mopt = B.mip_solve(cp, v, jobs, mip_s, tuning=tuning)
            lp = max(lp, mlb or 0)
            if (
                take_mip
                and mopt
                and mchosen is not None
                and mlb is not None
                and not cp.owner_spread_fen
            ):
                for k in mchosen:
                    chosen[entries[k].slot].append((entries[k].job, entries[k].option))
                return SlotAnswer(chosen, v, mlb, lp, True, charged)
    # variables
    model = cp_model.CpModel()
    v.x = [model.new_bool_var("") for _ in entries]
    v.u = {j: model.new_bool_var("") for j in jobs}
    # constraints
    C.add_one_option_or_unassigned(model, v)
    C.add_slot_capacity(model, v)
    C.add_slot_time_windows(model, v, tuning.window_points)
    top = C.add_owner_spread(
        model, cp, [(e.job, e.option, x) for e, x in zip(entries, v.x, strict=True)]
    )
    # objective
    terms: list[tuple[int, cp_model.LinearExprT]] = [
        (e.cost, x) for e, x in zip(entries, v.x, strict=True)
    ]
    terms += [(cp.jobs[j].penalty, v.u[j]) for j in jobs]
    if top is not None:
        terms.append((cp.owner_spread_fen, top))
    minimize(model, terms)
    # hint: the greedy's choice of (option, slot)
    hinted: dict[int, int] = {}
    for k, e in enumerate(entries):
        got = hint.get(e.job)
        if got is not None and got[0] == e.option:
            m, s, t = slots[e.slot]
            if s <= got[1] < t:
                hinted[e.job] = k
    for k, (e, x) in enumerate(zip(entries, v.x, strict=True)):
        model.add_hint(x, hinted.get(e.job) == k)
    for j in jobs:
        model.add_hint(v.u[j], j not in hinted)
    # solve
    rest = stop_at - time.monotonic()
    if rest < tuning.min_solve_s:  # no time left to search: the caller falls back to the hint
        return SlotAnswer(chosen, v, 0, lp if lp is not None else 0, False, time_s)
    solver = cp_model.CpSolver()
    set_params(solver, time_s, rest, search)
    status = solver.solve(model, cb)
    if search.deterministic:
        charged = min(
            time_s, charged + solver.response_proto.deterministic_time / tuning.dtime_per_second
        )
    else:
        charged = time_s
    # extract
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        for e, x in zip(entries, v.x, strict=True):
            if solver.boolean_value(x):
                chosen[e.slot].append((e.job, e.option))
        cp_bound = int(solver.best_objective_bound)
    else:
        cp_bound = 0
    lp_value = lp if lp is not None else 0
    return SlotAnswer(chosen, v, cp_bound, lp_value, status == cp_model.OPTIMAL, charged)


def sequence_slots(
    cp: CompiledProblem, answer: SlotAnswer, exact_up_to: int, free: FreeTime | None = None
) -> Solution:
    """Place the slot model's choice: each slot's jobs in their best order (jobs that do
    not fit are left out); ``free`` (when given) loses the time they take."""
    part: Solution = {}
    for si, items in sorted(answer.chosen.items()):
        _m, s, t = answer.vars.slots[si]
        placed, _dropped = sequence_slot(cp, s, t, items, exact_up_to)
        for j, o, st in placed:
            part[j] = (o, st)
            if free is not None:
                opt = cp.jobs[j].options[o]
                free.take(opt.machine, st, st + opt.duration)
    return part


def _time_slices(cp: CompiledProblem, comp: list[int], chunk_options: int) -> list[list[int]]:
    """``comp`` itself, or, above ``chunk_options`` options, slices of about equal size by
    release time."""
    n_opts = sum(len(cp.jobs[j].options) for j in comp)
    if n_opts <= chunk_options:
        return [comp]
    order = sorted(comp, key=lambda j: (cp.jobs[j].release, j))
    k = -(-n_opts // chunk_options)
    target = n_opts / k
    chunks: list[list[int]] = []
    cur: list[int] = []
    acc = 0
    for j in order:
        cur.append(j)
        acc += len(cp.jobs[j].options)
        if acc >= target * (len(chunks) + 1) and len(chunks) < k - 1:
            chunks.append(sorted(cur))
            cur = []
    if cur:
        chunks.append(sorted(cur))
    return chunks


def solve_slot_chunks(
    cp: CompiledProblem,
    comp: list[int],
    hint: Solution,
    share: float,
    wall: float,
    search: Search,
    cb: cp_model.CpSolverSolutionCallback | None,
) -> tuple[Solution, int, bool, float]:
    """Slot model and in-slot sequencing for one component; time slices, solved one after
    the other in the free time the earlier ones left, when it is large.  Returns
    (solution, lower bound, proven optimal, time charged: see :class:`SlotAnswer`)."""
    tuning = search.tuning
    chunks = _time_slices(cp, comp, tuning.chunk_options)
    start = time.monotonic()
    if len(chunks) == 1:
        answer = solve_slot_model(cp, comp, hint, share, wall, search, cb, take_mip=True)
        part = sequence_slots(cp, answer, tuning.exact_sequence_up_to)
        return part, max(answer.cp_bound, answer.lp_bound), answer.optimal, answer.charged
    # bound of the whole component from its LP relaxation; slices give no bound
    slots, entries = C.slot_entries(cp, comp)
    bound = (
        B.lp_bound(
            cp,
            C.SlotVars(slots, entries),
            comp,
            time_limit_s=max(
                0.02,
                min(
                    max(tuning.chunk_lp_min_s, share * tuning.chunk_lp_fraction),
                    wall * tuning.chunk_lp_fraction,
                ),
            ),
            tuning=tuning,
        )
        or 0
    )
    part = {}
    free = FreeTime(cp.free)
    for ci, chunk in enumerate(chunks):
        residual = tuple(
            tuple(zip(free.starts[m], free.ends[m], strict=True)) for m in range(len(cp.free))
        )
        sub = replace(cp, free=residual)
        if search.deterministic:  # shares from sizes only
            chunk_share = share * tuning.chunk_search_fraction / len(chunks)
        else:
            chunk_share = share * tuning.chunk_search_fraction * (ci + 1) / len(chunks) - (
                time.monotonic() - start
            )
        answer = solve_slot_model(
            sub,
            chunk,
            hint,
            max(0.1, chunk_share),
            max(0.1, wall - (time.monotonic() - start)),
            search,
            cb,
            with_lp=False,
        )
        part.update(sequence_slots(sub, answer, tuning.exact_sequence_up_to, free))
    return part, bound, False, share


@dataclass(frozen=True, slots=True)
class SlotStrategy:
    """Slot model for :attr:`SolverTuning.slot_fraction` of the share, then (``lns``)
    repair and LNS for the rest; without ``lns`` (an owner-spread term couples the
    whole market) the slot model has all of it."""

    lns: bool = True
    name: str = "slots"

    def run(self, cp: CompiledProblem, task: ComponentTask) -> ComponentResult:
        tuning = task.search.tuning
        comp = task.jobs
        n_opts = sum(len(cp.jobs[j].options) for j in comp)
        floor = trivial_bound(cp, comp)
        slot_share = task.share * tuning.slot_fraction if self.lns else task.share
        # wall-clock safety net: the slot phase must not eat the LNS's time on a loaded
        # machine (not reached when the deterministic limit is what stops it)
        slot_wall = max(
            0.05,
            min(
                tuning.slot_wall_fraction * task.wall if self.lns else task.wall,
                slot_share * (tuning.slot_wall_factor if task.search.deterministic else 1.0),
            ),
        )
        part, cbound, optimal, charged = solve_slot_chunks(
            cp,
            comp,
            task.hint,
            slot_share * task.search_rate,
            slot_wall,
            task.search,
            task.callback,
        )
        # plus what the deterministic time leaves out (model, LP, sequencing), by size
        slot_share = charged / task.search_rate + tuning.slot_setup_s_per_option * n_opts
        cbound = max(cbound, floor)
        # the slot model's optimum is the schedule's only if sequencing inside the slots
        # lost nothing; otherwise LNS still has work to do
        optimal = optimal and component_cost(cp, part, comp) <= cbound
        if self.lns and not optimal:
            part = improve_by_lns(cp, task, part, slot_share)
        return ComponentResult(part, cbound, optimal)
