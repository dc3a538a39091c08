"""Machine telemetry: a connected machine reports its state with its own token, and
its owner can rotate that token.

The states are kept as spans (see ``models.telemetry``): a report that repeats the
current state within the hold time extends its span; a new state closes the span at
the report and opens another; a report after a longer silence opens a new span and
leaves the silence unknown. Reports at or before the machine's last report are ignored
(a device may resend a buffer), so sending the same reports twice changes nothing; of
several reports in one batch for the same moment, the last counts."""

from __future__ import annotations

import datetime as dt
import hashlib

from sqlmodel import Session, col, select

from app.db import begin_write
from app.errors import InvalidInput, NotAuthenticated, PermissionDenied
from app.machines import availability
from app.machines.service import get_own_machine_or_raise, lock_machine
from app.security import new_machine_token
from models import Machine, MachineStatus, User, utcnow
from models.base import as_utc
from models.telemetry import MachineState, MachineStateSpan, StateReport

FUTURE_GRACE = dt.timedelta(minutes=5)  # device clocks drift


def get_machine_by_token(*, session: Session, token: str) -> Machine:
    """The machine a telemetry token belongs to (401 if none)."""
    if not token:
        raise NotAuthenticated("send the machine's telemetry token in X-Machine-Token")
    digest = hashlib.sha256(token.encode()).hexdigest()
    machine = session.exec(select(Machine).where(Machine.telemetry_token_hash == digest)).first()
    if machine is None:
        raise NotAuthenticated("unknown or revoked telemetry token")
    return machine


def report_states(
    *,
    session: Session,
    token: str,
    reports: list[StateReport],
    hold_minutes: int,
    max_age_days: int,
    field: str = "reports",
) -> tuple[Machine, int, int]:
    """Apply a machine's state reports, in time order, in one transaction: all or none.
    Errors name ``<field>[i].at``, or ``at`` when ``field`` is empty (a single report).
    Returns (machine, reports applied, reports ignored)."""
    begin_write(session)
    machine = get_machine_by_token(session=session, token=token)
    if machine.status == MachineStatus.retired.value:
        raise PermissionDenied("this machine is retired")
    assert machine.id is not None
    now = utcnow()
    latest: dict[dt.datetime, MachineState] = {}  # one state per moment: the batch's last word
    for i, report in enumerate(reports):
        where = f"{field}[{i}].at" if field else "at"
        try:
            at = now if report.at is None else as_utc(report.at)
        except OverflowError:
            raise InvalidInput("the time is out of range", field=where) from None
        if at > now + FUTURE_GRACE:
            raise InvalidInput("the report is in the future (check the device clock)", field=where)
        if at < now - dt.timedelta(days=max_age_days):
            raise InvalidInput(f"the report is older than {max_age_days} days", field=where)
        latest[at] = report.state
    lock_machine(session, machine.id)
    session.refresh(machine)  # the last report as of the lock
    hold = dt.timedelta(minutes=hold_minutes)
    span = session.exec(
        select(MachineStateSpan)
        .where(MachineStateSpan.machine_id == machine.id)
        .order_by(col(MachineStateSpan.end_at).desc(), col(MachineStateSpan.id).desc())
        .limit(1)
    ).first()
    ignored = len(reports) - len(latest)
    applied = 0
    touched: dict[int, MachineStateSpan] = {}  # by identity: each recounted once
    for at, state in sorted(latest.items()):
        last = machine.last_reported_at
        if last is not None and at <= last:  # a resend, or older than what is known
            ignored += 1
            continue
        if span is not None and at - span.end_at <= hold:
            span.end_at = at  # the state held until this report
            if span.state == state.value:
                span.reports += 1
            else:
                touched[id(span)] = span
                span = MachineStateSpan(
                    machine_id=machine.id, state=state.value, start_at=at, end_at=at
                )
        else:
            span = MachineStateSpan(
                machine_id=machine.id, state=state.value, start_at=at, end_at=at
            )
        session.add(span)
        touched[id(span)] = span
        machine.last_reported_at, machine.reported_state = at, state.value
        applied += 1
    availability.count_offered(session, machine.id, list(touched.values()))
    session.add(machine)
    session.commit()
    session.refresh(machine)
    return machine, applied, ignored


def rotate_telemetry_token(*, session: Session, user: User, machine_id: int) -> str:
    """A new telemetry token for the machine, shown once; the old one (and the iCalendar
    feed URLs bound to it) stop working at once."""
    begin_write(session)
    machine = get_own_machine_or_raise(session=session, user=user, machine_id=machine_id)
    token, digest = new_machine_token()
    machine.telemetry_token_hash = digest
    machine.updated_at = utcnow()
    session.add(machine)
    session.commit()
    return token
