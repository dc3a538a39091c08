"""What the engine's parts share: solution and progress types, how a search is run
(:class:`Search`), one component's work order (:class:`ComponentTask`) and answer
(:class:`ComponentResult`), the :class:`Strategy` protocol, CP-SAT parameters and the
cost helpers every strategy uses."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from ortools.sat.python import cp_model

from matching.compiled import CompiledProblem
from matching.domain import ObjectiveMode
from matching.objective import placed_cost
from matching.tuning import DEFAULT_TUNING, SolverTuning

Progress = Callable[[dict[str, object]], None]
Solution = dict[int, tuple[int, int]]  # job -> (option, start minute)


@dataclass(frozen=True, slots=True)
class Search:
    """How CP-SAT searches run: seed, worker threads, deterministic limits, tuning."""

    seed: int = 0
    workers: int = 1
    deterministic: bool = True
    tuning: SolverTuning = DEFAULT_TUNING

    def reseeded(self, seed: int) -> Search:
        return replace(self, seed=seed)


class Reporter:
    """Sends progress events (``seconds`` since the solve began added) to ``progress``."""

    def __init__(self, progress: Progress | None, t0: float) -> None:
        self._progress, self._t0 = progress, t0

    def __call__(self, **kw: object) -> None:
        if self._progress is not None:
            self._progress({"seconds": round(time.monotonic() - self._t0, 3), **kw})

    def solution_callback(self, component: int) -> cp_model.CpSolverSolutionCallback | None:
        """A CP-SAT callback reporting one component's improving solutions, if wanted."""
        if self._progress is None:
            return None
        return _SolutionReporter(self._progress, component, self._t0)


class _SolutionReporter(cp_model.CpSolverSolutionCallback):
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


@dataclass(frozen=True, slots=True)
class ComponentTask:
    """One component to solve.  ``share`` is its time share (seconds of deterministic
    budget in deterministic mode), ``wall`` its wall-clock safety net from ``started``;
    ``search_rate`` / ``lns_rate`` scale a share into deterministic time (lower when
    components run on several threads); ``open_end`` is the instant LNS may run to when
    nothing waits for this thread (non-deterministic mode)."""

    index: int
    jobs: list[int]
    hint: Solution  # the greedy's placements of these jobs
    share: float
    wall: float
    started: float
    search: Search
    search_rate: float
    lns_rate: float
    report: Reporter
    callback: cp_model.CpSolverSolutionCallback | None = None
    open_end: float | None = None


@dataclass(frozen=True, slots=True)
class ComponentResult:
    solution: Solution
    bound: int  # lower bound on the component's cost
    optimal: bool  # proven optimal


class Strategy(Protocol):
    """One way to solve a component (chosen by :func:`matching.engine.choose.choose`)."""

    @property
    def name(self) -> str: ...

    def run(self, cp: CompiledProblem, task: ComponentTask) -> ComponentResult: ...


def set_params(solver: cp_model.CpSolver, time_s: float, wall_s: float, search: Search) -> None:
    """CP-SAT parameters: ``wall_s`` is always a wall-clock limit; deterministic mode adds a
    deterministic-time limit from ``time_s`` on a single worker."""
    p = solver.parameters
    p.num_workers = max(1, search.workers)
    p.random_seed = search.seed
    p.cp_model_probing_level = 0
    p.max_time_in_seconds = max(0.05, wall_s)
    if search.deterministic:
        p.num_workers = 1
        p.max_deterministic_time = max(0.05, time_s * search.tuning.dtime_per_second)


def coupled(cp: CompiledProblem) -> bool:
    """The objective links every job (makespan, owner spread): one component, and no
    LNS over orders."""
    return cp.owner_spread_fen > 0 or cp.mode is ObjectiveMode.MAKESPAN


def trivial_bound(cp: CompiledProblem, jobs: list[int]) -> int:
    """Each job costs at least the smaller of its penalty and its cheapest option."""
    return sum(min([cp.jobs[j].penalty, *(o.cost for o in cp.jobs[j].options)]) for j in jobs)


def component_cost(cp: CompiledProblem, sol: Solution, jobs: list[int]) -> int:
    """Placed costs and penalties of ``jobs`` (hops and the owner-spread term left out)."""
    total = 0
    for j in jobs:
        job = cp.jobs[j]
        got = sol.get(j)
        if got is None:
            total += job.penalty
        else:
            total += placed_cost(job, job.options[got[0]], got[1])
    return total
