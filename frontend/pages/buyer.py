"""The buyer's pages: orders (post one with its steps and a drawing, see the quote,
confirm it, follow it, accept or dispute a delivery, download a file) and leases
(search machines, pick a free slot, lease it)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import UploadFile as StarletteUploadFile

from app.bookings import delivery as booking_delivery
from app.bookings import flows as booking_flows
from app.bookings import service as bookings
from app.catalog import service as catalog
from app.errors import MarketplaceError
from app.machines import availability
from app.machines import service as machines
from app.machines.service import MachineQuery
from app.orders import attachments, quotes
from app.orders import service as orders
from frontend import forms
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
from models import BookingKind, User, utcnow
from models.order import OrderCreate

router = APIRouter(include_in_schema=False)


# ----------------------------------------------------------------- orders


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
        "buyer/orders.html",
        {"rows": rows, "count": count, "page": page, "pages": max(1, -(-count // PAGE))},
        user=user,
    )


@router.get("/buyer/orders/new", response_class=HTMLResponse)
def new_order(request: Request, session: SessionDep, user: WebUser, t: T) -> HTMLResponse:
    values = forms.new_order_values(t, utcnow())
    return forms.render_form(request, session, t, "buyer/order_form.html", values, {}, user=user)


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
        order = await threaded(
            orders.create_order, session=session, user=user, data=data, commit=not has_file
        )
        if has_file:
            assert isinstance(upload, StarletteUploadFile)
            await threaded(attachments.upload_attachment, session=session, settings=settings, user=user, order_id=order.id,
                           filename=upload.filename or "", content_type=upload.content_type or "", stream=upload.file)  # fmt: skip
    except (ValueError, MarketplaceError) as exc:  # nothing was committed: the session rolls back
        errors, status = forms.order_errors(t, exc)
        return forms.render_form(request, session, t, "buyer/order_form.html", values, errors,
                                 user=user, status_code=status)  # fmt: skip
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
    return render(request, t, "buyer/quote.html", {"o": public, "quote": quote}, user=user)


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
    return render(request, t, "buyer/order_detail.html", {"o": public, "timeline": timeline, "bookings": held, "names": names,
                  "money": money_of, "files": files, "mine": order.buyer_org_id == user.org_id}, user=user)  # fmt: skip


@router.post("/buyer/bookings/{booking_id}/delivery/{action}", dependencies=[Csrf])
def delivery(request: Request, session: SessionDep, user: WebUser, t: T, booking_id: int, action: str,
             note: Annotated[str, Form()] = "") -> Response:  # fmt: skip
    booking = bookings.get_booking_or_raise(session=session, user=user, booking_id=booking_id)
    back = f"/buyer/orders/{booking.order_id}"
    try:
        if action == "accept":
            booking_delivery.accept_delivery(session=session, user=user, booking_id=booking_id)
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


# ----------------------------------------------------------------- machines and leases


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
    return render(request, t, "buyer/machine_search.html", {"rows": rows, "count": count, "page": page, "pages": max(1, -(-count // PAGE)),
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
    return render(request, t, "buyer/lease.html", {**_lease_context(session, user, t, machine_id), "errors": {},
                  "values": {"start_at": start, "end_at": end}}, user=user)  # fmt: skip


@router.post("/buyer/machines/{machine_id}/lease", response_class=HTMLResponse, dependencies=[Csrf])
async def lease(
    request: Request,
    session: SessionDep,
    user: WebUser,
    t: T,
    machine_id: int,
) -> Response:
    form = await request.form()
    values = forms.lease_values(form)
    try:
        data = forms.lease_create(t, machine_id, values)
        booking = await threaded(booking_flows.create_lease, session=session, user=user, data=data)
    except (MarketplaceError, ValueError) as exc:
        errors = forms.lease_errors(t, exc)
        return render(request, t, "buyer/lease.html", {**_lease_context(session, user, t, machine_id), "errors": errors, "values": values},
                      user=user, status_code=forms.status_of(exc))  # fmt: skip
    return redirect(
        "/buyer/leases", request, t.gettext("Leased: {price}", price=t.money(booking.price_fen))
    )


@router.get("/buyer/leases", response_class=HTMLResponse)
def my_leases(request: Request, session: SessionDep, user: WebUser, t: T) -> HTMLResponse:
    mine, _ = bookings.list_bookings(session=session, user=user, kind=BookingKind.lease, customer_org_id=user.org_id,
                                     limit=200)  # fmt: skip
    names = machines.machine_names(session=session, machine_ids={b.machine_id for b in mine})
    return render(request, t, "buyer/leases.html", {"rows": mine, "names": names}, user=user)
