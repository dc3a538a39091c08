"""SQL pieces the dashboard and its history share, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Float, cast, func
from sqlmodel import Session


def hours(session: Session, start: Any, end: Any) -> ColumnElement[float]:
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 24.0
    return cast(func.extract("epoch", end - start), Float(asdecimal=False)) / 3600.0


def least(session: Session, *values: Any) -> Any:
    return func.min(*values) if session.get_bind().dialect.name == "sqlite" else func.least(*values)


def greatest(session: Session, *values: Any) -> Any:
    return (
        func.max(*values) if session.get_bind().dialect.name == "sqlite" else func.greatest(*values)
    )


def local_day(session: Session, column: Any, tz: str) -> Any:
    """The calendar day of a UTC timestamp in the display time zone, in SQL."""
    if session.get_bind().dialect.name == "sqlite":
        offset = dt.datetime.now(ZoneInfo(tz)).utcoffset() or dt.timedelta()
        return func.date(column, f"{offset.total_seconds() / 3600:+g} hours")
    return func.date(func.timezone(tz, column))


def midnight(day: dt.date, tz: str) -> dt.datetime:
    """The UTC instant a calendar day of ``tz`` begins."""
    return dt.datetime.combine(day, dt.time(), tzinfo=ZoneInfo(tz)).astimezone(dt.UTC)


def day_of(at: dt.datetime, tz: str) -> dt.date:
    return at.astimezone(ZoneInfo(tz)).date()
