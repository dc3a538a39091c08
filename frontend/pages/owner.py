"""The owner's machine pages: the list, listing a machine, a machine's page (its
offered time as a Gantt chart, recurring rules, the iCalendar feed), editing and
retiring it, its telemetry token; the proposals to answer and the earnings.

The calendar of offered windows is in owner_calendar.py, the CSV files in owner_csv.py."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from app.bookings import flows as booking_flows
from app.bookings import service as bookings
from app.config import Settings
from app.errors import MarketplaceError
from app.machines import availability, telemetry
from app.machines import service as machines
from app.machines.service import MachineQuery, MachineSort
from app.matching_runs import service as matching_runs
from app.money import queries as money_queries
from frontend import forms
from frontend.feeds import feed_url
from frontend.web import (
    PAGE,
    Csrf,
    SessionDep,
    SettingsDep,
    T,
    WebUser,
    redirect,
    render,
    threaded,
)
from models import Machine, User, utcnow

router = APIRouter(include_in_schema=False)


# ----------------------------------------------------------------- machines


@router.get("/owner/machines", response_class=HTMLResponse)
def owner_machines(
    request: Request, session: SessionDep, user: WebUser, t: T, page: int = 1, q: str = ""
) -> HTMLResponse:
    query = MachineQuery(
        owner_org_id=user.org_id,
        q=q or None,
        sort=MachineSort.name,
        limit=PAGE,
        offset=(max(page, 1) - 1) * PAGE,
    )
    rows, count = machines.search_machines(session=session, user=user, query=query)
    return render(
        request,
        t,
        "owner/machines.html",
        {"rows": rows, "count": count, "page": page, "pages": max(1, -(-count // PAGE)), "q": q},
        user=user,
    )


@router.get("/owner/machines/new", response_class=HTMLResponse)
def new_machine(request: Request, session: SessionDep, user: WebUser, t: T) -> HTMLResponse:
    values = forms.new_machine_values()
    return forms.render_form(request, session, t, "owner/machine_form.html", values, {}, user=user)


@router.post("/owner/machines/new", response_class=HTMLResponse, dependencies=[Csrf])
async def create_machine(request: Request, session: SessionDep, user: WebUser, t: T) -> Response:
    form = dict((await request.form()).items())
    values: dict[str, Any] = {k: v for k, v in form.items() if k != "csrf_token"}
    try:
        data = forms.machine_create(t, values)
        machine, _ = await threaded(machines.create_machine, session=session, user=user, data=data)
    except (MarketplaceError, ValidationError) as exc:
        errors = forms.errors_of(exc, forms.RATE_FIELD)
        return forms.render_form(request, session, t, "owner/machine_form.html", values, errors,
                                 user=user, status_code=422)  # fmt: skip
    return redirect(f"/owner/machines/{machine.id}", request, t.gettext("Machine listed."))


@router.get("/owner/machines/{machine_id}", response_class=HTMLResponse)
def machine_detail(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: WebUser,
    t: T,
    machine_id: int,
) -> HTMLResponse:
    return _machine_page(request, session, settings, user, t, machine_id)


def _machine_page(
    request: Request, session: SessionDep, settings: Settings, user: User, t: T, machine_id: int,
    rule_values: dict[str, Any] | None = None, errors: dict[str, str] | None = None, status_code: int = 200,
) -> HTMLResponse:  # fmt: skip
    machine = machines.get_machine_or_raise(session=session, user=user, machine_id=machine_id)
    now = utcnow()
    windows = availability.list_windows(
        session=session,
        user=user,
        machine_id=machine_id,
        start=now,
        end=now + dt.timedelta(days=14),
    )
    rules = availability.list_rules(session=session, user=user, machine_id=machine_id)
    held, _ = bookings.list_bookings(session=session, user=user, machine_id=machine_id, start=now,
                                     end=now + dt.timedelta(days=14), limit=500)  # fmt: skip
    gantt = _gantt(t, now, now + dt.timedelta(days=14), windows, held)
    today = now.astimezone(t.tz).date()
    defaults = forms.rule_defaults(today)
    return render(request, t, "owner/machine_detail.html", {"m": machine, "windows": windows, "rules": rules, "gantt": gantt,
                  "bookings": held, "rule_values": rule_values or defaults, "errors": errors or {},
                  "ical": feed_url(request, settings, user, machine)}, user=user, status_code=status_code)  # fmt: skip


def _gantt(
    t: T, start: dt.datetime, end: dt.datetime, windows: list[Any], held: list[Any]
) -> dict[str, Any]:
    span = (end - start).total_seconds()
    width = 960

    def x(when: dt.datetime) -> float:
        return max(0.0, min(width, (when - start).total_seconds() / span * width))

    days = [
        (x(start + dt.timedelta(days=i)), t.datetime(start + dt.timedelta(days=i))[5:10])
        for i in range(15)
    ]
    return {"width": width, "days": days,
            "windows": [(x(w.start_at), x(w.end_at) - x(w.start_at), t.datetime(w.start_at), t.datetime(w.end_at)) for w in windows],
            "bookings": [(x(b.start_at), x(b.end_at) - x(b.start_at), b.state, b.kind, t.datetime(b.start_at), t.datetime(b.end_at)) for b in held]}  # fmt: skip


@router.post("/owner/machines/{machine_id}/rules", response_class=HTMLResponse, dependencies=[Csrf])
async def add_rule(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: WebUser,
    t: T,
    machine_id: int,
) -> Response:
    form = await request.form()
    try:
        data = forms.rule_create(t, form)
        _, created = await threaded(availability.create_rule, session=session, user=user, machine_id=machine_id, data=data,
                                    timezone=settings.display_timezone, horizon_days=settings.planning_horizon_days)  # fmt: skip
    except (MarketplaceError, ValidationError) as exc:
        values = forms.rule_values(form)
        errors = forms.errors_of(exc)
        return _machine_page(
            request, session, settings, user, t, machine_id, values, errors, forms.status_of(exc)
        )
    return redirect(
        f"/owner/machines/{machine_id}", request, t.gettext("{n} windows offered.", n=created)
    )


# ----------------------------------------------------------------- edit and retire


def _edit_page(request: Request, t: T, user: User, m: Machine, values: dict[str, Any], errors: dict[str, str],
               status: int = 200) -> HTMLResponse:  # fmt: skip
    return render(
        request,
        t,
        "owner/machine_edit.html",
        {"m": m, "values": values, "errors": errors},
        user=user,
        status_code=status,
    )


@router.get("/owner/machines/{machine_id}/edit", response_class=HTMLResponse)
def edit_machine_form(
    request: Request, session: SessionDep, user: WebUser, t: T, machine_id: int
) -> HTMLResponse:
    m = machines.get_own_machine_or_raise(session=session, user=user, machine_id=machine_id)
    return _edit_page(request, t, user, m, forms.machine_values(m), {})


@router.post("/owner/machines/{machine_id}/edit", response_class=HTMLResponse, dependencies=[Csrf])
async def edit_machine(
    request: Request, session: SessionDep, user: WebUser, t: T, machine_id: int
) -> Response:
    form = await request.form()
    values = forms.edit_values(form)
    try:
        data = forms.machine_update(t, values)
        m = await threaded(
            machines.update_machine, session=session, user=user, machine_id=machine_id, data=data
        )
    except (MarketplaceError, ValidationError) as exc:
        if isinstance(exc, MarketplaceError) and exc.status_code in (403, 404):
            raise
        m = machines.get_own_machine_or_raise(session=session, user=user, machine_id=machine_id)
        errors = {**forms.missing_required(t, values), **forms.machine_errors(exc)}
        return _edit_page(request, t, user, m, values, errors, status=forms.status_of(exc))
    return redirect(f"/owner/machines/{m.id}", request, t.gettext("Machine saved."))


@router.get("/owner/machines/{machine_id}/retire", response_class=HTMLResponse)
def retire_confirm(
    request: Request, session: SessionDep, user: WebUser, t: T, machine_id: int
) -> HTMLResponse:
    m = machines.get_own_machine_or_raise(session=session, user=user, machine_id=machine_id)
    return render(request, t, "owner/machine_retire.html", {"m": m, "error": None}, user=user)


@router.post(
    "/owner/machines/{machine_id}/retire", response_class=HTMLResponse, dependencies=[Csrf]
)
def retire(request: Request, session: SessionDep, user: WebUser, t: T, machine_id: int) -> Response:
    try:
        m = machines.retire_machine(session=session, user=user, machine_id=machine_id)
    except MarketplaceError as exc:
        if exc.status_code in (403, 404):
            raise
        m = machines.get_own_machine_or_raise(session=session, user=user, machine_id=machine_id)
        return render(
            request,
            t,
            "owner/machine_retire.html",
            {"m": m, "error": exc.message},
            user=user,
            status_code=exc.status_code,
        )
    return redirect("/owner/machines", request, t.gettext("Machine retired: {name}", name=m.name))


@router.post(
    "/owner/machines/{machine_id}/telemetry-token", response_class=HTMLResponse, dependencies=[Csrf]
)
def new_telemetry_token(
    request: Request, session: SessionDep, user: WebUser, t: T, machine_id: int
) -> HTMLResponse:
    """A new token, shown once on this page (not redirected: it must not be kept anywhere)."""
    token = telemetry.rotate_telemetry_token(session=session, user=user, machine_id=machine_id)
    m = machines.get_own_machine_or_raise(session=session, user=user, machine_id=machine_id)
    endpoint = str(request.base_url).rstrip("/") + "/api/v1/telemetry"
    response = render(
        request, t, "owner/token.html", {"m": m, "token": token, "endpoint": endpoint}, user=user
    )
    response.headers["Cache-Control"] = "no-store"
    return response


# ----------------------------------------------------------------- proposals and earnings


@router.get("/owner/proposals", response_class=HTMLResponse)
def proposals(
    request: Request, session: SessionDep, user: WebUser, t: T, page: int = 1
) -> HTMLResponse:
    rows, count = matching_runs.list_proposals(
        session=session, user=user, limit=PAGE, offset=(max(page, 1) - 1) * PAGE
    )
    names = machines.machine_names(session=session, machine_ids={b.machine_id for b in rows})
    return render(request, t, "owner/proposals.html", {"rows": rows, "names": names, "page": page,
                  "pages": max(1, -(-count // PAGE))}, user=user)  # fmt: skip


@router.post("/owner/proposals/{booking_id}/{action}", dependencies=[Csrf])
def answer_proposal(request: Request, session: SessionDep, user: WebUser, t: T, booking_id: int, action: str,
                    reason: Annotated[str, Form()] = "") -> Response:  # fmt: skip
    if action not in ("accept", "decline"):
        return redirect("/owner/proposals")
    try:
        booking_flows.transition_booking(
            session=session, user=user, booking_id=booking_id, action=action, reason=reason
        )
    except MarketplaceError as exc:
        return redirect("/owner/proposals", request, "⚠ " + exc.message)
    return redirect("/owner/proposals", request, t.gettext("Proposal answered."))


@router.get("/owner/earnings", response_class=HTMLResponse)
def earnings(
    request: Request, session: SessionDep, user: WebUser, t: T, page: int = 1
) -> HTMLResponse:
    page = max(page, 1)
    e = money_queries.owner_earnings(
        session=session, user=user, limit=PAGE + 1, offset=(page - 1) * PAGE
    )
    more = len(e.payouts) > PAGE
    return render(
        request,
        t,
        "owner/earnings.html",
        {"e": e, "payouts": e.payouts[:PAGE], "page": page, "more": more},
        user=user,
    )
