from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from api.deps import CurrentUser, Id, IdFilter, Limit, Offset, SessionDep, SessionRoute, SettingsDep
from app.machines import availability, telemetry
from app.machines import service as machines
from app.machines.service import MachineQuery, MachineSort
from models.base import Page
from models.machine import (
    MachineCreate,
    MachineCreated,
    MachinePublic,
    MachineStatus,
    MachineUpdate,
    RuleCreate,
    RulePublic,
    WindowCreate,
    WindowPublic,
)
from models.telemetry import TelemetryToken

router = APIRouter(prefix="/machines", tags=["machines"], route_class=SessionRoute)
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such machine, or not visible to the caller"}
}


@router.get("", response_model=Page[MachinePublic])
def search_machines(
    session: SessionDep,
    user: CurrentUser,
    process: str | None = None,
    family: str | None = None,
    material: str | None = None,
    part_x_mm: Annotated[int, Query(ge=0, le=100_000)] = 0,
    part_y_mm: Annotated[int, Query(ge=0, le=100_000)] = 0,
    part_z_mm: Annotated[int, Query(ge=0, le=100_000)] = 0,
    tolerance_mm: Annotated[float | None, Query(gt=0, le=10)] = None,
    certification: str | None = None,
    cluster_id: IdFilter = None,
    owner_org_id: IdFilter = None,
    leasable: bool | None = None,
    status: MachineStatus | None = None,
    near_lat: Annotated[float | None, Query(ge=-90, le=90)] = None,
    near_lon: Annotated[float | None, Query(ge=-180, le=180)] = None,
    within_km: Annotated[float | None, Query(gt=0, le=5000)] = None,
    free_from: dt.datetime | None = None,
    free_to: dt.datetime | None = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
    sort: MachineSort = MachineSort.rate,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[MachinePublic]:
    """Search machines by capability, place and free time. A part fits when each of
    its dimensions is within the machine's envelope; tolerance is met when the
    machine's achievable tolerance is at most the one asked."""
    query = MachineQuery(
        process_key=process, family=family, material=material, part_x_mm=part_x_mm,
        part_y_mm=part_y_mm, part_z_mm=part_z_mm, tolerance_mm=tolerance_mm,
        certification=certification, cluster_id=cluster_id, owner_org_id=owner_org_id,
        leasable=leasable, status=status, near_lat=near_lat, near_lon=near_lon,
        within_km=within_km, free_from=free_from, free_to=free_to, q=q, sort=sort,
        limit=limit, offset=offset,
    )  # fmt: skip
    rows, count = machines.search_machines(session=session, user=user, query=query)
    return Page(data=rows, count=count)


@router.post("", response_model=MachineCreated, status_code=201)
def create_machine(session: SessionDep, user: CurrentUser, data: MachineCreate) -> MachineCreated:
    machine, token = machines.create_machine(session=session, user=user, data=data)
    return MachineCreated.model_validate(machine, update={"telemetry_token": token})


@router.get("/{machine_id}", response_model=MachinePublic, responses=NOT_FOUND)
def get_machine(session: SessionDep, user: CurrentUser, machine_id: Id) -> MachinePublic:
    return machines.machine_public(
        machines.get_machine_or_raise(session=session, user=user, machine_id=machine_id),
        viewer=user,
    )


@router.patch("/{machine_id}", response_model=MachinePublic, responses=NOT_FOUND)
def update_machine(
    session: SessionDep, user: CurrentUser, machine_id: Id, data: MachineUpdate
) -> MachinePublic:
    return machines.machine_public(
        machines.update_machine(session=session, user=user, machine_id=machine_id, data=data),
        viewer=user,
    )


@router.post("/{machine_id}/retire", response_model=MachinePublic, responses=NOT_FOUND)
def retire_machine(session: SessionDep, user: CurrentUser, machine_id: Id) -> MachinePublic:
    return machines.machine_public(
        machines.retire_machine(session=session, user=user, machine_id=machine_id),
        viewer=user,
    )


@router.post("/{machine_id}/telemetry-token", response_model=TelemetryToken, responses=NOT_FOUND)
def rotate_telemetry_token(
    session: SessionDep, user: CurrentUser, machine_id: Id
) -> TelemetryToken:
    """A new telemetry token, shown once; the old one, and the machine's iCalendar feed
    URLs, stop working at once."""
    token = telemetry.rotate_telemetry_token(session=session, user=user, machine_id=machine_id)
    return TelemetryToken(machine_id=machine_id, telemetry_token=token)


@router.get("/{machine_id}/windows", response_model=list[WindowPublic], responses=NOT_FOUND)
def list_windows(
    session: SessionDep,
    user: CurrentUser,
    machine_id: Id,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> list[WindowPublic]:
    rows = availability.list_windows(
        session=session, user=user, machine_id=machine_id, start=start, end=end
    )
    return [WindowPublic.model_validate(w) for w in rows]


@router.post("/{machine_id}/windows", response_model=WindowPublic, status_code=201)
def create_window(
    session: SessionDep, user: CurrentUser, machine_id: Id, data: WindowCreate
) -> WindowPublic:
    window = availability.create_window(
        session=session, user=user, machine_id=machine_id, data=data
    )
    return WindowPublic.model_validate(window)


@router.delete("/{machine_id}/windows/{window_id}", status_code=204)
def delete_window(
    session: SessionDep, user: CurrentUser, machine_id: Id, window_id: Id
) -> Response:
    availability.delete_window(
        session=session, user=user, machine_id=machine_id, window_id=window_id
    )
    return Response(status_code=204)


@router.get("/{machine_id}/rules", response_model=list[RulePublic], responses=NOT_FOUND)
def list_rules(session: SessionDep, user: CurrentUser, machine_id: Id) -> list[RulePublic]:
    rules = availability.list_rules(session=session, user=user, machine_id=machine_id)
    return [RulePublic.model_validate(r) for r in rules]


@router.post("/{machine_id}/rules", response_model=RulePublic, status_code=201)
def create_rule(
    session: SessionDep, settings: SettingsDep, user: CurrentUser, machine_id: Id, data: RuleCreate
) -> RulePublic:
    """A recurring offer (e.g. weekdays 20:00–08:00), expanded into windows."""
    rule, created = availability.create_rule(
        session=session, user=user, machine_id=machine_id, data=data,
        timezone=settings.display_timezone, horizon_days=settings.planning_horizon_days,
    )  # fmt: skip
    return RulePublic.model_validate(rule, update={"windows_created": created})


@router.delete("/{machine_id}/rules/{rule_id}", status_code=204)
def delete_rule(session: SessionDep, user: CurrentUser, machine_id: Id, rule_id: Id) -> Response:
    availability.delete_rule(session=session, user=user, machine_id=machine_id, rule_id=rule_id)
    return Response(status_code=204)
