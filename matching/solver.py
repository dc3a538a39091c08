"""The engine: greedy warm start, decomposition, CP-SAT, exact in-slot sequencing,
repair, bound.

``solve(problem)`` works on a :class:`matching.domain.MatchProblem`;
``solve_compiled(cp)`` on the compiled form the benchmark readers build.

Pipeline (all within ``time_limit_s``):

1. best of several greedy priority orders (the answer is never worse than this);
2. split into independent components (jobs linked by a shared machine or an order);
3. per component, in a deterministic time share:
   * single-operation jobs, cost/tardiness modes: the *slot model* (one Boolean per
     (job, option, free slot), knapsack + window rows per slot), hinted with the greedy,
     then exact sequencing inside every slot and greedy repair of what did not fit, for
     ``SLOT_FRACTION`` of the share; then *LNS* on the actual schedule (:func:`lns`:
     free the jobs placed nearest a point in time on all the component's machines, or
     on a few machines around an unplaced job, a costly job or a random machine and
     those sharing its jobs, re-solve them exactly with the interval model in the
     residual free time, keep if not worse) for the rest (and for the slot phase's
     unused time when SCIP proves the slot model optimal before CP-SAT starts, or CP-SAT
     finishes early).  Components above ``CHUNK_OPTIONS`` options skip the slot model
     and run LNS from the greedy.  Per component, the result is never
     worse than the greedy's part;
   * knapsack-like components (single operations whose options may sit anywhere in
     their free slots: no release/latest-end inside a slot, no tardiness, e.g. GAP):
     the slot model is exact, so the 0-1 model goes to SCIP for
     ``KNAPSACK_MIP_FRACTION`` of the share plus a short grace to finish a proof (its
     solution is kept when it proves it optimal, or, not deterministic, when it is
     better than the greedy), then CP-SAT on the slot model, hinted with the best so
     far, for the rest; no LNS;
   * orders with several operations, or makespan mode: the exact *interval model*
     (windows tightened by precedence, :func:`matching.bound.chain_windows`), in cost
     mode for ``ORDER_MODEL_FRACTION`` of the share, then LNS over whole orders
     (:func:`lns_orders`) for the rest;
4. lower bound: per component the best of the CP-SAT bound of the (relaxed or exact)
   model, the LP relaxation of the slot model (GLOP; for chained orders on tightened
   windows with an order's operations placed all-or-nothing), its 0-1 version solved
   briefly by SCIP (:func:`matching.bound.mip_solve`, whose solution is taken when it proves
   the slot model optimal) and the trivial per-job bound; in
   makespan mode also chain and machine-load bounds (:func:`matching.bound.makespan_lower_bound`);
5. improvement passes (re-insertion of unplaced and costly jobs) while time is left.

The wall-clock limit covers everything after compiling (greedy, model building, LP and
MIP bounds, searches, repair): each CP-SAT call gets the wall time left after building
its model, model building stops at the limit, and a reserve is kept for the final repair.

Determinism (``deterministic=True``, the default): every CP-SAT run is single-worker
with a deterministic-time limit derived from the time share (shares come from problem
sizes only; with components on two threads at once, a second of share buys what one
thread does at the measured ``PARALLEL_SEARCH_SPEED`` / ``PARALLEL_LNS_SPEED``; LNS
steps are charged for their set-up too), and up to ``workers`` components run side by
side in threads; equal inputs, seed and worker count give equal answers as long as the
wall-clock safety net is not what stops a search (on a loaded machine, or where the
slot phase's model building and LP take long, as on 2,000-job markets, it can be: each
component's safety net is its fair part of the time left; LNS reports
``budget_left_pct`` > 0 then).  Bounds are not deterministic (GLOP/SCIP stop on wall
time), answers are, with one more exception: SCIP has no deterministic clock, so
whether it proves a slot model optimal within its allotment (and its optimum is taken)
is, when the proof takes about as long as the allotment, machine-dependent too.
``deterministic=False`` gives CP-SAT all ``workers`` per component and plain
wall-clock limits: usually better answers in the same time, but a repeat run may
differ.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from ortools.sat.python import cp_model

from matching import constraints as C
from matching.bound import (
    chain_windows,
    lp_bound,
    makespan_lower_bound,
    mip_solve,
    order_pairs,
)
from matching.compiled import CompiledProblem, compile_problem
from matching.domain import (
    Assignment,
    MatchProblem,
    MatchResult,
    ObjectiveMode,
    Reason,
    SolveStatus,
    Unassigned,
)
from matching.greedy import FreeTime, best_greedy, free_after, place_order, priority_orders
from matching.objective import breakdown, constant_penalty, evaluate, minimize, placed_cost
from matching.tuning import DEFAULT_TUNING, SolverTuning

Progress = Callable[[dict[str, object]], None]
Solution = dict[int, tuple[int, int]]


def solve(
    problem: MatchProblem,
    *,
    time_limit_s: float = 10.0,
    seed: int = 0,
    workers: int = 2,
    progress: Progress | None = None,
    deterministic: bool = True,
    tuning: SolverTuning | None = None,
) -> MatchResult:
    """Match ``problem``; see the module docstring.  Never raises on infeasibility:
    work that cannot be placed is reported in ``MatchResult.unassigned``."""
    t0 = time.monotonic()
    cp = compile_problem(problem)
    sol, info = solve_compiled(
        cp,
        time_limit_s=max(0.05, time_limit_s - (time.monotonic() - t0)),
        seed=seed,
        workers=workers,
        progress=progress,
        deterministic=deterministic,
        tuning=tuning,
    )
    return to_result(cp, sol, info, time.monotonic() - t0)


# --------------------------------------------------------------------------- results


def to_result(
    cp: CompiledProblem, sol: Solution, info: dict[str, object], seconds: float
) -> MatchResult:
    assignments = []
    for order in cp.orders:
        for k, j in enumerate(order.jobs):
            if j not in sol:
                continue
            job = cp.jobs[j]
            oi, st = sol[j]
            opt = job.options[oi]
            end = st + opt.duration
            if k + 1 < len(order.jobs) and order.jobs[k + 1] in sol:
                nxt = cp.jobs[order.jobs[k + 1]]
                transport = cp.hop(opt.machine, nxt.options[sol[order.jobs[k + 1]][0]].machine)[1]
            else:
                transport = opt.transport
            tard = job.tardiness_per_min * max(0, end - opt.due)
            assignments.append(
                Assignment(
                    job.key,
                    order.key,
                    cp.machine_keys[opt.machine],
                    st,
                    end,
                    opt.price,
                    transport,
                    tard,
                )
            )
    unassigned = []
    for j, job in enumerate(cp.jobs):
        if j in sol:
            continue
        okey = cp.orders[job.order].key
        if job.reason is not None:
            unassigned.append(Unassigned(job.key, okey, job.reason, job.detail))
        else:
            unassigned.append(
                Unassigned(
                    job.key,
                    okey,
                    Reason.DISPLACED,
                    f"{len(job.options)} feasible option(s); the capacity "
                    "went to better-valued work",
                )
            )
    obj = int(info["objective"])  # type: ignore[call-overload]
    bound = int(info["bound"])  # type: ignore[call-overload]
    gap = 0.0 if obj <= 0 else max(0.0, (obj - bound) / obj)
    status = SolveStatus.OPTIMAL if bound >= obj else SolveStatus.FEASIBLE
    return MatchResult(
        status, tuple(assignments), tuple(unassigned), obj, bound, gap, seconds, dict(info)
    )


# ------------------------------------------------------------------------ components


def components(cp: CompiledProblem, jobs: list[int] | None = None) -> list[list[int]]:
    """Jobs linked by a shared machine or by an order, as sorted lists."""
    jobs = [j for j in range(len(cp.jobs)) if cp.jobs[j].options] if jobs is None else jobs
    parent = {j: j for j in jobs}

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    by_machine: dict[int, int] = {}
    for j in jobs:
        for o in cp.jobs[j].options:
            other = by_machine.setdefault(o.machine, j)
            if other != j:
                union(j, other)
    for order in cp.orders:
        live = [j for j in order.jobs if j in parent]
        for a, b in zip(live, live[1:], strict=False):
            union(a, b)
    groups: dict[int, list[int]] = defaultdict(list)
    for j in jobs:
        groups[find(j)].append(j)
    return sorted(groups.values(), key=lambda g: g[0])


# ---------------------------------------------------------------------------- params


def _params(
    solver: cp_model.CpSolver,
    time_s: float,
    wall_s: float,
    seed: int,
    workers: int,
    deterministic: bool,
    tuning: SolverTuning,
) -> None:
    p = solver.parameters
    p.num_workers = max(1, workers)
    p.random_seed = seed
    p.cp_model_probing_level = 0
    p.max_time_in_seconds = max(0.05, wall_s)
    if deterministic:
        p.num_workers = 1
        p.max_deterministic_time = max(0.05, time_s * tuning.dtime_per_second)


class _Progress(cp_model.CpSolverSolutionCallback):
    def __init__(self, progress: Progress, comp: int, t0: float) -> None:
        super().__init__()
        self._progress, self._comp, self._t0 = progress, comp, t0

    def on_solution_callback(self) -> None:
        self._progress(
            {
                "phase": "cp-sat",
                "component": self._comp,
                "objective": self.objective_value,
                "bound": self.best_objective_bound,
                "seconds": time.monotonic() - self._t0,
            }
        )


# ------------------------------------------------------------------------ slot model


def _solve_slot_model(
    cp: CompiledProblem,
    jobs: list[int],
    hint: Solution,
    time_s: float,
    wall_s: float,
    seed: int,
    workers: int,
    deterministic: bool,
    cb: cp_model.CpSolverSolutionCallback | None,
    tuning: SolverTuning,
    with_lp: bool = True,
    take_mip: bool = False,
) -> tuple[dict[int, list[tuple[int, int]]], C.SlotVars, int, int, bool, float]:
    """Returns (slot -> [(job, option)], vars, cp bound, lp bound, proven optimal, time
    charged).  ``wall_s`` bounds the whole call (model building and LP included).

    The 0-1 version of the model first goes to SCIP for a small share of the time (for
    its bound); with ``take_mip``, when SCIP proves it optimal (and the objective has no
    owner-spread term, which SCIP's version leaves out), its solution is the answer and
    CP-SAT does not run (whether the proof fits in the allotment is wall-clock, the optimum
    is not).  The time charged is deterministic: SCIP's allotment plus CP-SAT's
    deterministic time, at most ``time_s``; the caller gives what is left to the search on
    actual schedules."""
    stop_at = time.monotonic() + wall_s
    slots, entries = C.slot_entries(cp, jobs)
    v = C.SlotVars(slots, entries)
    lp = (
        lp_bound(
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
            mlb, mchosen, mopt = mip_solve(cp, v, jobs, mip_s, tuning=tuning)
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
                return chosen, v, mlb, lp, True, charged
    model = cp_model.CpModel()
    v.x = [model.new_bool_var("") for _ in entries]
    v.u = {j: model.new_bool_var("") for j in jobs}
    C.add_one_option_or_unassigned(model, v)
    C.add_slot_capacity(model, v)
    C.add_slot_time_windows(model, v, tuning.window_points)
    top = C.add_owner_spread(
        model, cp, [(e.job, e.option, x) for e, x in zip(entries, v.x, strict=True)]
    )
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
    rest = stop_at - time.monotonic()
    if rest < tuning.min_solve_s:  # no time left to search: the caller falls back to the hint
        return chosen, v, 0, lp if lp is not None else 0, False, time_s
    solver = cp_model.CpSolver()
    _params(solver, time_s, rest, seed, workers, deterministic, tuning)
    status = solver.solve(model, cb)
    if deterministic:
        charged = min(
            time_s, charged + solver.response_proto.deterministic_time / tuning.dtime_per_second
        )
    else:
        charged = time_s
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        for e, x in zip(entries, v.x, strict=True):
            if solver.boolean_value(x):
                chosen[e.slot].append((e.job, e.option))
        bound = int(solver.best_objective_bound)
    else:
        bound = 0
    return chosen, v, bound, lp if lp is not None else 0, status == cp_model.OPTIMAL, charged


def sequence_slot(
    cp: CompiledProblem, s: int, t: int, items: list[tuple[int, int]], exact_up_to: int
) -> tuple[list[tuple[int, int, int]], list[int]]:
    """Order the jobs given to one free slot [s, t), each as early as possible.

    Tries every order for up to ``exact_up_to`` jobs, otherwise several priority orders
    improved by pairwise swaps.  If no order fits, drops the job whose loss is smallest
    and tries again.  Returns ([(job, option, start)], dropped jobs)."""
    items = list(items)
    dropped: list[int] = []
    while items:
        best = _best_sequence(cp, s, t, items, exact_up_to)
        if best is not None:
            return best, dropped
        # drop the job whose removal costs least (penalty minus its cost here)
        k = min(
            range(len(items)),
            key=lambda i: (
                cp.jobs[items[i][0]].penalty - cp.jobs[items[i][0]].options[items[i][1]].cost,
                items[i][0],
            ),
        )
        dropped.append(items.pop(k)[0])
    return [], dropped


def _schedule(
    cp: CompiledProblem, s: int, t: int, seq: list[tuple[int, int]]
) -> tuple[int, list[tuple[int, int, int]]] | None:
    now, total, out = s, 0, []
    for j, o in seq:
        job = cp.jobs[j]
        opt = job.options[o]
        st = max(now, job.release)
        end = st + opt.duration
        if end > t or end > opt.latest_end:
            return None
        total += placed_cost(job, opt, st)
        out.append((j, o, st))
        now = end
    return total, out


def _best_sequence(
    cp: CompiledProblem, s: int, t: int, items: list[tuple[int, int]], exact_up_to: int
) -> list[tuple[int, int, int]] | None:
    best: tuple[int, list[tuple[int, int, int]]] | None = None
    if len(items) <= exact_up_to:
        for perm in itertools.permutations(items):
            got = _schedule(cp, s, t, list(perm))
            if got is not None and (best is None or got[0] < best[0]):
                best = got
        return None if best is None else best[1]

    def key_rel(it: tuple[int, int]) -> tuple[int, int]:
        return (cp.jobs[it[0]].release, it[0])

    def key_due(it: tuple[int, int]) -> tuple[int, int]:
        return (cp.jobs[it[0]].options[it[1]].due, it[0])

    def key_lft(it: tuple[int, int]) -> tuple[int, int]:
        return (cp.jobs[it[0]].options[it[1]].latest_end, it[0])

    starts = [sorted(items, key=key_rel), sorted(items, key=key_due), sorted(items, key=key_lft)]
    for seq in starts:
        got = _schedule(cp, s, t, seq)
        if got is None:
            continue
        cur = (got[0], seq)
        improved = True
        while improved:
            improved = False
            for a in range(len(seq) - 1):
                for b in range(a + 1, len(seq)):
                    trial = list(cur[1])
                    trial[a], trial[b] = trial[b], trial[a]
                    g2 = _schedule(cp, s, t, trial)
                    if g2 is not None and g2[0] < cur[0]:
                        cur = (g2[0], trial)
                        improved = True
        final = _schedule(cp, s, t, cur[1])
        if final is not None and (best is None or final[0] < best[0]):
            best = final
    return None if best is None else best[1]


def _solve_slot_chunks(
    cp: CompiledProblem,
    comp: list[int],
    hint: Solution,
    share: float,
    wall: float,
    seed: int,
    nworkers: int,
    deterministic: bool,
    cb: cp_model.CpSolverSolutionCallback | None,
    tuning: SolverTuning,
) -> tuple[Solution, int, bool, float]:
    """Slot model + exact in-slot sequencing for one component; time slices when large.
    Returns (solution, lower bound, proven optimal, time charged: see
    :func:`_solve_slot_model`)."""
    n_opts = sum(len(cp.jobs[j].options) for j in comp)
    if n_opts <= tuning.chunk_options:
        chunks = [comp]
    else:
        order = sorted(comp, key=lambda j: (cp.jobs[j].release, j))
        k = -(-n_opts // tuning.chunk_options)
        target = n_opts / k
        chunks, cur, acc = [], [], 0
        for j in order:
            cur.append(j)
            acc += len(cp.jobs[j].options)
            if acc >= target * (len(chunks) + 1) and len(chunks) < k - 1:
                chunks.append(sorted(cur))
                cur = []
        if cur:
            chunks.append(sorted(cur))
    part: Solution = {}
    start = time.monotonic()
    if len(chunks) == 1:
        chosen, v, cpb, lpb, optimal, charged = _solve_slot_model(
            cp, comp, hint, share, wall, seed, nworkers, deterministic, cb, tuning, take_mip=True
        )
        bound = max(cpb, lpb)
        sub = cp
        groups = [(v, chosen)]
    else:
        # bound of the whole component from its LP relaxation; slices give no bound
        slots, entries = C.slot_entries(cp, comp)
        bound = (
            lp_bound(
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
        optimal = False
        groups = []
        free = FreeTime(cp.free)
        for ci, chunk in enumerate(chunks):
            residual = tuple(
                tuple(zip(free.starts[m], free.ends[m], strict=True)) for m in range(len(cp.free))
            )
            sub = replace(cp, free=residual)
            if deterministic:  # shares from sizes only
                chunk_share = share * tuning.chunk_search_fraction / len(chunks)
            else:
                chunk_share = share * tuning.chunk_search_fraction * (ci + 1) / len(chunks) - (
                    time.monotonic() - start
                )
            chosen, v, _cpb, _lpb, _opt, _charged = _solve_slot_model(
                sub,
                chunk,
                hint,
                max(0.1, chunk_share),
                max(0.1, wall - (time.monotonic() - start)),
                seed,
                nworkers,
                deterministic,
                cb,
                tuning,
                with_lp=False,
            )
            for si, items in sorted(chosen.items()):
                _m, s, t = v.slots[si]
                placed, _dropped = sequence_slot(sub, s, t, items, tuning.exact_sequence_up_to)
                for j, o, st in placed:
                    part[j] = (o, st)
                    opt = cp.jobs[j].options[o]
                    free.take(opt.machine, st, st + opt.duration)
        return part, bound, optimal, share
    for v, chosen in groups:
        for si, items in sorted(chosen.items()):
            _m, s, t = v.slots[si]
            placed, _dropped = sequence_slot(sub, s, t, items, tuning.exact_sequence_up_to)
            for j, o, st in placed:
                part[j] = (o, st)
    return part, bound, optimal, charged


def _slots_exact(cp: CompiledProblem, comp: list[int]) -> bool:
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


def _solve_knapsack_slots(
    cp: CompiledProblem,
    comp: list[int],
    hint: Solution,
    share: float,
    wall: float,
    seed: int,
    nworkers: int,
    deterministic: bool,
    cb: cp_model.CpSolverSolutionCallback | None,
    tuning: SolverTuning,
) -> tuple[Solution, int, bool]:
    """A component where the slot model is exact: SCIP on the 0-1 model first (it proves
    small GAPs optimal fast), then, unless that settled it, CP-SAT on the slot model for
    the rest of the time, hinted with the better of the greedy and SCIP's solution.
    Returns (solution, lower bound, proven optimal)."""
    t_start = time.monotonic()
    slots, entries = C.slot_entries(cp, comp)
    v = C.SlotVars(slots, entries)
    mip_s = min(tuning.knapsack_mip_fraction * share, tuning.knapsack_mip_fraction * wall)
    # SCIP's work before its first branching (presolve, root cuts) is a fixed cost that a
    # short allotment may not cover on a slow machine, and its answer counts only when
    # proven: it gets a grace on top, taken from CP-SAT's part (computed from the share
    # alone, so that CP-SAT's deterministic budget does not depend on the wall clock)
    grace = min(mip_s, tuning.knapsack_mip_grace_s, tuning.knapsack_mip_grace_fraction * share)
    mip_wall = min(mip_s + grace, wall)
    # every optimum places all jobs if some complete solution exists (SCIP answers only
    # with one) and any incomplete solution costs more than any complete one: at least
    # the sum of cheapest option costs plus, for one job left out, its penalty minus
    # its cheapest cost, against at most the sum of dearest option costs
    cheapest = {j: min(o.cost for o in cp.jobs[j].options) for j in comp}
    dearest = sum(max(o.cost for o in cp.jobs[j].options) for j in comp)
    extra = [cp.jobs[j].penalty - cheapest[j] for j in comp]
    place_all = min(extra) >= 0 and sum(cheapest.values()) + min(extra) > dearest
    lb, chosen, mip_opt = mip_solve(
        cp, v, comp, mip_wall, place_all=place_all, presolve=False, tuning=tuning
    )
    best = dict(hint)
    # deterministic mode: SCIP's solution only when proven optimal (where a search
    # stopped by the wall clock ends is not deterministic; its optimum is)
    if chosen is not None and (mip_opt or not deterministic):
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
        if _comp_cost(cp, got, comp) <= _comp_cost(cp, best, comp):
            best = got
    bound = lb or 0
    cost = _comp_cost(cp, best, comp)
    if mip_opt and bound >= cost:
        return best, cost, True
    spent = time.monotonic() - t_start
    rest_share = max(0.05, share - (mip_s + grace if deterministic else spent))
    chosen2, v2, cpb, lpb, optimal, _charged = _solve_slot_model(
        cp,
        comp,
        best,
        rest_share,
        max(0.05, wall - spent),
        seed,
        nworkers,
        deterministic,
        cb,
        tuning,
        with_lp=lb is None,
    )
    part: Solution = {}
    for si, items in sorted(chosen2.items()):
        _m, s, t = v2.slots[si]
        placed, _dropped = sequence_slot(cp, s, t, items, exact_up_to=0)
        for j, o, st in placed:
            part[j] = (o, st)
    if not chosen2 or _comp_cost(cp, best, comp) < _comp_cost(cp, part, comp):
        part = best
    return part, max(bound, cpb, lpb), optimal


# -------------------------------------------------------------------- interval model


def _solve_interval_model(
    cp: CompiledProblem,
    jobs: list[int],
    hint: Solution,
    time_s: float,
    wall_s: float,
    seed: int,
    workers: int,
    deterministic: bool,
    cb: cp_model.CpSolverSolutionCallback | None,
    tuning: SolverTuning,
    with_stats: bool = False,
) -> tuple:  # type: ignore[type-arg]
    """Exact model.  Returns (solution or None, bound, proven optimal), plus
    (deterministic time spent, number of placement choices) with ``with_stats``.
    ``wall_s`` bounds the whole call: model building stops (and None is returned) when
    it runs out."""
    stop_at = time.monotonic() + wall_s
    model = cp_model.CpModel()
    v = C.IntervalVars()
    jobset = set(jobs)
    horizon = max((e for m in range(len(cp.free)) for _s, e in cp.free[m]), default=0)
    choices: list[tuple[int, int, cp_model.IntVar]] = []
    aggregated: list[tuple[int, int]] = []  # (job, machine) with a uses-machine sum
    for j in jobs:
        if time.monotonic() > stop_at:
            return (None, 0, False, 0.0, 0) if with_stats else (None, 0, False)
        job = cp.jobs[j]
        v.u[j] = model.new_bool_var(f"u_{j}")
        v.job_start[j] = model.new_int_var(0, horizon, f"s_{j}")
        v.job_end[j] = model.new_int_var(0, horizon, f"e_{j}")
        dur_terms = []
        per_machine: dict[int, list[cp_model.IntVar]] = defaultdict(list)
        for oi, opt in enumerate(job.options):
            for g, (s, e) in enumerate(cp.free[opt.machine]):
                lo = max(s, job.release)
                hi = min(e, opt.latest_end) - opt.duration
                if lo > hi:
                    continue
                p = model.new_bool_var(f"p_{j}_{oi}_{g}")
                st = model.new_int_var(lo, hi, f"st_{j}_{oi}_{g}")
                iv = model.new_optional_fixed_size_interval_var(st, opt.duration, p, "")
                model.add(v.job_start[j] == st).only_enforce_if(p)
                v.presence[(j, oi, g)] = p
                v.interval[(j, oi, g)] = iv
                v.start[(j, oi, g)] = st
                dur_terms.append(opt.duration * p)
                per_machine[opt.machine].append(p)
                choices.append((j, oi, p))
        model.add(v.job_end[j] == v.job_start[j] + sum(dur_terms))
        for m, ps in per_machine.items():
            if len(ps) == 1:
                v.uses_machine[(j, m)] = ps[0]
            else:
                y = model.new_bool_var("")
                model.add(y == sum(ps))
                v.uses_machine[(j, m)] = y
                aggregated.append((j, m))
    C.add_one_option_or_unassigned(model, v)
    has_choice = {j for (j, _o, _g) in v.presence}
    for j in jobs:
        if j not in has_choice:
            model.add(v.u[j] == 1)
    C.add_no_overlap_per_machine(model, cp, v)
    C.add_order_all_or_nothing(model, cp, v, jobset)
    C.add_precedence_with_transport(model, cp, v, jobset)
    C.add_budget(model, cp, v, jobset)
    C.add_tardiness(model, cp, v)
    extra: list[cp_model.LinearExprT] = []
    if cp.mode is ObjectiveMode.MAKESPAN:
        C.add_makespan(model, v, horizon)
        assert v.makespan is not None
        extra.append(v.makespan)
    top = C.add_owner_spread(model, cp, choices)
    terms: list[tuple[int, cp_model.LinearExprT]] = []
    for (j, oi, _g), p in v.presence.items():
        terms.append((cp.jobs[j].options[oi].cost, p))
    terms += v.hop_terms
    terms += [(cp.jobs[j].tardiness_per_min, t) for j, t in v.tardiness.items()]
    terms += [(cp.jobs[j].penalty, v.u[j]) for j in jobs]
    if top is not None:
        terms.append((cp.owner_spread_fen, top))
    minimize(model, terms, extra)
    # hint
    for (j, oi, g), p in v.presence.items():
        got = hint.get(j)
        on = False
        if got is not None and got[0] == oi:
            s, e = cp.free[cp.jobs[j].options[oi].machine][g]
            on = s <= got[1] < e
        model.add_hint(p, on)
        if on:
            model.add_hint(v.start[(j, oi, g)], got[1])  # type: ignore[index]
    # complete the hint (aggregates, tardiness, ends, hops), so that CP-SAT takes it as
    # a first solution without a repair search
    for j in jobs:
        model.add_hint(v.u[j], j not in hint)
        job = cp.jobs[j]
        got = hint.get(j)
        if got is not None:
            opt = job.options[got[0]]
            model.add_hint(v.job_start[j], got[1])
            model.add_hint(v.job_end[j], got[1] + opt.duration)
            if j in v.tardiness:
                model.add_hint(v.tardiness[j], max(0, got[1] + opt.duration - opt.due))
        else:
            model.add_hint(v.job_start[j], 0)
            model.add_hint(v.job_end[j], 0)
            if j in v.tardiness:
                model.add_hint(v.tardiness[j], 0)
    for (j, oi, g), st_var in v.start.items():
        got = hint.get(j)
        if (
            got is None
            or got[0] != oi
            or not (
                cp.free[cp.jobs[j].options[oi].machine][g][0]
                <= got[1]
                < cp.free[cp.jobs[j].options[oi].machine][g][1]
            )
        ):
            model.add_hint(st_var, st_var.proto.domain[0])
    for j, m in aggregated:
        got = hint.get(j)
        model.add_hint(
            v.uses_machine[(j, m)], got is not None and cp.jobs[j].options[got[0]].machine == m
        )
    for a, b, h in v.hops:
        ga, gb = hint.get(a), hint.get(b)
        cost = 0
        if ga is not None and gb is not None:
            cost = cp.hop(cp.jobs[a].options[ga[0]].machine, cp.jobs[b].options[gb[0]].machine)[1]
        model.add_hint(h, cost)
    rest = stop_at - time.monotonic()
    if rest < tuning.min_solve_s:
        return (None, 0, False, 0.0, len(v.presence)) if with_stats else (None, 0, False)
    solver = cp_model.CpSolver()
    _params(solver, time_s, rest, seed, workers, deterministic, tuning)
    status = solver.solve(model, cb)
    extra_stats = (solver.response_proto.deterministic_time, len(v.presence))
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return (None, 0, False, *extra_stats) if with_stats else (None, 0, False)
    sol: Solution = {}
    for (j, oi, g), p in v.presence.items():
        if solver.boolean_value(p):
            sol[j] = (oi, solver.value(v.start[(j, oi, g)]))
    out = (sol, int(solver.best_objective_bound), status == cp_model.OPTIMAL)
    return (*out, *extra_stats) if with_stats else out


# ------------------------------------------------------------------------ improvement


def repair(cp: CompiledProblem, sol: Solution, jobs: list[int] | None = None) -> Solution:
    """Greedily place unplaced orders into the remaining free time (fewest options
    first), then try moving each placed single-job order to a cheaper spot."""
    sol = dict(sol)
    free = free_after(cp, sol)
    allowed = None if jobs is None else set(jobs)
    seq = priority_orders(cp)["fewest_options"]
    for oi in seq:
        order = cp.orders[oi]
        if allowed is not None and order.jobs[0] not in allowed:
            continue
        if order.jobs[0] not in sol:
            place_order(cp, free, oi, sol)
    _reinsert(cp, sol, free, allowed)
    return sol


def _reinsert(cp: CompiledProblem, sol: Solution, free: FreeTime, allowed: set[int] | None) -> None:
    """Move single-job orders to a cheaper placement in the free time, one at a time."""
    if cp.owner_spread_fen or cp.mode is ObjectiveMode.MAKESPAN:
        return
    for order in cp.orders:
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


# ------------------------------------------------------------------------------ solve


def solve_compiled(
    cp: CompiledProblem,
    *,
    time_limit_s: float = 10.0,
    seed: int = 0,
    workers: int = 2,
    progress: Progress | None = None,
    deterministic: bool = True,
    tuning: SolverTuning | None = None,
) -> tuple[Solution, dict[str, object]]:
    """Solve the compiled problem; returns (job -> (option, start), info) where info has
    objective, bound, greedy objective and per-phase figures."""
    tuning = tuning if tuning is not None else DEFAULT_TUNING
    t0 = time.monotonic()
    deadline = t0 + time_limit_s

    def left() -> float:
        return deadline - time.monotonic()

    def report(**kw: object) -> None:
        if progress is not None:
            progress({"seconds": round(time.monotonic() - t0, 3), **kw})

    gname, gsol, gvals = best_greedy(cp)
    gobj = evaluate(cp, gsol)
    report(phase="greedy", objective=gobj, order=gname)
    const = constant_penalty(cp)
    coupled = cp.owner_spread_fen > 0 or cp.mode is ObjectiveMode.MAKESPAN
    comps = [sorted(j for c in components(cp) for j in c)] if coupled else components(cp)
    comps = [c for c in comps if c]
    sizes = [sum(len(cp.jobs[j].options) for j in c) for c in comps]
    total = max(1, sum(sizes))
    budget = max(0.0, left() * tuning.budget_fraction)
    # wall time kept for the final repair and evaluation (grows with the problem)
    reserve = tuning.reserve_s + min(
        tuning.reserve_fraction * time_limit_s,
        tuning.reserve_s_per_job * len(cp.jobs) + tuning.reserve_s_per_option * total,
    )
    parallel = not deterministic and tuning.parallel_components and len(comps) >= max(2, workers)
    stats: dict[str, object] = {"greedy": gvals, "components": len(comps)}

    # deterministic-time units per second of a component's share, for CP-SAT searches and
    # for LNS: lower when components run on several threads at once
    if deterministic and min(workers, len(comps)) > 1:
        search_rate, lns_rate = tuning.parallel_search_speed, tuning.parallel_lns_speed
    else:
        search_rate = lns_rate = 1.0

    # sizes of the components not finished yet (for the fair wall-clock cap below)
    pending = {"size": float(total)}
    lock = threading.Lock()

    def run(ci: int, share: float, nworkers: int) -> tuple[Solution, int, bool]:
        try:
            return _run(ci, share, nworkers)
        finally:
            with lock:
                pending["size"] -= sizes[ci]

    def _run(ci: int, share: float, nworkers: int) -> tuple[Solution, int, bool]:
        comp = comps[ci]
        if deterministic:
            # the deterministic-time limits decide; the wall clock is a safety net: this
            # component's fair part of the time left (by size, among the components not
            # finished, ``workers`` at a time) with some slack, so a slowed-down machine
            # cannot make the first components starve the last ones
            with lock:
                frac = max(1, workers) * sizes[ci] / max(1.0, pending["size"])
            wall = max(
                0.05,
                (left() - reserve)
                * min(1.0, max(frac * tuning.wall_fair_slack, tuning.wall_fair_min)),
            )
        else:
            wall = max(0.05, min(share, left() - reserve))
        hint = {j: gsol[j] for j in comp if j in gsol}
        cb = _Progress(progress, ci, t0) if progress is not None else None
        single = all(len(cp.orders[cp.jobs[j].order].jobs) == 1 for j in comp)
        part: Solution = {}
        if single and cp.mode is not ObjectiveMode.MAKESPAN:
            t_comp = time.monotonic()
            use_lns = not cp.owner_spread_fen
            n_opts = sum(len(cp.jobs[j].options) for j in comp)
            floor = trivial_bound(cp, comp)
            exact = use_lns and n_opts <= tuning.chunk_options and _slots_exact(cp, comp)
            if exact:
                # GAP-like (every option may sit anywhere in its slot): the slot model is
                # the whole problem; SCIP, then CP-SAT on it, no LNS
                part, cbound, optimal = _solve_knapsack_slots(
                    cp,
                    comp,
                    hint,
                    share * search_rate,
                    wall,
                    seed,
                    nworkers,
                    deterministic,
                    cb,
                    tuning,
                )
                cbound = max(cbound, floor)
                slot_share = share
            elif use_lns and n_opts > tuning.chunk_options:
                # too large for the slot model within the time: LNS from the greedy
                part, cbound, optimal, slot_share = dict(hint), floor, False, 0.0
            else:
                slot_share = share * tuning.slot_fraction if use_lns else share
                # wall-clock safety net: on a loaded machine the slot phase must not eat
                # the LNS's time (not reached when the deterministic limit is what stops)
                # (and at most 3/4 of the component's wall time: LNS gains more per second)
                slot_wall = max(
                    0.05,
                    min(
                        tuning.slot_wall_fraction * wall if use_lns else wall,
                        slot_share * (tuning.slot_wall_factor if deterministic else 1.0),
                    ),
                )
                part, cbound, optimal, charged = _solve_slot_chunks(
                    cp,
                    comp,
                    hint,
                    slot_share * search_rate,
                    slot_wall,
                    seed,
                    nworkers,
                    deterministic,
                    cb,
                    tuning,
                )
                # plus what the deterministic time leaves out: building the model, its LP
                # and sequencing the slots, by size
                slot_share = charged / search_rate + tuning.slot_setup_s_per_option * n_opts
                cbound = max(cbound, floor)
                # the slot model's optimum is the schedule's only if sequencing inside the slots
                # lost nothing; otherwise LNS still has work to do and "optimal" would be a claim
                optimal = optimal and _comp_cost(cp, part, comp) <= cbound
            if exact:
                part = repair(cp, part, comp)
                if _comp_cost(cp, hint, comp) < _comp_cost(cp, part, comp):
                    part = dict(hint)
            elif use_lns and not optimal:
                part = repair(cp, part, comp)
                if _comp_cost(cp, hint, comp) < _comp_cost(cp, part, comp):
                    part = dict(hint)
                t_lns = time.monotonic()
                if deterministic:
                    lns_budget = (share - slot_share) * lns_rate * tuning.dtime_per_second
                    lns_end = t_comp + wall
                else:
                    lns_budget = float("inf")
                    lns_end = t_comp + share
                    if parallel and ci >= len(comps) - max(1, workers):
                        lns_end = deadline - reserve  # nothing waits for this thread

                part, lstats = lns(
                    cp, part, comp, lns_budget, lns_end, seed, nworkers, deterministic, tuning
                )
                report(
                    phase="lns",
                    component=ci,
                    slot_s=round(t_lns - t_comp, 2),
                    slot_charged=round(slot_share, 2),
                    **lstats,
                )
        else:
            t_comp = time.monotonic()
            tight = chain_windows(cp, comp)
            lpb = 0
            if cp.mode is not ObjectiveMode.MAKESPAN:
                # relaxation bound: slot LP with chained windows, orders all-or-nothing
                # (precedence order, hop costs and budgets dropped); a small share of time
                slots, entries = C.slot_entries(tight, comp)
                lpb = (
                    lp_bound(
                        tight,
                        C.SlotVars(slots, entries),
                        comp,
                        time_limit_s=max(
                            0.02,
                            min(tuning.order_lp_fraction * share, tuning.order_lp_fraction * wall),
                        ),
                        same=order_pairs(cp, comp),
                        tuning=tuning,
                    )
                    or 0
                )
                lpb = max(lpb, trivial_bound(cp, comp))
            model_share = (
                share * tuning.order_model_fraction if tuning.order_lns and not coupled else share
            )
            model_wall = wall - (time.monotonic() - t_comp)
            if tuning.order_lns and not coupled:
                model_wall *= tuning.order_model_fraction
            got, cbound, optimal = _solve_interval_model(
                tight,
                comp,
                hint,
                model_share * search_rate,
                max(0.05, model_wall),
                seed,
                nworkers,
                deterministic,
                cb,
                tuning,
            )
            cbound = max(cbound, lpb)
            part = got if got is not None else {}
            if not coupled and evaluate(cp, hint) < evaluate(cp, part):
                part = dict(hint)  # never worse than the greedy's part of the component
            if not coupled and not optimal and tuning.order_lns:
                if deterministic:
                    olns_budget = (
                        share
                        * (1.0 - tuning.order_model_fraction)
                        * lns_rate
                        * tuning.dtime_per_second
                    )
                else:
                    olns_budget = float("inf")
                part, lstats = lns_orders(
                    cp,
                    part,
                    comp,
                    olns_budget,
                    t_comp + wall,
                    seed,
                    nworkers,
                    deterministic,
                    tuning,
                )
                report(phase="lns", component=ci, **lstats)
        report(phase="component", component=ci, jobs=len(comp), bound=cbound)
        return part, cbound, optimal

    if deterministic or parallel:
        # single-worker CP-SAT runs (deterministic under a deterministic-time limit),
        # components spread over ``workers`` threads; shares from sizes only
        cap = budget * max(1, workers)
        shares = [min(budget, cap * sz / total) for sz in sizes]
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            # smallest first: a large component slowed down by its wall-clock limit then
            # cannot starve the small ones (results do not depend on the thread used)
            by_size = sorted(range(len(comps)), key=lambda ci: (sizes[ci], ci))
            futures = {ci: pool.submit(run, ci, shares[ci], 1) for ci in by_size}
            results = [futures[ci].result() for ci in range(len(comps))]
    else:
        results = []
        spent = 0.0
        for ci in range(len(comps)):
            # this component's share plus whatever earlier components left unused
            spent += budget * sizes[ci] / total
            share = max(0.05, left() - (budget - spent))
            results.append(run(ci, share, workers))
    sol: Solution = {}
    bound_sum = 0
    makespan_bound = 0
    all_optimal = True
    for ci, (part, cbound, optimal) in enumerate(results):
        if not coupled and all(len(cp.orders[cp.jobs[j].order].jobs) == 1 for j in comps[ci]):
            # independent components of single-job orders: never worse than the greedy's
            gpart = {j: gsol[j] for j in comps[ci] if j in gsol}
            if _comp_cost(cp, gpart, comps[ci]) < _comp_cost(cp, part, comps[ci]):
                part = gpart
        sol.update(part)
        all_optimal &= optimal
        if cp.mode is ObjectiveMode.MAKESPAN:
            makespan_bound = max(makespan_bound, cbound)
        else:
            bound_sum += cbound
    sol = repair(cp, sol)
    obj = evaluate(cp, sol)
    if gobj <= obj:
        sol, obj = dict(gsol), gobj
        stats["winner"] = "greedy"
    else:
        stats["winner"] = "engine"
    if cp.mode is ObjectiveMode.MAKESPAN:
        bound = max(makespan_bound, makespan_lower_bound(cp))
    else:
        bound = bound_sum + const
    bound = min(bound, obj)
    stats.update(
        objective=obj,
        bound=bound,
        greedy_objective=gobj,
        greedy_order=gname,
        terms=breakdown(cp, sol),
        proven=all_optimal and bound >= obj,
    )
    report(phase="done", objective=obj, bound=bound)
    return sol, stats


# ------------------------------------------------------------------ large neighbourhood


def trivial_bound(cp: CompiledProblem, jobs: list[int]) -> int:
    """Each job costs at least the smaller of its penalty and its cheapest option."""
    return sum(min([cp.jobs[j].penalty, *(o.cost for o in cp.jobs[j].options)]) for j in jobs)


def _comp_cost(cp: CompiledProblem, sol: Solution, jobs: list[int]) -> int:
    total = 0
    for j in jobs:
        job = cp.jobs[j]
        got = sol.get(j)
        if got is None:
            total += job.penalty
        else:
            total += placed_cost(job, job.options[got[0]], got[1])
    return total


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
    seed: int,
    workers: int,
    deterministic: bool,
    tuning: SolverTuning = DEFAULT_TUNING,
) -> tuple[Solution, dict[str, int]]:
    """Improve the schedule of one component of single-job orders by large neighbourhood
    search on actual schedules: free the jobs placed nearest a point in time, on all the
    component's machines (a band of time: jobs may trade machines) or on a few related
    machines (around an unplaced / costly job), re-solve them exactly with the interval
    model in the free time the rest of the schedule leaves, keep the result when it is
    not worse.  ``budget`` is deterministic time (CP-SAT units plus a charge per step
    and per interval for model building and CP-SAT's set-up), so equal inputs and seed
    give equal results unless
    ``wall_end`` (wall clock) stops the loop first."""
    import random

    sol = {j: sol[j] for j in comp if j in sol}
    stats = {"steps": 0, "improved": 0, "gain": 0}
    if not comp or budget <= 0:
        return sol, stats
    rng = random.Random(seed * 7919 + comp[0])
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
        before = _comp_cost(cp, sol, freed)
        step = min(max(0.05, budget - spent), tuning.lns_step_limit)
        # deterministic: the wall clock is only the overall safety net
        step_wall = wall_end - time.monotonic()
        if not deterministic:
            step_wall = min(step * tuning.lns_step_wall_factor, step_wall)
        got, _b, optimal, dtime, nvars = _solve_interval_model(
            sub,
            sorted(freed),
            hint,
            step,
            max(0.05, step_wall),
            seed + stats["steps"],
            workers,
            deterministic,
            None,
            tuning,
            with_stats=True,
        )
        spent += dtime + tuning.lns_step_dtime + tuning.lns_var_dtime * nvars
        new = hint
        if got is not None:
            cost = _comp_cost(cp, got, freed)
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
        total += _comp_cost(cp, sol, list(js))
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
    seed: int,
    workers: int,
    deterministic: bool,
    tuning: SolverTuning = DEFAULT_TUNING,
) -> tuple[Solution, dict[str, int]]:
    """LNS for components with multi-operation orders (cost mode): free a few whole
    orders (an unplaced or a costly one, and the orders placed on its machines near its
    time), re-solve them exactly with the interval model in the free time the rest of
    the schedule leaves (all machines), keep the result when it is not worse.  Budget
    in deterministic time as in :func:`lns`."""
    import random

    sol = {j: sol[j] for j in comp if j in sol}
    stats = {"steps": 0, "improved": 0, "gain": 0}
    order_ids = sorted({cp.jobs[j].order for j in comp})
    if not order_ids or budget <= 0:
        return sol, stats
    rng = random.Random(seed * 7919 + comp[0])
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
        if not deterministic:
            step_wall = min(step * tuning.lns_step_wall_factor, step_wall)
        got, _b, optimal, dtime, nvars = _solve_interval_model(
            sub,
            freed,
            hint,
            step,
            max(0.05, step_wall),
            seed + stats["steps"],
            workers,
            deterministic,
            None,
            tuning,
            with_stats=True,
        )
        spent += dtime + tuning.order_lns_step_dtime + tuning.order_lns_var_dtime * nvars
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
