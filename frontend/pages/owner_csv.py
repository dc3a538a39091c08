"""The owner's CSV pages: import and export of machines and of offered windows.
Every row of a file is checked first; a file is imported whole or not at all, and a
refused one comes back as a report of (line, field, problem). The files' formats are
in frontend/csvfiles.py."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.errors import MarketplaceError, RowsRejected
from app.machines import availability
from app.machines import service as machines
from app.machines.service import MachineQuery, MachineSort
from frontend import csvfiles
from frontend.csvfiles import MACHINE_COLUMNS, WINDOW_COLUMNS, RowError
from frontend.web import Csrf, SessionDep, T, WebUser, redirect, render, threaded
from models import User, utcnow
from models.machine import MAX_WINDOW_IMPORT_ROWS

router = APIRouter(include_in_schema=False)


def _import_context(kind: str) -> dict[str, Any]:
    """The import page before anything is uploaded: the columns a file needs."""
    if kind == "machines":
        return {"kind": "machines", "columns": MACHINE_COLUMNS, "report": None, "errors": {}}
    return {"kind": "windows", "columns": WINDOW_COLUMNS, "report": None, "errors": {},
            "max_rows": MAX_WINDOW_IMPORT_ROWS}  # fmt: skip


def _page(
    request: Request, t: T, user: User, ctx: dict[str, Any], status: int = 200
) -> HTMLResponse:
    return render(request, t, "owner/import.html", ctx, user=user, status_code=status)


@router.get("/owner/machines/import", response_class=HTMLResponse)
def import_form(request: Request, user: WebUser, t: T) -> HTMLResponse:
    return _page(request, t, user, _import_context("machines"))


@router.post("/owner/machines/import", response_class=HTMLResponse, dependencies=[Csrf])
async def import_machines(request: Request, session: SessionDep, user: WebUser, t: T) -> Response:
    ctx = _import_context("machines")
    text, ctx["errors"] = await csvfiles.read_upload(request, t)
    if text is None:
        return _page(request, t, user, ctx, 422)
    rows, report = await threaded(csvfiles.parse_machines_csv, session=session, t=t, text=text)
    if report:
        ctx["report"] = report
        return _page(request, t, user, ctx, 422)
    try:
        created = await threaded(machines.import_machines, session=session, user=user, rows=rows)
    except MarketplaceError as exc:
        ctx["errors"] = {"file": exc.message}
        return _page(request, t, user, ctx, exc.status_code)
    return redirect("/owner/machines", request, t.gettext("{n} machines imported.", n=len(created)))


@router.get("/owner/machines/export.csv")
def export_machines(session: SessionDep, user: WebUser) -> Response:
    query = MachineQuery(owner_org_id=user.org_id, sort=MachineSort.name, limit=1_000_000)
    rows, _ = machines.search_machines(session=session, user=user, query=query)
    return csvfiles.attachment(csvfiles.machines_csv(rows), "machines.csv")


@router.get("/owner/windows/import", response_class=HTMLResponse)
def windows_import_form(request: Request, user: WebUser, t: T) -> HTMLResponse:
    return _page(request, t, user, _import_context("windows"))


@router.post("/owner/windows/import", response_class=HTMLResponse, dependencies=[Csrf])
async def import_windows(request: Request, session: SessionDep, user: WebUser, t: T) -> Response:
    ctx = _import_context("windows")
    text, ctx["errors"] = await csvfiles.read_upload(request, t)
    if text is None:
        return _page(request, t, user, ctx, 422)
    rows, lines, report = await threaded(csvfiles.parse_windows_csv, t=t, text=text)
    if report:
        ctx["report"] = report
        return _page(request, t, user, ctx, 422)
    try:
        created, already = await threaded(
            availability.import_windows, session=session, user=user, rows=rows
        )
    except RowsRejected as exc:
        ctx["report"] = [
            RowError(lines[i], {"start_at": "start", "end_at": "end"}.get(f, f), m)
            for i, f, m, _ in exc.problems
        ]
        return _page(request, t, user, ctx, exc.status_code)
    except MarketplaceError as exc:
        ctx["errors"] = {"file": exc.message}
        return _page(request, t, user, ctx, exc.status_code)
    return redirect(
        "/owner/machines",
        request,
        t.gettext("{n} windows offered ({k} were offered already).", n=created, k=already),
    )


@router.get("/owner/windows/export.csv")
def export_windows(session: SessionDep, user: WebUser, t: T) -> Response:
    """Offered windows of my machines that have not ended, in Beijing time."""
    rows = availability.list_own_windows(session=session, user=user, after=utcnow())
    return csvfiles.attachment(csvfiles.windows_csv(t, rows), "windows.csv")
