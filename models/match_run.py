"""Match runs: one run of the matcher over a cluster or the whole market, kept as
history with its inputs, outcome and the reason each unplaced operation was left out."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import BigInteger, Index
from sqlmodel import Field, SQLModel

from models.base import StrEnumType, UTCDateTime, utcnow

MAX_TIME_LIMIT_S = 120.0


class MatchRunStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


ACTIVE_RUN_STATES = (MatchRunStatus.queued, MatchRunStatus.running)


class MatchScope(StrEnum):
    cluster = "cluster"
    market = "market"


class MatchRun(SQLModel, table=True):
    __tablename__ = "match_run"
    __table_args__ = (Index("uq_match_run_active_scope", "active_scope", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    scope: str = Field(max_length=10)
    cluster_id: int | None = Field(default=None, foreign_key="cluster.id", index=True)
    status: MatchRunStatus = Field(
        default=MatchRunStatus.running, sa_type=StrEnumType(MatchRunStatus, 20), index=True
    )
    started_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    finished_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    horizon_start: dt.datetime = Field(sa_type=UTCDateTime)
    horizon_end: dt.datetime = Field(sa_type=UTCDateTime)
    orders_in: int = 0
    operations_in: int = 0
    machines_in: int = 0
    free_intervals_in: int = 0
    proposals: int = 0
    superseded: int = 0
    unmatched: int = 0
    # orders whose inputs changed during the solve: skipped, left in the pool for the next run
    requeued: int = 0
    solver_status: str = Field(default="", max_length=20)
    objective_fen: int | None = Field(default=None, sa_type=BigInteger)
    bound_fen: int | None = Field(default=None, sa_type=BigInteger)
    gap: float | None = None
    solve_seconds: float | None = None
    write_seconds: float | None = None  # the write-back, all its batches
    greedy_placed: int | None = None  # operations the greedy baseline placed, for comparison
    seed: int = 0
    time_limit_s: float
    error: str = Field(default="", max_length=2000)
    triggered_by_user_id: int | None = Field(default=None, foreign_key="user.id")
    queued_at: dt.datetime | None = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # "market" or "cluster:<id>" while queued or running, None after (unique: one at a time)
    active_scope: str | None = Field(default=None, max_length=20)
    phase: str = Field(default="", max_length=40)  # the solver's phase while running
    progress_seconds: float | None = None  # seconds into the solve at the last progress
    heartbeat_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    cancel_requested: bool = False


class MatchRunUnmatched(SQLModel, table=True):
    """An operation a run left out, and why (a ``matching.Reason`` value)."""

    __tablename__ = "match_run_unmatched"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="match_run.id", index=True, ondelete="CASCADE")
    order_id: int = Field(foreign_key="order.id", index=True)
    operation_id: int | None = Field(default=None, foreign_key="operation.id")
    reason: str = Field(max_length=40)
    detail: str = Field(default="", max_length=500)


class MatchRunCreate(SQLModel):
    cluster_id: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="null: the whole market (admins)"
    )
    time_limit_s: float = Field(default=10.0, ge=1, le=MAX_TIME_LIMIT_S)


class MatchRunPublic(SQLModel):
    id: int
    scope: str
    cluster_id: int | None
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    horizon_start: dt.datetime
    horizon_end: dt.datetime
    orders_in: int
    operations_in: int
    machines_in: int
    free_intervals_in: int
    proposals: int
    superseded: int
    unmatched: int
    requeued: int
    solver_status: str
    objective_fen: int | None
    bound_fen: int | None
    gap: float | None
    solve_seconds: float | None
    write_seconds: float | None
    greedy_placed: int | None
    seed: int
    time_limit_s: float
    error: str
    triggered_by_user_id: int | None
    queued_at: dt.datetime | None
    phase: str
    progress_seconds: float | None
    heartbeat_at: dt.datetime | None
    cancel_requested: bool


class MatchRunUnmatchedPublic(SQLModel):
    order_id: int
    operation_id: int | None
    reason: str
    detail: str


class MatchRunDetail(MatchRunPublic):
    unmatched_operations: list[MatchRunUnmatchedPublic]
