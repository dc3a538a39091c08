"""Machine telemetry: the states a connected machine reports with its token.

A state holds from the report that sets it until the next report, if that comes
within the hold time; a silent machine's state is unknown after its last report.
Consecutive reports of one state extend one span, so a machine that reports every
few minutes keeps a row per change of state, not per report. Each span also keeps how
many of its seconds lie inside the machine's offered windows (``offered_s``, kept up to
date when reports extend it and when offered time that overlaps it is withdrawn), so
that the operator's actual utilization is a sum, not a join of spans with windows."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from models.base import UTCDateTime

MAX_TELEMETRY_BATCH = 1000


class MachineState(StrEnum):
    running = "running"
    idle = "idle"
    down = "down"
    alarm = "alarm"


class MachineStateSpan(SQLModel, table=True):
    __tablename__ = "machine_state_span"
    # covers the dashboard's weekly sums (an index-only range scan per machine)
    __table_args__ = (
        Index(
            "ix_machine_state_span_machine_id_start_at",
            "machine_id",
            "start_at",
            "state",
            "offered_s",
        ),
        # the whole market's spans in a range (the dashboard's week, the history rollup)
        Index("ix_machine_state_span_start_at", "start_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    machine_id: int = Field(foreign_key="machine.id", ondelete="CASCADE")
    state: str = Field(max_length=10)
    start_at: dt.datetime = Field(sa_type=UTCDateTime)
    end_at: dt.datetime = Field(sa_type=UTCDateTime, index=True)
    reports: int = Field(default=1, ge=1)
    offered_s: int = Field(default=0, ge=0)


class StateReport(SQLModel):
    state: MachineState
    at: dt.datetime | None = Field(
        default=None, description="when the state was seen (UTC); default now"
    )


class StateReports(SQLModel):
    """Reports a machine buffered (e.g. while offline), in any order."""

    reports: list[StateReport] = Field(min_length=1, max_length=MAX_TELEMETRY_BATCH)


class TelemetryAccepted(SQLModel):
    machine_id: int
    accepted: int = Field(description="reports applied")
    ignored: int = Field(description="repeats, or older than the machine's last report")
    state: MachineState
    last_reported_at: dt.datetime


class TelemetryToken(SQLModel):
    machine_id: int
    telemetry_token: str = Field(description="Shown once; the old token stops working now.")
