"""The orchestrator: greedy warm start, decomposition, a time share per component, one
strategy per component (:func:`matching.engine.choose.choose`), in threads, then the
final repair and bound.  The answer is never worse than the best greedy order.

The time limit covers everything after compiling.  In deterministic mode (the default)
every CP-SAT search is single-worker under a deterministic-time limit derived from the
component's share, and shares come from problem sizes only, so equal inputs, seed and
worker count give equal answers unless a wall-clock safety net is what stops a search;
``matching/NOTES.md`` ("Determinism") says when that happens.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from matching.bound import makespan_lower_bound
from matching.compiled import CompiledProblem, compile_problem, limit_options
from matching.domain import MatchProblem, MatchResult, ObjectiveMode
from matching.engine.choose import choose
from matching.engine.common import (
    ComponentResult,
    ComponentTask,
    Progress,
    Reporter,
    Search,
    Solution,
    component_cost,
    coupled,
    trivial_bound,
)
from matching.engine.components import decompose
from matching.engine.repair import repair
from matching.engine.result import EngineResult, to_match_result
from matching.greedy import best_greedy
from matching.objective import breakdown, constant_penalty, evaluate
from matching.tuning import DEFAULT_TUNING, SolverTuning


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
    """Match ``problem`` within ``time_limit_s``.  Never raises on infeasibility: work
    that cannot be placed is reported in ``MatchResult.unassigned`` with its reason.
    ``tuning`` overrides the engine's numbers (:class:`matching.tuning.SolverTuning`)."""
    t0 = time.monotonic()
    tuned = tuning if tuning is not None else DEFAULT_TUNING
    cp = compile_problem(
        problem,
        max_options=tuned.max_options,
        local_options=tuned.local_options,
        max_mb=tuned.max_model_mb,
    )
    compiled_s = time.monotonic() - t0
    result = solve_compiled(
        cp,
        time_limit_s=max(0.05, time_limit_s - (time.monotonic() - t0)),
        seed=seed,
        workers=workers,
        progress=progress,
        deterministic=deterministic,
        tuning=tuning,
    )
    out = to_match_result(cp, result, time.monotonic() - t0)
    out.stats["compile_s"] = round(compiled_s, 3)
    out.stats["options_dropped"] = cp.options_dropped
    return out


class _SafetyNets:
    """Wall-clock limits per component.  Deterministic mode: the deterministic limits
    decide and the wall clock is a safety net, a component's fair part of the time left
    (by size, among the components not finished, ``workers`` at a time) with some
    slack, so that a slowed-down machine cannot make the first components starve the
    last ones.  Otherwise: the component's share."""

    def __init__(
        self, sizes: list[int], deadline: float, reserve: float, workers: int, search: Search
    ) -> None:
        self._sizes, self._deadline, self._reserve = sizes, deadline, reserve
        self._workers, self._search = workers, search
        self._pending = float(max(1, sum(sizes)))  # sizes of the components not finished
        self._lock = threading.Lock()

    def wall(self, ci: int, share: float) -> float:
        if not self._search.deterministic:
            return max(0.05, min(share, self._deadline - time.monotonic() - self._reserve))
        tuning = self._search.tuning
        with self._lock:
            frac = max(1, self._workers) * self._sizes[ci] / max(1.0, self._pending)
        left = self._deadline - time.monotonic()
        return max(
            0.05,
            (left - self._reserve)
            * min(1.0, max(frac * tuning.wall_fair_slack, tuning.wall_fair_min)),
        )

    def done(self, ci: int) -> None:
        with self._lock:
            self._pending -= self._sizes[ci]


def solve_compiled(
    cp: CompiledProblem,
    *,
    time_limit_s: float = 10.0,
    seed: int = 0,
    workers: int = 2,
    progress: Progress | None = None,
    deterministic: bool = True,
    tuning: SolverTuning | None = None,
) -> EngineResult:
    """Solve the compiled problem (what :func:`solve` does after compiling; benchmark
    readers build the compiled form directly)."""
    tuning = tuning if tuning is not None else DEFAULT_TUNING
    if tuning.max_options is not None and cp.mode is ObjectiveMode.COST:
        small, kept = limit_options(cp, tuning.max_options + tuning.local_options)
        if kept:  # solve the bounded problem, answer in the caller's option indices
            got = _solve(small, time_limit_s, seed, workers, progress, deterministic, tuning)
            sol = {
                j: (kept[j][oi] if j in kept else oi, st) for j, (oi, st) in got.solution.items()
            }
            return replace(got, solution=sol)
    return _solve(cp, time_limit_s, seed, workers, progress, deterministic, tuning)


def _solve(
    cp: CompiledProblem,
    time_limit_s: float,
    seed: int,
    workers: int,
    progress: Progress | None,
    deterministic: bool,
    tuning: SolverTuning,
) -> EngineResult:
    t0 = time.monotonic()
    deadline = t0 + time_limit_s * (tuning.wall_factor if deterministic else 1.0)
    report = Reporter(progress, t0)

    # 1. the greedy: warm start, and the answer never to be worse than
    # (the orders after the first only within greedy_fraction of the limit, or greedy_min_s)
    greedy_end = t0 + max(tuning.greedy_min_s, time_limit_s * tuning.greedy_fraction)
    gname, gsol, gvals = best_greedy(cp, deadline=lambda: time.monotonic() > greedy_end)
    gobj = evaluate(cp, gsol)
    report(phase="greedy", objective=gobj, order=gname)

    # 2. components and their time shares (from sizes only)
    comps = decompose(cp)
    sizes = [sum(len(cp.jobs[j].options) for j in c) for c in comps]
    total = max(1, sum(sizes))
    if deterministic and tuning.wall_factor > 1:
        # the clock decides nothing: shares from the limit alone, the same however slow
        budget = time_limit_s * tuning.budget_fraction
    else:  # the time left after the greedy
        budget = max(0.0, (t0 + time_limit_s - time.monotonic()) * tuning.budget_fraction)
    # wall time kept for the final repair and evaluation (grows with the problem)
    reserve = tuning.reserve_s + min(
        tuning.reserve_fraction * time_limit_s,
        tuning.reserve_s_per_job * len(cp.jobs) + tuning.reserve_s_per_option * total,
    )
    parallel = not deterministic and tuning.parallel_components and len(comps) >= max(2, workers)
    # deterministic-time units per second of share, for CP-SAT searches and for LNS:
    # lower when components run on several threads at once
    if deterministic and min(workers, len(comps)) > 1:
        search_rate, lns_rate = tuning.parallel_search_speed, tuning.parallel_lns_speed
    else:
        search_rate = lns_rate = 1.0
    search = Search(seed=seed, workers=workers, deterministic=deterministic, tuning=tuning)
    nets = _SafetyNets(sizes, deadline, reserve, workers, search)

    # 3. one strategy per component
    def run(ci: int, share: float, nworkers: int) -> ComponentResult:
        try:
            wall = nets.wall(ci, share)
            open_end = None
            if parallel and ci >= len(comps) - max(1, workers):
                open_end = deadline - reserve  # nothing waits for this thread
            task = ComponentTask(
                index=ci,
                jobs=comps[ci],
                hint={j: gsol[j] for j in comps[ci] if j in gsol},
                share=share,
                wall=wall,
                started=time.monotonic(),
                search=Search(seed, nworkers, deterministic, tuning),
                search_rate=search_rate,
                lns_rate=lns_rate,
                report=report,
                callback=report.solution_callback(ci),
                open_end=open_end,
            )
            got = choose(cp, comps[ci], tuning).run(cp, task)
            report(phase="component", component=ci, jobs=len(comps[ci]), bound=got.bound)
            return got
        finally:
            nets.done(ci)

    if deterministic or parallel:
        # single-worker CP-SAT runs, components spread over ``workers`` threads
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
            share = max(0.05, deadline - time.monotonic() - (budget - spent))
            results.append(run(ci, share, workers))

    # 4. combine, repair, never worse than the greedy; the bound
    sol: Solution = {}
    bound_sum = 0
    makespan_bound = 0
    all_optimal = True
    for ci, got in enumerate(results):
        part = got.solution
        if not coupled(cp) and all(len(cp.orders[cp.jobs[j].order].jobs) == 1 for j in comps[ci]):
            # independent components of single-job orders: never worse than the greedy's
            gpart = {j: gsol[j] for j in comps[ci] if j in gsol}
            if component_cost(cp, gpart, comps[ci]) < component_cost(cp, part, comps[ci]):
                part = gpart
        sol.update(part)
        all_optimal &= got.optimal
        if cp.mode is ObjectiveMode.MAKESPAN:
            makespan_bound = max(makespan_bound, got.bound)
        else:
            bound_sum += got.bound
    sol = repair(cp, sol, until=deadline + tuning.greedy_min_s)
    obj = evaluate(cp, sol)
    winner = "engine"
    if gobj <= obj:
        sol, obj, winner = dict(gsol), gobj, "greedy"
    if cp.mode is ObjectiveMode.MAKESPAN:
        bound = max(makespan_bound, makespan_lower_bound(cp))
    else:
        bound = bound_sum + constant_penalty(cp)
    if cp.options_dropped and cp.mode is ObjectiveMode.COST:
        # a bound of the bounded problem is none of the whole one; the per-job bound is
        # (every job keeps its cheapest option)
        live = [j for j in range(len(cp.jobs)) if cp.jobs[j].options]
        bound = min(bound, trivial_bound(cp, live) + constant_penalty(cp))
        all_optimal = False
    bound = min(bound, obj)
    report(phase="done", objective=obj, bound=bound)
    return EngineResult(
        solution=sol,
        objective=obj,
        bound=bound,
        proven=all_optimal and bound >= obj,
        winner=winner,
        greedy_objective=gobj,
        greedy_order=gname,
        greedy=gvals,
        components=len(comps),
        terms=breakdown(cp, sol),
        greedy_placed=len(gsol),
    )
