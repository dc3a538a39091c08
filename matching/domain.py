"""Plain frozen dataclasses in and out of the matcher.

Conventions
-----------
* Time is an integer number of minutes from the start of the planning horizon.
* Money is an integer number of fen (CNY minor units).  Rates are fen per hour.
* ``MachineSpec.free`` is the time the machine can still be booked: the owner's
  availability windows **minus** every booking that must stay put (confirmed and
  in-progress bookings, and leases).  The caller removes frozen bookings before
  building the problem; the matcher never moves anything that is not in the problem.
  Intervals are half-open ``[start, end)`` and an operation must run inside one of them.
* An order is all-or-nothing: either every operation of the order is placed (in its
  listed sequence, with transport time between sites) or none is.

The app layer builds a :class:`MatchProblem` from DB rows; benchmark readers may
instead build a :class:`matching.compiled.CompiledProblem` directly (explicit
durations and costs per operation and machine).  Both go through the same engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

# distance and transport are market rules (matching.rules); re-exported here for callers
# that take them with the domain types
from matching.rules import haversine_km as haversine_km
from matching.rules import transport_fen as transport_fen
from matching.rules import transport_minutes as transport_minutes


class SolveStatus(StrEnum):
    OPTIMAL = "optimal"  # proven optimal (objective == bound)
    FEASIBLE = "feasible"  # a valid answer, not proven optimal
    INFEASIBLE = "infeasible"  # never returned in practice: leaving work out is always feasible
    UNKNOWN = "unknown"
    MODEL_INVALID = "model_invalid"


class Reason(StrEnum):
    """Why an operation is left unassigned."""

    NO_ELIGIBLE_MACHINE = "no_eligible_machine"  # no machine has the capability
    TOO_FAR = "too_far"  # capable machines exist, all beyond the buyer's max distance
    OVER_BUDGET = "over_budget"  # capable, near enough, but the price exceeds the budget
    NO_FREE_INTERVAL = "no_free_interval"  # no free interval fits between release and due
    DECLINED = "declined"  # it would fit, but only on machines it is excluded from
    DISPLACED = "displaced"  # it had feasible options but lost to better-valued work


class ObjectiveMode(StrEnum):
    COST = "cost"  # price + transport + tardiness + unassigned penalty (+ preferences)
    MAKESPAN = "makespan"  # latest end of any placed operation + unassigned penalty
    TARDINESS = "tardiness"  # tardiness price + unassigned penalty


Interval = tuple[int, int]
Envelope = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class MachineSpec:
    """A listed machine with what is still free of it.

    ``envelope_mm`` is the work envelope (0 in a dimension = not applicable / unbounded);
    ``tolerance_mm`` is the finest tolerance it can hold (0 = not stated: holds any);
    ``speed_factor`` > 1 means faster than the reference machine.
    """

    id: str
    owner_id: str
    cluster: str
    family: str
    process: str
    materials: frozenset[str]
    free: tuple[Interval, ...]
    rate_fen_per_hour: int
    envelope_mm: Envelope = (0, 0, 0)
    tolerance_mm: float = 0.0
    certifications: frozenset[str] = frozenset()
    speed_factor: float = 1.0
    min_booking_min: int = 0
    lat: float = 0.0
    lon: float = 0.0
    on_time_rate: float = 1.0


@dataclass(frozen=True, slots=True)
class OperationSpec:
    """One step of an order.  ``tolerance_mm`` is the required tolerance (0 = n/a).

    ``excluded_machines`` are ids of machines the operation must never be placed on
    (their owners declined it or let the proposal lapse); they are not eligible."""

    id: str
    process: str
    material: str
    std_duration_min: int
    envelope_mm: Envelope = (0, 0, 0)
    tolerance_mm: float = 0.0
    certifications: frozenset[str] = frozenset()
    excluded_machines: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """A buyer's order: operations run in the listed sequence.

    ``due_min`` is when the goods must be *delivered* (end of the last operation plus
    the transport to the delivery point).  With ``hard_due`` it is a hard deadline,
    otherwise every minute late costs ``tardiness_fen_per_min``.  ``budget_fen`` caps
    the sum of the processing prices of all operations.  ``max_distance_km`` caps the
    distance from every machine used to the delivery point.
    """

    id: str
    buyer_id: str
    operations: tuple[OperationSpec, ...]
    release_min: int
    due_min: int
    hard_due: bool = False
    tardiness_fen_per_min: int = 0
    unassigned_penalty_fen: int = 0  # per operation left out
    budget_fen: int | None = None
    max_distance_km: float | None = None
    delivery_lat: float = 0.0
    delivery_lon: float = 0.0
    cluster: str | None = None  # the buyer's cluster, for the same-cluster preference


@dataclass(frozen=True, slots=True)
class Weights:
    """Objective weights and transport model.

    * transport between two sites costs ``transport_fen_per_km`` per km (haversine) and
      takes ``transport_fixed_min`` + distance / ``transport_speed_kmh`` (0 on one site);
    * ``cross_cluster_fen`` is charged per hop that leaves the order's cluster (soft
      same-cluster preference; hops between two machines of different clusters, and the
      final hop when the order states its cluster);
    * ``owner_spread_fen`` is charged per operation given to the busiest owner (soft:
      spreads work across owners);
    * ``unreliability_fen`` is charged per operation times (1 - owner on-time rate).
    """

    transport_fen_per_km: int = 150
    transport_speed_kmh: float = 60.0
    transport_fixed_min: int = 30
    cross_cluster_fen: int = 0
    owner_spread_fen: int = 0
    unreliability_fen: int = 0


@dataclass(frozen=True, slots=True)
class MatchProblem:
    machines: tuple[MachineSpec, ...]
    orders: tuple[OrderSpec, ...]
    horizon_min: int
    weights: Weights = field(default_factory=Weights)
    objective_mode: ObjectiveMode = ObjectiveMode.COST


@dataclass(frozen=True, slots=True)
class Assignment:
    """An operation placed on a machine over ``[start_min, end_min)``.

    ``price_fen`` is the processing price; ``transport_fen`` the cost of moving the
    goods from this machine to the next site (next operation, or delivery point);
    ``tardiness_fen`` is the order's tardiness charge, on its last operation only.
    """

    operation_id: str
    order_id: str
    machine_id: str
    start_min: int
    end_min: int
    price_fen: int
    transport_fen: int = 0
    tardiness_fen: int = 0


@dataclass(frozen=True, slots=True)
class Unassigned:
    operation_id: str
    order_id: str
    reason: Reason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class MatchResult:
    """``objective_fen`` is in fen for cost/tardiness modes and in minutes (plus
    unassigned penalties) for makespan mode.  ``bound_fen`` is a proven lower bound on
    the objective of any valid answer; ``gap`` = (objective - bound) / objective."""

    status: SolveStatus
    assignments: tuple[Assignment, ...]
    unassigned: tuple[Unassigned, ...]
    objective_fen: int
    bound_fen: int
    gap: float
    seconds: float
    stats: dict[str, object] = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers


def run_minutes(op: OperationSpec, machine: MachineSpec) -> int:
    """Booked minutes of ``op`` on ``machine``: the standard duration scaled by the
    machine's speed factor, rounded up, and padded to the owner's minimum booking."""
    run = math.ceil(op.std_duration_min / machine.speed_factor - 1e-9)
    return max(run, machine.min_booking_min, 1)


def fits_envelope(part: Envelope, machine: Envelope) -> bool:
    """A part fits when its sorted dimensions fit the machine's sorted dimensions; a 0
    on either side means not applicable."""
    if not any(part) or not any(machine):
        return True
    p, m = sorted(part), sorted(machine)
    return all(pi == 0 or mi == 0 or pi <= mi for pi, mi in zip(p, m, strict=True))


def capable(op: OperationSpec, machine: MachineSpec) -> bool:
    """Capability: process, material, envelope, tolerance, certification."""
    if op.process != machine.process or op.material not in machine.materials:
        return False
    if not fits_envelope(op.envelope_mm, machine.envelope_mm):
        return False
    if op.tolerance_mm > 0 and machine.tolerance_mm > op.tolerance_mm + 1e-12:
        return False
    return op.certifications <= machine.certifications
