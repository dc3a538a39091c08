"""The availability calendar of one machine: a days × hours grid of free, offered and
booked time, the offered windows, and offering or withdrawing a single window."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.bookings import service as bookings
from app.errors import MarketplaceError
from app.machines import availability
from app.machines import service as machines
from frontend import forms
from frontend.web import PAGE, Csrf, SessionDep, T, WebUser, redirect, render, threaded
from models import ACTIVE_STATES, User, utcnow
from models.machine import WindowCreate

router = APIRouter(include_in_schema=False)

CALENDAR_DAYS = 14


def _calendar(t: T, now: dt.datetime, windows: list[Any], held: list[Any]) -> dict[str, Any]:
    """A days × hours grid in the display time zone: each hour is free, offered or booked."""
    first = now.astimezone(t.tz).replace(hour=0, minute=0, second=0, microsecond=0)
    days = []
    for d in range(CALENDAR_DAYS):
        day = first + dt.timedelta(days=d)
        cells = []
        for h in range(24):
            # built from the local wall clock, so a day always has 24 cells
            start = day.replace(hour=h).astimezone(dt.UTC)
            end = start + dt.timedelta(hours=1)
            if any(b.start_at < end and start < b.end_at for b in held):
                cells.append("booked")
            elif any(w.start_at < end and start < w.end_at for w in windows):
                cells.append("offered")
            else:
                cells.append("free")
        days.append((day.date().isoformat(), cells))
    return {
        "days": days,
        "start": first.astimezone(dt.UTC),
        "end": (first + dt.timedelta(days=CALENDAR_DAYS)).astimezone(dt.UTC),
    }


def _calendar_page(request: Request, session: SessionDep, user: User, t: T, machine_id: int, page: int,
                   values: dict[str, str] | None = None, errors: dict[str, str] | None = None, status: int = 200) -> HTMLResponse:  # fmt: skip
    m = machines.get_own_machine_or_raise(session=session, user=user, machine_id=machine_id)
    now = utcnow()
    first = now.astimezone(t.tz).replace(hour=0, minute=0, second=0, microsecond=0)
    start, end = (
        first.astimezone(dt.UTC),
        (first + dt.timedelta(days=CALENDAR_DAYS)).astimezone(dt.UTC),
    )
    windows = availability.list_windows(
        session=session, user=user, machine_id=machine_id, start=start, end=end
    )
    rows, _ = bookings.list_bookings(
        session=session, user=user, machine_id=machine_id, start=start, end=end, limit=1000
    )
    held = [b for b in rows if b.state in ACTIVE_STATES]
    page = max(page, 1)
    pages = max(1, -(-len(windows) // PAGE))
    if values is None:
        values = forms.window_defaults(t, first)
    return render(request, t, "owner/calendar.html", {
        "m": m, "grid": _calendar(t, now, windows, held), "windows": windows[(page - 1) * PAGE : page * PAGE],
        "window_count": len(windows), "page": page, "pages": pages, "bookings": held,
        "values": values, "errors": errors or {}, "hours": range(24),
    }, user=user, status_code=status)  # fmt: skip


@router.get("/owner/machines/{machine_id}/calendar", response_class=HTMLResponse)
def calendar(
    request: Request, session: SessionDep, user: WebUser, t: T, machine_id: int, page: int = 1
) -> HTMLResponse:
    return _calendar_page(request, session, user, t, machine_id, page)


@router.post(
    "/owner/machines/{machine_id}/windows", response_class=HTMLResponse, dependencies=[Csrf]
)
async def add_window(
    request: Request, session: SessionDep, user: WebUser, t: T, machine_id: int
) -> Response:
    form = await request.form()
    values = forms.window_values(form)
    parsed, errors = forms.window_times(t, values)
    if errors:
        return _calendar_page(request, session, user, t, machine_id, 1, values, errors, 422)
    try:
        data = WindowCreate(start_at=parsed["start_at"], end_at=parsed["end_at"])
        await threaded(
            availability.create_window, session=session, user=user, machine_id=machine_id, data=data
        )
    except MarketplaceError as exc:
        if exc.status_code in (403, 404):
            raise
        status = exc.status_code
        return _calendar_page(
            request, session, user, t, machine_id, 1, values, forms.machine_errors(exc), status
        )
    return redirect(f"/owner/machines/{machine_id}/calendar", request, t.gettext("Window offered."))


@router.post("/owner/machines/{machine_id}/windows/{window_id}/delete", dependencies=[Csrf])
def remove_window(
    request: Request, session: SessionDep, user: WebUser, t: T, machine_id: int, window_id: int
) -> Response:
    try:
        availability.delete_window(
            session=session, user=user, machine_id=machine_id, window_id=window_id
        )
    except MarketplaceError as exc:
        if exc.status_code == 404 and exc.field != "window_id":
            raise
        return redirect(f"/owner/machines/{machine_id}/calendar", request, "⚠ " + exc.message)
    return redirect(
        f"/owner/machines/{machine_id}/calendar", request, t.gettext("Window withdrawn.")
    )
