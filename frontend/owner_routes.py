"""Owner pages: edit and retire a machine, CSV import and export of machines and of
offered windows, the availability calendar of one machine, earnings and payouts.

Form posts redirect (post-redirect-get) or re-render with the error beside its
field (422, or the status of the domain error)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from app.bookings import service as bookings
from app.catalog import service as catalog
from app.errors import InvalidInput, MarketplaceError, RowsRejected
from app.machines import availability, telemetry
from app.machines import service as machines
from app.machines.service import MachineQuery, MachineSort
from app.money import queries as money_queries
from frontend import forms
from frontend.web import Csrf, SessionDep, T, WebUser, redirect, render
from models import ACTIVE_STATES, Machine, User, utcnow
from models.machine import MAX_WINDOW_IMPORT_ROWS, MachineCreate, WindowCreate, WindowImportRow

router = APIRouter(include_in_schema=False)

PAGE = 25
CALENDAR_DAYS = 14
MAX_IMPORT_ROWS = 2000
MAX_IMPORT_BYTES = 2_000_000
CSV_COLUMNS = (
    "name", "make_model", "process_key", "materials", "envelope_x_mm", "envelope_y_mm", "envelope_z_mm",
    "tolerance_mm", "speed_factor", "hourly_rate_yuan", "min_booking_minutes", "leasable",
)  # fmt: skip
WINDOW_COLUMNS = ("machine_id", "start", "end")  # required; the export adds machine_name and source
TRUE = {"1", "true", "yes", "y", "on", "是"}
FALSE = {"", "0", "false", "no", "n", "off", "否"}


# ----------------------------------------------------------------- edit and retire


def _edit_page(request: Request, t: T, user: User, m: Machine, values: dict[str, Any], errors: dict[str, str],
               status: int = 200) -> HTMLResponse:  # fmt: skip
    return render(
        request,
        t,
        "owner_machine_edit.html",
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
        m = await run_in_threadpool(
            lambda: machines.update_machine(
                session=session, user=user, machine_id=machine_id, data=data
            )
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
    return render(request, t, "owner_machine_retire.html", {"m": m, "error": None}, user=user)


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
            "owner_machine_retire.html",
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
        request, t, "owner_token.html", {"m": m, "token": token, "endpoint": endpoint}, user=user
    )
    response.headers["Cache-Control"] = "no-store"
    return response


# ----------------------------------------------------------------- CSV import and export


@dataclass(frozen=True)
class RowError:
    row: int  # the line of the file; the header is line 1
    field: str
    message: str


def _row_data(t: T, row: dict[str, str]) -> MachineCreate:
    leasable = (row.get("leasable") or "").strip().lower()
    if leasable not in TRUE | FALSE:
        raise InvalidInput(t.gettext("Write true or false."), field="leasable")
    return MachineCreate.model_validate({
        "name": (row.get("name") or "").strip(), "make_model": (row.get("make_model") or "").strip(),
        "process_key": (row.get("process_key") or "").strip(), "materials": forms.materials(row.get("materials") or "", ";"),
        "envelope_x_mm": row.get("envelope_x_mm") or 0, "envelope_y_mm": row.get("envelope_y_mm") or 0,
        "envelope_z_mm": row.get("envelope_z_mm") or 0, "tolerance_mm": row.get("tolerance_mm") or 0.1,
        "speed_factor": row.get("speed_factor") or 1, "hourly_rate_fen": forms.rate_fen(t, row.get("hourly_rate_yuan") or ""),
        "min_booking_minutes": row.get("min_booking_minutes") or 60, "leasable": leasable in TRUE,
    })  # fmt: skip


def parse_machines_csv(
    session: Session, t: T, text: str
) -> tuple[list[MachineCreate], list[RowError]]:
    """Every row checked with the schema and the process catalogue; nothing written."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        return [], [
            RowError(1, ", ".join(missing), t.gettext("Missing columns in the header row."))
        ]
    reader.fieldnames = header
    rows: list[MachineCreate] = []
    errors: list[RowError] = []
    seen = 0
    for row in reader:
        i = reader.line_num  # the file's line (where the row ends, if a quoted cell spans lines)
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue  # a blank line
        seen += 1
        if seen > MAX_IMPORT_ROWS:
            errors.append(
                RowError(i, "-", t.gettext("At most {n} rows per file.", n=MAX_IMPORT_ROWS))
            )
            break
        try:
            data = _row_data(t, row)
            catalog.check_process_materials(
                session=session, process_key=data.process_key, materials=data.materials
            )
        except (MarketplaceError, ValidationError) as exc:
            errors += [
                RowError(i, field, message) for field, message in forms.machine_errors(exc).items()
            ]
            continue
        rows.append(data)
    if not rows and not errors:
        errors.append(RowError(2, "-", t.gettext("The file has no machine rows.")))
    return rows, errors


@router.get("/owner/machines/import", response_class=HTMLResponse)
def import_form(request: Request, user: WebUser, t: T) -> HTMLResponse:
    return render(
        request,
        t,
        "owner_import.html",
        {"kind": "machines", "columns": CSV_COLUMNS, "report": None, "errors": {}},
        user=user,
    )


async def _read_csv(request: Request, t: T) -> tuple[str | None, dict[str, str]]:
    """The uploaded file's text, or an error for the file field."""
    form = await request.form()
    upload = form.get("file")
    raw = (
        await upload.read(MAX_IMPORT_BYTES + 1)
        if upload is not None and not isinstance(upload, str)
        else b""
    )
    if not raw or len(raw) > MAX_IMPORT_BYTES:
        return None, {"file": t.gettext("Choose a CSV file (at most 2 MB).")}
    try:
        return raw.decode("utf-8-sig"), {}
    except UnicodeDecodeError:
        return None, {"file": t.gettext("The file is not UTF-8 text.")}


@router.post("/owner/machines/import", response_class=HTMLResponse, dependencies=[Csrf])
async def import_machines(request: Request, session: SessionDep, user: WebUser, t: T) -> Response:
    ctx: dict[str, Any] = {"kind": "machines", "columns": CSV_COLUMNS, "report": None, "errors": {}}
    text, ctx["errors"] = await _read_csv(request, t)
    if text is None:
        return render(request, t, "owner_import.html", ctx, user=user, status_code=422)
    rows, report = await run_in_threadpool(lambda: parse_machines_csv(session, t, text))
    if report:
        ctx["report"] = report
        return render(request, t, "owner_import.html", ctx, user=user, status_code=422)
    try:
        created = await run_in_threadpool(
            lambda: machines.import_machines(session=session, user=user, rows=rows)
        )
    except MarketplaceError as exc:
        ctx["errors"] = {"file": exc.message}
        return render(request, t, "owner_import.html", ctx, user=user, status_code=exc.status_code)
    return redirect("/owner/machines", request, t.gettext("{n} machines imported.", n=len(created)))


@router.get("/owner/machines/export.csv")
def export_machines(session: SessionDep, user: WebUser) -> Response:
    query = MachineQuery(owner_org_id=user.org_id, sort=MachineSort.name, limit=1_000_000)
    rows, _ = machines.search_machines(session=session, user=user, query=query)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for m in rows:
        w.writerow([m.name, m.make_model, m.process_key, ";".join(m.materials), m.envelope_x_mm, m.envelope_y_mm,
                    m.envelope_z_mm, m.tolerance_mm, m.speed_factor, forms.yuan(m.hourly_rate_fen), m.min_booking_minutes,
                    "true" if m.leasable else "false"])  # fmt: skip
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="machines.csv"'})  # fmt: skip


def _csv_local(t: T, value: dt.datetime) -> str:
    local = value.astimezone(t.tz).replace(tzinfo=None)
    return local.isoformat(
        sep=" ", timespec="minutes" if not (local.second or local.microsecond) else "auto"
    )


def parse_windows_csv(t: T, text: str) -> tuple[list[WindowImportRow], list[int], list[RowError]]:
    """Rows read and typed (nothing checked against the database): the rows, the file
    line of each, and the problems found."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in WINDOW_COLUMNS if c not in header]
    if missing:
        return (
            [],
            [],
            [RowError(1, ", ".join(missing), t.gettext("Missing columns in the header row."))],
        )
    reader.fieldnames = header
    rows: list[WindowImportRow] = []
    lines: list[int] = []
    errors: list[RowError] = []
    seen = 0
    for row in reader:
        i = reader.line_num
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        seen += 1
        if seen > MAX_WINDOW_IMPORT_ROWS:
            errors.append(
                RowError(i, "-", t.gettext("At most {n} rows per file.", n=MAX_WINDOW_IMPORT_ROWS))
            )
            break
        found: list[RowError] = []
        machine_id = (row.get("machine_id") or "").strip()
        if not re.fullmatch(r"[0-9]{1,10}", machine_id) or not 1 <= int(machine_id) < 2**31:
            found.append(
                RowError(
                    i, "machine_id", t.gettext("Write the machine's number, as in the export.")
                )
            )
        times: dict[str, dt.datetime] = {}
        for name in ("start", "end"):
            try:
                times[name] = forms.parse_local(row.get(name) or "", t.tz)
            except (ValueError, OverflowError):
                found.append(
                    RowError(i, name, t.gettext("Write a time as 2026-12-01 09:00 (Beijing time)."))
                )
        if found:
            errors += found
            continue
        rows.append(
            WindowImportRow(
                machine_id=int(machine_id), start_at=times["start"], end_at=times["end"]
            )
        )
        lines.append(i)
    if not rows and not errors:
        errors.append(RowError(2, "-", t.gettext("The file has no window rows.")))
    return rows, lines, errors


@router.get("/owner/windows/import", response_class=HTMLResponse)
def windows_import_form(request: Request, user: WebUser, t: T) -> HTMLResponse:
    return render(
        request,
        t,
        "owner_import.html",
        {
            "kind": "windows",
            "columns": WINDOW_COLUMNS,
            "report": None,
            "errors": {},
            "max_rows": MAX_WINDOW_IMPORT_ROWS,
        },
        user=user,
    )


@router.post("/owner/windows/import", response_class=HTMLResponse, dependencies=[Csrf])
async def import_windows(request: Request, session: SessionDep, user: WebUser, t: T) -> Response:
    ctx: dict[str, Any] = {
        "kind": "windows",
        "columns": WINDOW_COLUMNS,
        "report": None,
        "errors": {},
        "max_rows": MAX_WINDOW_IMPORT_ROWS,
    }
    text, ctx["errors"] = await _read_csv(request, t)
    if text is None:
        return render(request, t, "owner_import.html", ctx, user=user, status_code=422)
    rows, lines, report = await run_in_threadpool(lambda: parse_windows_csv(t, text))
    if report:
        ctx["report"] = report
        return render(request, t, "owner_import.html", ctx, user=user, status_code=422)
    try:
        created, already = await run_in_threadpool(
            lambda: availability.import_windows(session=session, user=user, rows=rows)
        )
    except RowsRejected as exc:
        ctx["report"] = [
            RowError(lines[i], {"start_at": "start", "end_at": "end"}.get(f, f), m)
            for i, f, m, _ in exc.problems
        ]
        return render(request, t, "owner_import.html", ctx, user=user, status_code=exc.status_code)
    except MarketplaceError as exc:
        ctx["errors"] = {"file": exc.message}
        return render(request, t, "owner_import.html", ctx, user=user, status_code=exc.status_code)
    return redirect(
        "/owner/machines",
        request,
        t.gettext("{n} windows offered ({k} were offered already).", n=created, k=already),
    )


@router.get("/owner/windows/export.csv")
def export_windows(session: SessionDep, user: WebUser, t: T) -> Response:
    """Offered windows of my machines that have not ended, in Beijing time."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(("machine_id", "machine_name", "start", "end", "source"))
    for m, win in availability.list_own_windows(session=session, user=user, after=utcnow()):
        w.writerow(
            [
                m.id,
                m.name,
                _csv_local(t, win.start_at),
                _csv_local(t, win.end_at),
                "rule" if win.rule_id else "single",
            ]
        )
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="windows.csv"'})  # fmt: skip


# ----------------------------------------------------------------- availability calendar


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
    return render(request, t, "owner_calendar.html", {
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
        await run_in_threadpool(
            lambda: availability.create_window(
                session=session, user=user, machine_id=machine_id, data=data
            )
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


# ----------------------------------------------------------------- earnings


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
        "owner_earnings.html",
        {"e": e, "payouts": e.payouts[:PAGE], "page": page, "more": more},
        user=user,
    )
