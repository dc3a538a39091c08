"""CSV files of the pages: the owner's machines and offered windows read (every row
checked, nothing written) and written back in the same format, and the operator's
dashboard tables.

A file's times are in the display time zone; its rate in yuan, as the forms have it."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlmodel import Session

from app.catalog import service as catalog
from app.dashboard.service import Dashboard
from app.errors import InvalidInput, MarketplaceError
from frontend import forms
from frontend.i18n import Translator
from models import AvailabilityWindow, Machine
from models.machine import MAX_WINDOW_IMPORT_ROWS, MachineCreate, MachinePublic, WindowImportRow

MAX_IMPORT_ROWS = 2000
MAX_IMPORT_BYTES = 2_000_000
MACHINE_COLUMNS = (
    "name", "make_model", "process_key", "materials", "envelope_x_mm", "envelope_y_mm", "envelope_z_mm",
    "tolerance_mm", "speed_factor", "hourly_rate_yuan", "min_booking_minutes", "leasable",
)  # fmt: skip
WINDOW_COLUMNS = ("machine_id", "start", "end")  # required; the export adds machine_name and source
TRUE = {"1", "true", "yes", "y", "on", "是"}
FALSE = {"", "0", "false", "no", "n", "off", "否"}


@dataclass(frozen=True)
class RowError:
    row: int  # the line of the file; the header is line 1
    field: str
    message: str


def attachment(text: str, filename: str, media_type: str = "text/csv; charset=utf-8") -> Response:
    """A CSV file the browser downloads under ``filename``."""
    return Response(text, media_type=media_type,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})  # fmt: skip


async def read_upload(request: Request, t: Translator) -> tuple[str | None, dict[str, str]]:
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


def local_time(t: Translator, value: dt.datetime) -> str:
    """A time as a file holds it: the display time zone's wall clock, to the minute."""
    local = value.astimezone(t.tz).replace(tzinfo=None)
    return local.isoformat(
        sep=" ", timespec="minutes" if not (local.second or local.microsecond) else "auto"
    )


# ----------------------------------------------------------------- machines


def _row_data(t: Translator, row: dict[str, str]) -> MachineCreate:
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
    session: Session, t: Translator, text: str
) -> tuple[list[MachineCreate], list[RowError]]:
    """Every row checked with the schema and the process catalogue; nothing written."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in MACHINE_COLUMNS if c not in header]
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


def machines_csv(rows: Iterable[MachinePublic]) -> str:
    """The machines in the import's format (so a file can be edited and imported again)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(MACHINE_COLUMNS)
    for m in rows:
        w.writerow([m.name, m.make_model, m.process_key, ";".join(m.materials), m.envelope_x_mm, m.envelope_y_mm,
                    m.envelope_z_mm, m.tolerance_mm, m.speed_factor, forms.yuan(m.hourly_rate_fen), m.min_booking_minutes,
                    "true" if m.leasable else "false"])  # fmt: skip
    return buf.getvalue()


# ----------------------------------------------------------------- offered windows


def parse_windows_csv(
    t: Translator, text: str
) -> tuple[list[WindowImportRow], list[int], list[RowError]]:
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
        machine_id = forms.form_id(row.get("machine_id"))
        if machine_id is None:
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
        if found or machine_id is None:
            errors += found
            continue
        rows.append(
            WindowImportRow(machine_id=machine_id, start_at=times["start"], end_at=times["end"])
        )
        lines.append(i)
    if not rows and not errors:
        errors.append(RowError(2, "-", t.gettext("The file has no window rows.")))
    return rows, lines, errors


def windows_csv(t: Translator, rows: Iterable[tuple[Machine, AvailabilityWindow]]) -> str:
    """Offered windows with their machine, in the display time zone."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(("machine_id", "machine_name", "start", "end", "source"))
    for m, win in rows:
        w.writerow(
            [
                m.id,
                m.name,
                local_time(t, win.start_at),
                local_time(t, win.end_at),
                "rule" if win.rule_id else "single",
            ]
        )
    return buf.getvalue()


# ----------------------------------------------------------------- the operator's tables


def dashboard_csv(d: Dashboard, table: str) -> str | None:
    """One table of the operator's dashboard, or None for a table there is not."""
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
        return None
    return buf.getvalue()
