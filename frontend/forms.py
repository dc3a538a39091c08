"""The pages' forms: fields read into the app's schemas, initial values, errors
mapped back onto the fields they belong to, and the page of a form that offers the
process catalogue.

Nothing here writes; a handler parses with these, calls one app service and renders
(``render_form``) or redirects."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from sqlmodel import Session
from starlette.datastructures import FormData

from app.catalog import service as catalog
from app.errors import InvalidInput, MarketplaceError, field_name
from frontend.i18n import Translator
from frontend.web import render
from models import Machine, User
from models.booking import LeaseCreate
from models.machine import MachineCreate, MachineUpdate, RuleCreate
from models.order import OrderCreate

RATE_FIELD = {"hourly_rate_fen": "hourly_rate_yuan"}  # the rate is typed in yuan
MACHINE_FIELDS = {**RATE_FIELD, "machine_id": "form"}
EDIT_FIELDS = (
    "name", "make_model", "materials", "hourly_rate_yuan", "min_booking_minutes", "envelope_x_mm",
    "envelope_y_mm", "envelope_z_mm", "tolerance_mm", "speed_factor", "status",
)  # fmt: skip
EDIT_REQUIRED = ("hourly_rate_yuan", "min_booking_minutes", "tolerance_mm", "speed_factor")
RULE_FIELDS = ("start_time", "end_time", "valid_from", "valid_until")
ORDER_OPERATIONS = 3  # rows of operations on the order form
TIME_LIMIT_S = (1.0, 5.0, 60.0)  # a match run's time limit: least, default, most


# ----------------------------------------------------------------- values


def parse_yuan(value: object, *, field: str, message: str) -> int:
    """An amount typed in yuan ("95.5", "1,200.00") as integer fen, exactly: decimal
    arithmetic, at most two decimals, finite and not negative; else a 422 naming
    ``field``."""
    text = str(value or "").strip().replace(",", "")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise InvalidInput(message, field=field) from None
    if (
        not amount.is_finite()
        or amount < 0
        or amount.as_tuple().exponent < -2  # type: ignore[operator]
        or amount > Decimal(10) ** 12
    ):
        raise InvalidInput(message, field=field)
    return int(amount * 100)


def rate_fen(t: Translator, value: object) -> int:
    """The hourly rate field (yuan) as fen."""
    return parse_yuan(
        value,
        field="hourly_rate_yuan",
        message=t.gettext("Enter the hourly rate in yuan, e.g. 95.50"),
    )


def yuan(fen: int) -> str:
    """Fen written back as the yuan a form or file holds ("95.50")."""
    return f"{fen // 100}.{fen % 100:02d}"


def materials(text: str, sep: str = ",") -> list[str]:
    """A list typed as text: "aluminium, steel" (a form) or "aluminium;steel" (a CSV cell)."""
    return [m.strip() for m in text.split(sep) if m.strip()]


def parse_local(value: str, tz: dt.tzinfo) -> dt.datetime:
    """A form or file time, as UTC: without an offset (a datetime-local value, or
    "2026-12-01 09:00") it is read in the display time zone; an ISO 8601 offset is kept."""
    parsed = dt.datetime.fromisoformat(value.strip())
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)).astimezone(dt.UTC)


def form_id(value: object) -> int | None:
    """A row's id as a form or a file holds it: digits for 1 to 2**31 - 1 (what the
    database keeps), else None."""
    text = str(value or "").strip()
    if not re.fullmatch(r"[0-9]{1,10}", text) or not 1 <= int(text) < 2**31:
        return None
    return int(text)


def weekdays(t: Translator, form: FormData) -> list[int]:
    """The ticked weekday boxes (0 = Monday); a value that is not a number raises
    InvalidInput naming the boxes (the range is the schema's to check)."""
    try:
        return [int(str(d)) for d in form.getlist("weekdays")]
    except ValueError:
        raise InvalidInput(t.gettext("Tick the weekdays in the list."), field="weekdays") from None


def weekdays_shown(form: FormData) -> list[int]:
    """The ticked weekday boxes to show again, dropping any that is not a number."""
    return [int(str(d)) for d in form.getlist("weekdays") if str(d).isdecimal()]


# ----------------------------------------------------------------- errors


def errors_of(exc: Exception, rename: dict[str, str] | None = None) -> dict[str, str]:
    """Field → message for a form, from a domain error or a schema's validation error
    (fields named as the API names them, e.g. ``operations[1].quantity``); ``rename``
    maps a model field onto the form's input (``hourly_rate_fen`` → ``hourly_rate_yuan``)."""
    if isinstance(exc, MarketplaceError):
        out = {exc.field or "form": exc.message}
    elif isinstance(exc, ValidationError):
        out = {}
        for e in exc.errors():
            out.setdefault(field_name(e["loc"]) or "form", e["msg"])
    else:
        raise exc
    for old, new in (rename or {}).items():
        if old in out:
            out[new] = out.pop(old)
    return out


def machine_errors(exc: MarketplaceError | ValidationError) -> dict[str, str]:
    """Field → message on the owner's machine forms and files; the rate in fen is shown
    beside the rate in yuan, an unknown machine at the top of the form."""
    return errors_of(exc, MACHINE_FIELDS)


def status_of(exc: Exception) -> int:
    """The status to re-render a form with: the domain error's, else 422 (a schema's)."""
    return exc.status_code if isinstance(exc, MarketplaceError) else 422


def render_form(
    request: Request, session: Session, t: Translator, name: str, values: Mapping[str, Any],
    errors: dict[str, str], *, user: User, status_code: int = 200,
) -> HTMLResponse:  # fmt: skip
    """A form that offers the process catalogue (listing a machine, posting an order):
    empty, or as typed with each error beside its field."""
    processes = catalog.list_processes(session=session)
    return render(request, t, name, {"values": values, "errors": errors, "processes": processes},
                  user=user, status_code=status_code)  # fmt: skip


# ----------------------------------------------------------------- machines


def new_machine_values() -> dict[str, Any]:
    return {
        "hourly_rate_yuan": "",
        "min_booking_minutes": 60,
        "speed_factor": 1.0,
        "tolerance_mm": 0.02,
        "materials": "",
    }


def machine_create(t: Translator, values: Mapping[str, Any]) -> MachineCreate:
    """The listing form (materials comma-separated, the rate in yuan, a ticked box)."""
    fen = rate_fen(t, values.get("hourly_rate_yuan"))
    return MachineCreate.model_validate({
        "name": values.get("name", ""), "make_model": values.get("make_model", ""),
        "process_key": values.get("process_key", ""),
        "materials": materials(str(values.get("materials", "")), ","),
        "envelope_x_mm": values.get("envelope_x_mm") or 0, "envelope_y_mm": values.get("envelope_y_mm") or 0,
        "envelope_z_mm": values.get("envelope_z_mm") or 0, "tolerance_mm": values.get("tolerance_mm") or 0.1,
        "speed_factor": values.get("speed_factor") or 1, "hourly_rate_fen": fen,
        "min_booking_minutes": values.get("min_booking_minutes") or 60, "leasable": values.get("leasable") == "on",
    })  # fmt: skip


def machine_values(m: Machine) -> dict[str, Any]:
    """A machine as the edit form shows it."""
    return {
        "name": m.name, "make_model": m.make_model, "materials": ", ".join(m.materials),
        "hourly_rate_yuan": yuan(m.hourly_rate_fen), "min_booking_minutes": m.min_booking_minutes,
        "envelope_x_mm": m.envelope_x_mm, "envelope_y_mm": m.envelope_y_mm, "envelope_z_mm": m.envelope_z_mm,
        "tolerance_mm": m.tolerance_mm, "speed_factor": m.speed_factor, "leasable": m.leasable, "status": m.status,
    }  # fmt: skip


def edit_values(form: FormData) -> dict[str, Any]:
    """The edit form as typed (every field text, the box a bool)."""
    values: dict[str, Any] = {k: str(form.get(k) or "") for k in EDIT_FIELDS}
    values["leasable"] = form.get("leasable") == "on"
    return values


def missing_required(t: Translator, values: Mapping[str, Any]) -> dict[str, str]:
    """The edit form's required fields left empty (an update would keep the old value)."""
    return {k: t.gettext("This field is required.") for k in EDIT_REQUIRED if not values[k].strip()}


def machine_update(t: Translator, values: Mapping[str, Any]) -> MachineUpdate:
    """The edit form; an empty required field raises for the first of them."""
    empty = missing_required(t, values)
    if empty:
        raise InvalidInput(empty[next(iter(empty))], field=next(iter(empty)))
    return MachineUpdate.model_validate({
        "name": values["name"], "make_model": values["make_model"],
        "materials": materials(values["materials"], ","), "hourly_rate_fen": rate_fen(t, values["hourly_rate_yuan"]),
        "min_booking_minutes": values["min_booking_minutes"], "tolerance_mm": values["tolerance_mm"],
        "envelope_x_mm": values["envelope_x_mm"] or 0, "envelope_y_mm": values["envelope_y_mm"] or 0,
        "envelope_z_mm": values["envelope_z_mm"] or 0, "speed_factor": values["speed_factor"],
        "leasable": values["leasable"], "status": values["status"],
    })  # fmt: skip


# ----------------------------------------------------------------- offered time


def rule_defaults(today: dt.date) -> dict[str, Any]:
    """A recurring rule to start from: weeknights for four weeks."""
    return {"start_time": "20:00", "end_time": "08:00", "valid_from": today.isoformat(),
            "valid_until": (today + dt.timedelta(days=27)).isoformat(), "weekdays": [0, 1, 2, 3, 4]}  # fmt: skip


def rule_create(t: Translator, form: FormData) -> RuleCreate:
    return RuleCreate.model_validate({
        "weekdays": weekdays(t, form), "start_time": form.get("start_time"),
        "end_time": form.get("end_time"), "valid_from": form.get("valid_from"), "valid_until": form.get("valid_until"),
    })  # fmt: skip


def rule_values(form: FormData) -> dict[str, Any]:
    """The rule form as typed, to show again beside its errors."""
    values: dict[str, Any] = {k: form.get(k) for k in RULE_FIELDS}
    values["weekdays"] = weekdays_shown(form)
    return values


def window_defaults(t: Translator, first: dt.datetime) -> dict[str, str]:
    """A single window to start from: tomorrow 09:00-17:00 (``first`` is today's midnight)."""
    nine = (first + dt.timedelta(days=1)).replace(hour=9)
    return {"start_at": t.local_input(nine), "end_at": t.local_input(nine.replace(hour=17))}


def window_values(form: FormData) -> dict[str, str]:
    return {"start_at": str(form.get("start_at") or ""), "end_at": str(form.get("end_at") or "")}


def window_times(
    t: Translator, values: Mapping[str, str]
) -> tuple[dict[str, dt.datetime], dict[str, str]]:
    """The window's start and end as UTC, and an error for each that is not a time."""
    errors: dict[str, str] = {}
    parsed: dict[str, dt.datetime] = {}
    for name, value in values.items():
        try:
            parsed[name] = parse_local(value, t.tz)
        except ValueError:
            errors[name] = t.gettext("Enter a date and time.")
    return parsed, errors


# ----------------------------------------------------------------- orders and leases


def new_order_values(t: Translator, now: dt.datetime) -> dict[str, Any]:
    return {
        "release_at": t.local_input(now + dt.timedelta(days=1)),
        "due_at": t.local_input(now + dt.timedelta(days=7)),
    }


def order_values(form: FormData) -> dict[str, Any]:
    """The order form as typed (without the file), to show again beside its errors."""
    return {k: form.get(k) for k in form.keys() if k not in ("csrf_token", "attachment")}


def order_create(t: Translator, form: FormData) -> OrderCreate:
    """The order form: up to three operations (a row without a process is skipped), the
    times in the display time zone, the budget in yuan. A time that is not one raises
    ValueError, a bad budget InvalidInput, the schema ValidationError."""
    ops = []
    for i in range(ORDER_OPERATIONS):
        process = str(form.get(f"op{i}_process") or "")
        if not process:
            continue
        ops.append({"process_key": process, "material_key": form.get(f"op{i}_material") or "",
                    "quantity": form.get(f"op{i}_quantity") or 1, "std_duration_min": form.get(f"op{i}_minutes") or 0})  # fmt: skip
    budget = str(form.get("budget_yuan") or "").strip()
    return OrderCreate.model_validate({
        "title": form.get("title") or "", "release_at": parse_local(str(form.get("release_at")), t.tz),
        "due_at": parse_local(str(form.get("due_at")), t.tz), "operations": ops,
        "budget_fen": parse_yuan(budget, field="budget_yuan", message=t.gettext("Enter the budget in yuan, e.g. 5000"))
        if budget else None,
    })  # fmt: skip


def order_errors(t: Translator, exc: Exception) -> tuple[dict[str, str], int]:
    """Errors of the order form and the status to show them with: a schema's beside
    their fields, a time that is not one at the top; a domain error's with its status
    (a refused file beside the file input, a 400 as 422)."""
    if isinstance(exc, ValidationError):
        return errors_of(exc), 422
    if not isinstance(exc, MarketplaceError):
        return {"form": t.gettext("Check the dates and amounts.")}, 422
    errors = errors_of(exc)
    if "file" in errors:
        errors["attachment"] = errors.pop("file")
    return errors, exc.status_code if exc.status_code != 400 else 422


def lease_values(form: FormData) -> dict[str, Any]:
    return {"start_at": form.get("start_at"), "end_at": form.get("end_at")}


def lease_create(t: Translator, machine_id: int, values: Mapping[str, Any]) -> LeaseCreate:
    """The lease form (times in the display time zone); a time that is not one raises
    ValueError."""
    return LeaseCreate(
        machine_id=machine_id,
        start_at=parse_local(str(values["start_at"]), t.tz),
        end_at=parse_local(str(values["end_at"]), t.tz),
    )


def lease_errors(t: Translator, exc: Exception) -> dict[str, str]:
    if isinstance(exc, MarketplaceError | ValidationError):
        return errors_of(exc)
    return {"start_at": t.gettext("Check the dates and amounts.")}


# ----------------------------------------------------------------- match runs


def match_run_input(t: Translator, cluster_id: str, time_limit_s: str) -> tuple[int | None, float]:
    """The match-run form: the cluster (empty: the whole market) and the time limit in
    seconds, held to 1-60 (empty: 5). A value that is not one raises InvalidInput
    naming its field."""
    cluster = form_id(cluster_id) if cluster_id.strip() else None
    if cluster_id.strip() and cluster is None:
        raise InvalidInput(t.gettext("Choose a cluster in the list."), field="cluster_id")
    least, default, most = TIME_LIMIT_S
    try:
        limit = float(time_limit_s) if time_limit_s.strip() else default
    except ValueError:
        limit = math.nan
    if not math.isfinite(limit):
        message = t.gettext("Enter the time limit in seconds, from 1 to 60.")
        raise InvalidInput(message, field="time_limit_s")
    return cluster, min(max(limit, least), most)
