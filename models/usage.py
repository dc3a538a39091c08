"""The dashboard's history: what the raw rows (offered windows, bookings, telemetry
spans) said about each machine on each closed calendar day, rolled up by the periodic
task ``history.rollup`` (``app.dashboard.history``).

One row per machine and day (the display time zone's day of each row's ``start_at``,
the day the dashboard files it under). Rows are per machine, not per cluster and
process, so that the dashboard joins the machine as it is now (its cluster, its process,
retired or not), exactly as it does for the raw rows. ``HistoryRollup`` says how far the
rows go: the dashboard reads every day up to ``through_day`` from here and the later
ones from the raw rows. ``MachineHistory`` keeps each machine's all-time done bookings
up to the same day, so that the on-time rate reads one row per machine."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Date
from sqlmodel import Field, SQLModel

from models.base import UTCDateTime


class MachineDay(SQLModel, table=True):
    __tablename__ = "machine_day"

    # (day, machine): the whole market's days are one range scan of the primary key
    day: dt.date = Field(sa_type=Date, primary_key=True)
    machine_id: int = Field(foreign_key="machine.id", primary_key=True, ondelete="CASCADE")
    offered_s: int = Field(default=0, sa_type=BigInteger)  # windows starting that day
    held_s: int = Field(default=0, sa_type=BigInteger)  # bookings confirmed, running, done
    held_fen: int = Field(default=0, sa_type=BigInteger)  # their prices
    proposed_s: int = Field(default=0, sa_type=BigInteger)
    monitored_s: int = Field(default=0, sa_type=BigInteger)  # span seconds in offered time
    running_s: int = Field(default=0, sa_type=BigInteger)  # of those, reported running
    done_bookings: int = 0
    on_time_bookings: int = 0  # done by their order's due time


class MachineHistory(SQLModel, table=True):
    """A machine's done bookings that started on a rolled-up day (all time)."""

    __tablename__ = "machine_history"

    machine_id: int = Field(foreign_key="machine.id", primary_key=True, ondelete="CASCADE")
    done_bookings: int = 0
    on_time_bookings: int = 0


class HistoryRollup(SQLModel, table=True):
    """One row: the last day rolled up, and when."""

    __tablename__ = "history_rollup"

    id: int = Field(default=1, primary_key=True)
    tz: str = Field(max_length=64)  # the time zone of the days
    through_day: dt.date = Field(sa_type=Date)
    rolled_at: dt.datetime = Field(sa_type=UTCDateTime)
