"""iCalendar feeds of a machine's bookings (RFC 5545), so an owner can subscribe
in any calendar app. The feed URL carries a signed token instead of a login."""

from __future__ import annotations

from itsdangerous import BadSignature, URLSafeSerializer
from sqlmodel import Session, col, select

from app.config import Settings
from app.errors import MachineNotFound
from models import ACTIVE_STATES, Booking, BookingState, Machine

SHOWN = (*ACTIVE_STATES, BookingState.done.value)
STAMP = "%Y%m%dT%H%M%SZ"


def _serializer(settings: Settings) -> URLSafeSerializer:
    return URLSafeSerializer(settings.secret_key.get_secret_value(), salt="machine-calendar")


def feed_token(*, settings: Settings, machine: Machine) -> str:
    """Bound to the machine's telemetry token: rotating that revokes old feed URLs."""
    return _serializer(settings).dumps(
        {"m": machine.id, "k": (machine.telemetry_token_hash or "")[:12]}
    )


def machine_from_token(*, session: Session, settings: Settings, token: str) -> Machine:
    try:
        data = _serializer(settings).loads(token)
    except BadSignature as exc:
        raise MachineNotFound("unknown calendar", field="token") from exc
    machine = session.get(Machine, int(data["m"]))
    if machine is None or (machine.telemetry_token_hash or "")[:12] != data.get("k"):
        raise MachineNotFound("unknown calendar", field="token")
    return machine


def _text(value: str) -> str:
    return value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _fold(line: str) -> list[str]:
    """Lines longer than 75 octets continue on the next line after a space."""
    out, raw = [], line.encode()
    while len(raw) > 75:
        cut = 75
        while cut > 0 and (raw[cut] & 0xC0) == 0x80:  # never split a UTF-8 character
            cut -= 1
        out.append(raw[:cut].decode())
        raw = b" " + raw[cut:]
    out.append(raw.decode())
    return out


def machine_feed(*, session: Session, machine: Machine) -> str:
    rows = session.exec(
        select(Booking)
        .where(Booking.machine_id == machine.id, col(Booking.state).in_(SHOWN))
        .order_by(col(Booking.start_at))
    ).all()
    lines = [
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//capshare//machine schedule//EN",
        "CALSCALE:GREGORIAN", "METHOD:PUBLISH", f"X-WR-CALNAME:{_text(machine.name)}",
    ]  # fmt: skip
    for b in rows:
        summary = f"{b.kind} · {b.state} · #{b.id}"
        lines += [
            "BEGIN:VEVENT", f"UID:booking-{b.id}@capshare", f"DTSTAMP:{b.updated_at.strftime(STAMP)}",
            f"DTSTART:{b.start_at.strftime(STAMP)}", f"DTEND:{b.end_at.strftime(STAMP)}",
            f"SUMMARY:{_text(summary)}",
            f"STATUS:{'TENTATIVE' if b.state == BookingState.proposed.value else 'CONFIRMED'}",
            "END:VEVENT",
        ]  # fmt: skip
    lines.append("END:VCALENDAR")
    return "\r\n".join(part for line in lines for part in _fold(line)) + "\r\n"
