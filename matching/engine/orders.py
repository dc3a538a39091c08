"""The order strategy, for components with multi-operation orders and for makespan mode:
the exact interval model on windows tightened by precedence
(:func:`matching.bound.chain_windows`), in cost mode for
:attr:`SolverTuning.order_model_fraction` of the share, then LNS over whole orders
(:func:`matching.engine.lns.lns_orders`) for the rest.  When the objective couples the
whole market (makespan, owner spread) the model has all of the share."""

from __future__ import annotations

import time
from dataclasses import dataclass

from matching import bound as B
from matching import constraints as C
from matching.compiled import CompiledProblem
from matching.domain import ObjectiveMode
from matching.engine.common import ComponentResult, ComponentTask, coupled, trivial_bound
from matching.engine.intervals import solve_interval_model
from matching.engine.lns import lns_orders
from matching.objective import evaluate


@dataclass(frozen=True, slots=True)
class OrderStrategy:
    name: str = "orders"

    def run(self, cp: CompiledProblem, task: ComponentTask) -> ComponentResult:
        tuning = task.search.tuning
        comp, share, wall = task.jobs, task.share, task.wall
        with_lns = tuning.order_lns and not coupled(cp)
        if with_lns and sum(len(cp.jobs[j].options) for j in comp) > tuning.chunk_options:
            # too large for the interval model (and its LP) within usual limits: no model
            # is built; LNS over whole orders from the greedy for the whole share
            return self._lns_only(cp, task)
        tight = B.chain_windows(cp, comp)
        lpb = 0
        if cp.mode is not ObjectiveMode.MAKESPAN:
            # relaxation bound: slot LP with chained windows, orders all-or-nothing
            # (precedence order, hop costs and budgets dropped); a small share of time
            slots, entries = C.slot_entries(tight, comp)
            lpb = (
                B.lp_bound(
                    tight,
                    C.SlotVars(slots, entries),
                    comp,
                    time_limit_s=max(
                        0.02,
                        min(tuning.order_lp_fraction * share, tuning.order_lp_fraction * wall),
                    ),
                    same=B.order_pairs(cp, comp),
                    tuning=tuning,
                )
                or 0
            )
            lpb = max(lpb, trivial_bound(cp, comp))
        model_share = share * tuning.order_model_fraction if with_lns else share
        model_wall = wall - (time.monotonic() - task.started)
        if with_lns:
            model_wall *= tuning.order_model_fraction
        answer = solve_interval_model(
            tight,
            comp,
            task.hint,
            model_share * task.search_rate,
            max(0.05, model_wall),
            task.search,
            task.callback,
        )
        cbound = max(answer.bound, lpb)
        optimal = answer.optimal
        part = answer.solution if answer.solution is not None else {}
        if not coupled(cp) and evaluate(cp, task.hint) < evaluate(cp, part):
            part = dict(task.hint)  # never worse than the greedy's part of the component
        if with_lns and not optimal:
            if task.search.deterministic:
                budget = (
                    share
                    * (1.0 - tuning.order_model_fraction)
                    * task.lns_rate
                    * tuning.dtime_per_second
                )
            else:
                budget = float("inf")
            part, stats = lns_orders(cp, part, comp, budget, task.started + task.wall, task.search)
            task.report(phase="lns", component=task.index, **stats)
        return ComponentResult(part, cbound, optimal)

    def _lns_only(self, cp: CompiledProblem, task: ComponentTask) -> ComponentResult:
        tuning = task.search.tuning
        part = dict(task.hint)
        budget = float("inf")
        if task.search.deterministic:
            budget = task.share * task.lns_rate * tuning.dtime_per_second
        part, stats = lns_orders(cp, part, task.jobs, budget, task.started + task.wall, task.search)
        task.report(phase="lns", component=task.index, **stats)
        return ComponentResult(part, trivial_bound(cp, task.jobs), False)
