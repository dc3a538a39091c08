"""HTML pages (include_in_schema=False). Each page calls the same app services
as the API; form posts redirect (post-redirect-get) or re-render with the error
beside its field.

Why over 600 lines: it still holds the pages of every role (the owner's edit pages are
in owner_routes.py); the split into frontend/pages/, one module per role and area, is
the next step of the web UI work. Form parsing already lives in forms.py."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile as StarletteUploadFile

from app.accounts import service as accounts
from app.bookings import delivery as booking_delivery
from app.bookings import flows as booking_flows
from app.bookings import service as bookings
from app.catalog import service as catalog
from app.dashboard import service as dashboard
from app.demo.seed import DEMO_DOMAIN, DEMO_PASSWORD
from app.errors import MarketplaceError
from app.machines import availability, ical
from app.machines import service as machines
from app.machines.service import MachineQuery, MachineSort
from app.matching_runs import service as matching_runs
from app.orders import attachments, quotes
from app.orders import service as orders
from frontend import forms
from frontend.web import (
    Csrf,
    PaymentsDep,
    SessionDep,
    SettingsDep,
    T,
    WebUser,
    optional_user,
    redirect,
    render,
)
from models import Role, User, utcnow
from models.order import OrderCreate

router = APIRouter(include_in_schema=False)
PAGE = 25


def home_for(user: User) -> str:
    if user.has_role(Role.admin) or user.has_role(Role.operator):
        return "/operator"
    if user.has_role(Role.owner):
        return "/owner/machines"
    return "/buyer/orders"


@router.get("/", response_class=HTMLResponse)
def home(request: Request, session: SessionDep, t: T) -> HTMLResponse:
    user = optional_user(request, session)
    demo = [("owner", f"owner1@{DEMO_DOMAIN}"), ("buyer", f"buyer1@{DEMO_DOMAIN}"),
            ("operator", f"operator.ningbo-beilun@{DEMO_DOMAIN}"), ("admin", f"admin@{DEMO_DOMAIN}")]  # fmt: skip
    return render(
        request, t, "home.html", {"demo": demo, "demo_password": DEMO_PASSWORD}, user=user
    )


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, t: T, email: str = "") -> HTMLResponse:
    return render(request, t, "login.html", {"email": email, "errors": {}})


@router.post("/login", response_class=HTMLResponse, dependencies=[Csrf])
def login(
    request: Request, session: SessionDep, t: T,
    email: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
) -> Response:  # fmt: skip
    user = accounts.authenticate(session=session, email=email, password=password)
    if user is None:
        errors = {"password": t.gettext("Wrong email or password.")}
        return render(request, t, "login.html", {"email": email, "errors": errors}, status_code=401)
    request.session["user_id"] = user.id
    return redirect(home_for(user))


@router.post("/logout", dependencies=[Csrf])
def logout(request: Request) -> Response:
    lang = request.session.get("lang")
    request.session.clear()
    request.session["lang"] = lang
    return redirect("/")


# ----------------------------------------------------------------- owner


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
        "owner_machines.html",
        {"rows": rows, "count": count, "page": page, "pages": max(1, -(-count // PAGE)), "q": q},
        user=user,
    )


def _machine_form(
    request: Request,
    session: SessionDep,
    user: User,
    t: T,
    values: dict[str, Any],
    errors: dict[str, str],
    status: int = 200,
) -> HTMLResponse:
    processes = catalog.list_processes(session=session)
    return render(
        request,
        t,
        "machine_form.html",
        {"values": values, "errors": errors, "processes": processes},
        user=user,
        status_code=status,
    )


@router.get("/owner/machines/new", response_class=HTMLResponse)
def new_machine(request: Request, session: SessionDep, user: WebUser, t: T) -> HTMLResponse:
    return _machine_form(request, session, user, t, forms.new_machine_values(), {})


@router.post("/owner/machines/new", response_class=HTMLResponse, dependencies=[Csrf])
async def create_machine(request: Request, session: SessionDep, user: WebUser, t: T) -> Response:
    form = dict((await request.form()).items())
    values: dict[str, Any] = {k: v for k, v in form.items() if k != "csrf_token"}
    try:
        data = forms.machine_create(t, values)
        machine, _ = await _run(machines.create_machine, session=session, user=user, data=data)
    except (MarketplaceError, ValidationError) as exc:
        errors = forms.errors_of(exc, forms.RATE_FIELD)
        return _machine_form(request, session, user, t, values, errors, status=422)
    return redirect(f"/owner/machines/{machine.id}", request, t.gettext("Machine listed."))


async def _run(fn: Any, **kwargs: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(lambda: fn(**kwargs))


def _feed_url(request: Request, settings: SettingsDep, user: User, machine: Any) -> str | None:
    """The machine's iCalendar feed, shown to its owner only."""
    if machine.owner_org_id != user.org_id:
        return None
    return str(
        request.url_for(
            "machine_calendar", token=ical.feed_token(settings=settings, machine=machine)
        )
    )


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
    request: Request, session: SessionDep, settings: SettingsDep, user: User, t: T, machine_id: int,
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
    return render(request, t, "machine_detail.html", {"m": machine, "windows": windows, "rules": rules, "gantt": gantt,
                  "bookings": held, "rule_values": rule_values or defaults, "errors": errors or {},
                  "ical": _feed_url(request, settings, user, machine)}, user=user, status_code=status_code)  # fmt: skip


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
        data = forms.rule_create(form)
        _, created = await _run(availability.create_rule, session=session, user=user, machine_id=machine_id, data=data,
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


@router.get("/calendar/{token}.ics")
def machine_calendar(session: SessionDep, settings: SettingsDep, token: str) -> Response:
    """The iCalendar feed a calendar app subscribes to (no login: the URL is the key)."""
    machine = ical.machine_from_token(session=session, settings=settings, token=token)
    return Response(
        ical.machine_feed(session=session, machine=machine),
        media_type="text/calendar; charset=utf-8",
    )


@router.get("/owner/proposals", response_class=HTMLResponse)
def proposals(
    request: Request, session: SessionDep, user: WebUser, t: T, page: int = 1
) -> HTMLResponse:
    rows, count = matching_runs.list_proposals(
        session=session, user=user, limit=PAGE, offset=(max(page, 1) - 1) * PAGE
    )
    names = machines.machine_names(session=session, machine_ids={b.machine_id for b in rows})
    return render(request, t, "proposals.html", {"rows": rows, "names": names, "page": page,
                  "pages": max(1, -(-count // PAGE))}, user=user)  # fmt: skip


@router.post("/owner/proposals/{booking_id}/{action}", dependencies=[Csrf])
def answer_proposal(request: Request, session: SessionDep, payments: PaymentsDep, user: WebUser, t: T, booking_id: int, action: str,
                    reason: Annotated[str, Form()] = "") -> Response:  # fmt: skip
    if action not in ("accept", "decline"):
        return redirect("/owner/proposals")
    try:
        booking_flows.transition_booking(session=session, user=user, booking_id=booking_id, action=action, reason=reason,
                                    payments=payments)  # fmt: skip
    except MarketplaceError as exc:
        return redirect("/owner/proposals", request, "⚠ " + exc.message)
    return redirect("/owner/proposals", request, t.gettext("Proposal answered."))


# ----------------------------------------------------------------- buyer


@router.get("/buyer/orders", response_class=HTMLResponse)
def buyer_orders(
    request: Request, session: SessionDep, user: WebUser, t: T, page: int = 1
) -> HTMLResponse:
    rows, count = orders.list_orders(
        session=session, user=user, status=None, limit=PAGE, offset=(max(page, 1) - 1) * PAGE
    )
    return render(
        request,
        t,
        "buyer_orders.html",
        {"rows": rows, "count": count, "page": page, "pages": max(1, -(-count // PAGE))},
        user=user,
    )


def _order_form(
    request: Request,
    session: SessionDep,
    user: User,
    t: T,
    values: dict[str, Any],
    errors: dict[str, str],
    status: int = 200,
) -> HTMLResponse:
    return render(
        request,
        t,
        "order_form.html",
        {"values": values, "errors": errors, "processes": catalog.list_processes(session=session)},
        user=user,
        status_code=status,
    )


@router.get("/buyer/orders/new", response_class=HTMLResponse)
def new_order(request: Request, session: SessionDep, user: WebUser, t: T) -> HTMLResponse:
    return _order_form(request, session, user, t, forms.new_order_values(t, utcnow()), {})


@router.post("/buyer/orders/new", response_class=HTMLResponse, dependencies=[Csrf])
async def create_order(
    request: Request, session: SessionDep, settings: SettingsDep, user: WebUser, t: T
) -> Response:
    form = await request.form()
    values = forms.order_values(form)
    upload = form.get("attachment")
    has_file = isinstance(upload, StarletteUploadFile) and bool(upload.filename)
    try:
        data = forms.order_create(t, form)
        if has_file:  # refuse a bad file before anything is written
            assert isinstance(upload, StarletteUploadFile)
            attachments.check_upload(settings=settings, filename=upload.filename or "",
                                     content_type=upload.content_type or "", size=upload.size)  # fmt: skip
        # one command: the draft and its file are committed together, or neither is
        order = await _run(
            orders.create_order, session=session, user=user, data=data, commit=not has_file
        )
        if has_file:
            assert isinstance(upload, StarletteUploadFile)
            await _run(attachments.upload_attachment, session=session, settings=settings, user=user, order_id=order.id,
                       filename=upload.filename or "", content_type=upload.content_type or "", stream=upload.file)  # fmt: skip
    except (ValueError, MarketplaceError) as exc:  # nothing was committed: the session rolls back
        errors, status = forms.order_errors(t, exc)
        return _order_form(request, session, user, t, values, errors, status=status)
    return redirect(f"/buyer/orders/{order.id}/quote")


@router.get("/buyer/orders/{order_id}/quote", response_class=HTMLResponse)
def quote_page(
    request: Request, session: SessionDep, settings: SettingsDep, user: WebUser, t: T, order_id: int
) -> HTMLResponse:
    order = orders.get_own_order_or_raise(session=session, user=user, order_id=order_id)
    public = orders.order_public(session=session, order=order)
    draft = OrderCreate.model_validate(
        public.model_dump(
            exclude={"id", "status", "currency", "created_at", "updated_at", "buyer_org_id"}
        )
    )
    quote = quotes.create_quote(session=session, user=user, data=draft, settings=settings)
    return render(request, t, "quote.html", {"o": public, "quote": quote}, user=user)


@router.post("/buyer/orders/{order_id}/confirm", dependencies=[Csrf])
def confirm_order(request: Request, session: SessionDep, user: WebUser, t: T, order_id: int,
                  option: Annotated[str, Form()] = "", total_fen: Annotated[int, Form()] = 0) -> Response:  # fmt: skip
    note = (
        t.gettext(
            "Quote accepted: {option}, {total}", option=t.gettext(option), total=t.money(total_fen)
        )
        if option
        else ""
    )
    try:
        orders.open_order(session=session, user=user, order_id=order_id, note=note)
    except MarketplaceError as exc:
        return redirect(f"/buyer/orders/{order_id}", request, "⚠ " + exc.message)
    return redirect(
        f"/buyer/orders/{order_id}", request, t.gettext("Order confirmed: it is on the market.")
    )


@router.get("/buyer/orders/{order_id}", response_class=HTMLResponse)
def order_detail(
    request: Request, session: SessionDep, user: WebUser, t: T, order_id: int
) -> HTMLResponse:
    order = orders.get_order_or_raise(session=session, user=user, order_id=order_id)
    public = orders.order_public(session=session, order=order)
    timeline = orders.order_timeline(session=session, user=user, order_id=order_id)
    held, _ = bookings.list_bookings(session=session, user=user, order_id=order_id, limit=100)
    money_of = {
        m.booking_id: m
        for m in booking_delivery.order_money(session=session, user=user, order_id=order_id)
    }
    files = attachments.list_attachments(session=session, user=user, order_id=order_id)
    names = machines.machine_names(session=session, machine_ids={b.machine_id for b in held})
    return render(request, t, "order_detail.html", {"o": public, "timeline": timeline, "bookings": held, "names": names,
                  "money": money_of, "files": files, "mine": order.buyer_org_id == user.org_id}, user=user)  # fmt: skip


@router.post("/buyer/bookings/{booking_id}/delivery/{action}", dependencies=[Csrf])
def delivery(request: Request, session: SessionDep, payments: PaymentsDep, user: WebUser, t: T, booking_id: int, action: str,
             note: Annotated[str, Form()] = "") -> Response:  # fmt: skip
    booking = bookings.get_booking_or_raise(session=session, user=user, booking_id=booking_id)
    back = f"/buyer/orders/{booking.order_id}"
    try:
        if action == "accept":
            booking_delivery.accept_delivery(
                session=session, user=user, booking_id=booking_id, payments=payments
            )
        elif action == "dispute":
            if not note.strip():
                return redirect(
                    back, request, "⚠ " + t.gettext("Say what is wrong with the delivery.")
                )
            booking_delivery.open_dispute(
                session=session, user=user, booking_id=booking_id, note=note
            )
        else:
            return redirect(back)
    except MarketplaceError as exc:
        return redirect(back, request, "⚠ " + exc.message)
    return redirect(
        back,
        request,
        t.gettext("Delivery accepted.")
        if action == "accept"
        else t.gettext("Dispute opened: the money stays held."),
    )


@router.get("/buyer/attachments/{attachment_id}")
def download(
    session: SessionDep, settings: SettingsDep, user: WebUser, attachment_id: int
) -> Response:
    token, _ = attachments.create_download_link(
        session=session, settings=settings, user=user, attachment_id=attachment_id
    )
    return redirect(f"/api/v1/attachments/download/{token}")


@router.get("/buyer/machines", response_class=HTMLResponse)
def search(
    request: Request,
    session: SessionDep,
    user: WebUser,
    t: T,
    process: str = "",
    material: str = "",
    leasable: str = "",
    page: int = 1,
) -> HTMLResponse:
    query = MachineQuery(process_key=process or None, material=material or None, leasable=True if leasable else None,
                         limit=PAGE, offset=(max(page, 1) - 1) * PAGE)  # fmt: skip
    rows, count = machines.search_machines(session=session, user=user, query=query)
    return render(request, t, "machine_search.html", {"rows": rows, "count": count, "page": page, "pages": max(1, -(-count // PAGE)),
                  "processes": catalog.list_processes(session=session), "f": {"process": process, "material": material, "leasable": leasable}}, user=user)  # fmt: skip


def _lease_context(session: SessionDep, user: User, t: T, machine_id: int) -> dict[str, Any]:
    machine = machines.get_machine_or_raise(session=session, user=user, machine_id=machine_id)
    now = utcnow()
    free = availability.free_intervals(
        session=session,
        user=user,
        machine_id=machine_id,
        start=now,
        end=now + dt.timedelta(days=14),
    )
    usable = [
        (s, e) for s, e in free if (e - s).total_seconds() >= machine.min_booking_minutes * 60
    ]
    return {
        "m": machine,
        "free": usable,
        "min_booking": dt.timedelta(minutes=machine.min_booking_minutes),
    }


@router.get("/buyer/machines/{machine_id}", response_class=HTMLResponse)
def lease_page(
    request: Request,
    session: SessionDep,
    user: WebUser,
    t: T,
    machine_id: int,
    start: str = "",
    end: str = "",
) -> HTMLResponse:
    """The machine's free time for the next two weeks; picking a slot fills the form."""
    return render(request, t, "lease.html", {**_lease_context(session, user, t, machine_id), "errors": {},
                  "values": {"start_at": start, "end_at": end}}, user=user)  # fmt: skip


@router.post("/buyer/machines/{machine_id}/lease", response_class=HTMLResponse, dependencies=[Csrf])
async def lease(
    request: Request,
    session: SessionDep,
    payments: PaymentsDep,
    user: WebUser,
    t: T,
    machine_id: int,
) -> Response:
    form = await request.form()
    values = forms.lease_values(form)
    try:
        data = forms.lease_create(t, machine_id, values)
        booking = await _run(
            booking_flows.create_lease, session=session, user=user, data=data, payments=payments
        )
    except (MarketplaceError, ValueError) as exc:
        errors = forms.lease_errors(t, exc)
        return render(request, t, "lease.html", {**_lease_context(session, user, t, machine_id), "errors": errors, "values": values},
                      user=user, status_code=forms.status_of(exc))  # fmt: skip
    return redirect(
        "/buyer/leases", request, t.gettext("Leased: {price}", price=t.money(booking.price_fen))
    )


@router.get("/buyer/leases", response_class=HTMLResponse)
def my_leases(request: Request, session: SessionDep, user: WebUser, t: T) -> HTMLResponse:
    from models import BookingKind

    mine, _ = bookings.list_bookings(session=session, user=user, kind=BookingKind.lease, customer_org_id=user.org_id,
                                     limit=200)  # fmt: skip
    names = machines.machine_names(session=session, machine_ids={b.machine_id for b in mine})
    return render(request, t, "leases.html", {"rows": mine, "names": names}, user=user)


# ----------------------------------------------------------------- operator


def _period(t: T) -> tuple[dt.datetime, dt.datetime]:
    today = utcnow().astimezone(t.tz).replace(hour=0, minute=0, second=0, microsecond=0)
    return today.astimezone(dt.UTC), (today + dt.timedelta(days=15)).astimezone(dt.UTC)


@router.get("/operator", response_class=HTMLResponse)
def operator(
    request: Request, session: SessionDep, user: WebUser, t: T, cluster_id: int | None = None
) -> HTMLResponse:
    start, end = _period(t)
    d = dashboard.operator_dashboard(
        session=session, user=user, start=start, end=end, cluster_id=cluster_id, tz=t.tz.key
    )
    days = sorted({day for row in d.by_day.values() for day in row})
    cluster_names = sorted({c for row in d.heatmap.values() for c in row})
    runs, _ = matching_runs.list_match_runs(session=session, user=user, limit=1, offset=0)
    reasons: dict[str, int] = {}
    if runs:
        assert runs[0].id is not None
        for u in matching_runs.list_unmatched(session=session, run_id=runs[0].id):
            reasons[u.reason] = reasons.get(u.reason, 0) + 1
    return render(request, t, "operator.html", {"d": d, "days": days, "cluster_names": cluster_names, "last_run": runs[0] if runs else None,
                  "reasons": reasons}, user=user)  # fmt: skip


@router.get("/operator/export/{table}.csv")
def operator_csv(
    request: Request, session: SessionDep, user: WebUser, t: T, table: str
) -> Response:
    start, end = _period(t)
    d = dashboard.operator_dashboard(session=session, user=user, start=start, end=end, tz=t.tz.key)
    buf = io.StringIO()
    w = csv.writer(buf)
    if table == "processes":
        w.writerow(["process", "family", "machines", "offered_h", "booked_h", "utilization",
                    "offered_h_reported_7d", "running_h_7d", "actual_utilization_7d"])  # fmt: skip
        for r in d.by_process:
            actual = "" if r.actual_utilization is None else round(r.actual_utilization, 4)
            w.writerow([r.process, r.family, r.machines, round(r.offered_h, 1), round(r.booked_h, 1), round(r.utilization, 4),
                        round(r.monitored_offered_h, 1), round(r.running_h, 1), actual])  # fmt: skip
    elif table == "heatmap":
        w.writerow(["process", "cluster", "utilization"])
        for process, row in d.heatmap.items():
            for cluster, u in row.items():
                w.writerow([process, cluster, round(u, 4)])
    elif table == "days":
        w.writerow(["process", "day", "utilization"])
        for process, row in d.by_day.items():
            for day, u in row.items():
                w.writerow([process, day, round(u, 4)])
    elif table == "idle":
        w.writerow(["cluster", "process", "idle_h"])
        w.writerows([[n, p, round(h, 1)] for n, p, h in d.idle])
    else:
        return Response(status_code=404)
    return Response(
        buf.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{table}.csv"'},
    )


@router.get("/operator/match-runs", response_class=HTMLResponse)
def match_runs(
    request: Request, session: SessionDep, user: WebUser, t: T, page: int = 1
) -> HTMLResponse:
    runs, count = matching_runs.list_match_runs(
        session=session, user=user, limit=PAGE, offset=(max(page, 1) - 1) * PAGE
    )
    clusters = [c for c in catalog.list_clusters(session=session)
                if user.has_role(Role.admin) or c.operator_org_id == user.org_id]  # fmt: skip
    return render(request, t, "match_runs.html", {"runs": runs, "count": count, "page": page, "pages": max(1, -(-count // PAGE)),
                  "clusters": clusters}, user=user)  # fmt: skip


@router.post("/operator/match-runs", dependencies=[Csrf])
def run_match(request: Request, session: SessionDep, user: WebUser, t: T,
              cluster_id: Annotated[str, Form()] = "", time_limit_s: Annotated[float, Form()] = 5) -> Response:  # fmt: skip
    try:
        run = matching_runs.run_matching(session=session, user=user, cluster_id=int(cluster_id) if cluster_id else None,
                                         time_limit_s=min(max(time_limit_s, 1), 60))  # fmt: skip
    except MarketplaceError as exc:
        return redirect("/operator/match-runs", request, "⚠ " + exc.message)
    return redirect(f"/operator/match-runs/{run.id}", request,
                    t.gettext("Match run {id}: {n} proposals.", id=run.id, n=run.proposals))  # fmt: skip


@router.get("/operator/match-runs/{run_id}", response_class=HTMLResponse)
def match_run(
    request: Request, session: SessionDep, user: WebUser, t: T, run_id: int
) -> HTMLResponse:
    run = matching_runs.get_match_run_or_raise(session=session, user=user, run_id=run_id)
    unmatched = matching_runs.list_unmatched(session=session, run_id=run_id)
    reasons: dict[str, int] = {}
    for u in unmatched:
        reasons[u.reason] = reasons.get(u.reason, 0) + 1
    return render(
        request,
        t,
        "match_run.html",
        {"run": run, "unmatched": unmatched[:200], "reasons": reasons},
        user=user,
    )
