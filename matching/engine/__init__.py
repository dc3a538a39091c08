"""The engine: a short orchestrator (:mod:`.orchestrator`) and one module per strategy
(:mod:`.slots`, :mod:`.knapsack`, :mod:`.orders`, :mod:`.lns`), chosen per component by
:func:`choose`; :mod:`.intervals` is the exact model they share, :mod:`.repair` the
greedy repair, :mod:`.components` the decomposition.  ``matching/NOTES.md`` explains the
pipeline, its time split and what was measured."""

from matching.engine.choose import choose
from matching.engine.common import ComponentResult, ComponentTask, Search, Solution, Strategy
from matching.engine.components import components, decompose
from matching.engine.orchestrator import solve, solve_compiled
from matching.engine.result import EngineResult

__all__ = [
    "ComponentResult",
    "ComponentTask",
    "EngineResult",
    "Search",
    "Solution",
    "Strategy",
    "choose",
    "components",
    "decompose",
    "solve",
    "solve_compiled",
]
