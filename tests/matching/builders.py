"""Tiny problem builders for matcher tests (keyword-only, with defaults)."""

from __future__ import annotations

from matching.domain import (
    MachineSpec,
    MatchProblem,
    ObjectiveMode,
    OperationSpec,
    OrderSpec,
    Weights,
)

NINGBO = (29.87, 121.55)
HANGZHOU = (30.27, 120.16)


def machine(
    *,
    id: str = "m1",
    owner_id: str = "o1",
    cluster: str = "ningbo",
    process: str = "mill3",
    materials: frozenset[str] = frozenset({"al"}),
    free: tuple[tuple[int, int], ...] = ((0, 1000),),
    rate: int = 6000,
    envelope: tuple[int, int, int] = (500, 400, 300),
    tolerance: float = 0.01,
    certs: frozenset[str] = frozenset(),
    speed: float = 1.0,
    min_booking: int = 0,
    site: tuple[float, float] = NINGBO,
    on_time: float = 1.0,
) -> MachineSpec:
    return MachineSpec(
        id=id,
        owner_id=owner_id,
        cluster=cluster,
        family="cnc",
        process=process,
        materials=materials,
        free=free,
        rate_fen_per_hour=rate,
        envelope_mm=envelope,
        tolerance_mm=tolerance,
        certifications=certs,
        speed_factor=speed,
        min_booking_min=min_booking,
        lat=site[0],
        lon=site[1],
        on_time_rate=on_time,
    )


def op(
    *,
    id: str = "op1",
    process: str = "mill3",
    material: str = "al",
    minutes: int = 60,
    envelope: tuple[int, int, int] = (100, 100, 100),
    tolerance: float = 0.05,
    certs: frozenset[str] = frozenset(),
    excluded: frozenset[str] = frozenset(),
) -> OperationSpec:
    return OperationSpec(
        id=id,
        process=process,
        material=material,
        std_duration_min=minutes,
        envelope_mm=envelope,
        tolerance_mm=tolerance,
        certifications=certs,
        excluded_machines=excluded,
    )


def order(
    *,
    id: str = "r1",
    ops: tuple[OperationSpec, ...] | None = None,
    release: int = 0,
    due: int = 10_000,
    hard: bool = False,
    tardiness: int = 10,
    penalty: int = 1_000_000,
    budget: int | None = None,
    max_km: float | None = None,
    delivery: tuple[float, float] = NINGBO,
    cluster: str | None = None,
) -> OrderSpec:
    return OrderSpec(
        id=id,
        buyer_id="b1",
        operations=ops if ops is not None else (op(),),
        release_min=release,
        due_min=due,
        hard_due=hard,
        tardiness_fen_per_min=tardiness,
        unassigned_penalty_fen=penalty,
        budget_fen=budget,
        max_distance_km=max_km,
        delivery_lat=delivery[0],
        delivery_lon=delivery[1],
        cluster=cluster,
    )


def problem(
    machines: list[MachineSpec],
    orders: list[OrderSpec],
    *,
    horizon: int = 10_000,
    weights: Weights | None = None,
    mode: ObjectiveMode = ObjectiveMode.COST,
) -> MatchProblem:
    return MatchProblem(
        machines=tuple(machines),
        orders=tuple(orders),
        horizon_min=horizon,
        weights=weights or Weights(),
        objective_mode=mode,
    )
