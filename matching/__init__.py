"""capshare matcher: a pure CP-SAT package (stdlib + ortools only).

Public API::

    from matching import solve, check_result
    from matching.domain import MachineSpec, OperationSpec, OrderSpec, MatchProblem, ...
    from matching.rules import haversine_km, price_fen, transport_minutes, ...
    from matching.tuning import SolverTuning  # solve(..., tuning=SolverTuning(...))
"""

from matching.compiled import TooLarge
from matching.domain import (
    Assignment,
    MachineSpec,
    MatchProblem,
    MatchResult,
    ObjectiveMode,
    OperationSpec,
    OrderSpec,
    Reason,
    SolveStatus,
    Unassigned,
    Weights,
)
from matching.engine import solve
from matching.tuning import SolverTuning
from matching.validation import Violation, check_result

__all__ = [
    "Assignment",
    "MachineSpec",
    "MatchProblem",
    "MatchResult",
    "ObjectiveMode",
    "OperationSpec",
    "OrderSpec",
    "Reason",
    "SolveStatus",
    "SolverTuning",
    "TooLarge",
    "Unassigned",
    "Violation",
    "Weights",
    "check_result",
    "solve",
]
