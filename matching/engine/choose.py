"""Which strategy solves a component."""

from __future__ import annotations

from matching.compiled import CompiledProblem
from matching.domain import ObjectiveMode
from matching.engine.common import Strategy
from matching.engine.knapsack import KnapsackStrategy, slots_exact
from matching.engine.lns import GreedyLnsStrategy
from matching.engine.orders import OrderStrategy
from matching.engine.slots import SlotStrategy
from matching.tuning import SolverTuning


def choose(cp: CompiledProblem, jobs: list[int], tuning: SolverTuning) -> Strategy:
    """* multi-operation orders, or makespan mode: the interval model (:mod:`.orders`);
    * an owner-spread term (which couples every job): the slot model alone;
    * more than ``tuning.chunk_options`` options: LNS from the greedy;
    * the slot model is exact (GAP-like): SCIP then CP-SAT on it (:mod:`.knapsack`);
    * otherwise: the slot model, then LNS (:mod:`.slots`)."""
    single = all(len(cp.orders[cp.jobs[j].order].jobs) == 1 for j in jobs)
    if not single or cp.mode is ObjectiveMode.MAKESPAN:
        return OrderStrategy()
    if cp.owner_spread_fen:
        return SlotStrategy(lns=False)
    if sum(len(cp.jobs[j].options) for j in jobs) > tuning.chunk_options:
        return GreedyLnsStrategy()
    if slots_exact(cp, jobs):
        return KnapsackStrategy()
    return SlotStrategy()
