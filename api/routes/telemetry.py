"""Machine telemetry: a connected machine reports its state with its own token
(header ``X-Machine-Token``), never with a user's login."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header

from api.deps import SessionDep, SessionRoute, SettingsDep
from app.machines import telemetry
from models import Machine
from models.telemetry import MachineState, StateReport, StateReports, TelemetryAccepted

router = APIRouter(prefix="/telemetry", tags=["telemetry"], route_class=SessionRoute)
TOKEN = Annotated[str, Header(alias="X-Machine-Token", description="the machine's telemetry token")]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no token, or a token that is unknown or was rotated"},
    403: {"description": "the machine is retired"},
    422: {"description": "a report is in the future or too old; `field` names it; nothing written"},
}


def _accepted(machine: Machine, applied: int, ignored: int) -> TelemetryAccepted:
    assert (
        machine.id is not None
        and machine.last_reported_at is not None
        and machine.reported_state is not None
    )
    return TelemetryAccepted(machine_id=machine.id, accepted=applied, ignored=ignored,
                             state=MachineState(machine.reported_state), last_reported_at=machine.last_reported_at)  # fmt: skip


@router.post("", response_model=TelemetryAccepted, responses=ERRORS)
def report_state(
    session: SessionDep, settings: SettingsDep, report: StateReport, token: TOKEN = ""
) -> TelemetryAccepted:
    """One state (running, idle, down, alarm), seen now or at ``at``."""
    machine, applied, ignored = telemetry.report_states(
        session=session, token=token, reports=[report], hold_minutes=settings.telemetry_hold_minutes,
        max_age_days=settings.telemetry_max_age_days, field="",
    )  # fmt: skip
    return _accepted(machine, applied, ignored)


@router.post("/batch", response_model=TelemetryAccepted, responses=ERRORS)
def report_states(
    session: SessionDep, settings: SettingsDep, data: StateReports, token: TOKEN = ""
) -> TelemetryAccepted:
    """Reports a device buffered (up to 1,000, any order): all applied or none."""
    machine, applied, ignored = telemetry.report_states(
        session=session, token=token, reports=data.reports, hold_minutes=settings.telemetry_hold_minutes,
        max_age_days=settings.telemetry_max_age_days,
    )  # fmt: skip
    return _accepted(machine, applied, ignored)
