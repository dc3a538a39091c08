"""Typed, keyword-only builders of test data."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session

from app.config import Settings
from app.security import create_access_token, hash_password
from models import AvailabilityWindow, Cluster, Machine, Organization, Role, User, utcnow
from models.booking import Booking, BookingKind, BookingState

_seq = itertools.count(1)
_PASSWORD_HASH: str | None = None
PASSWORD = "correct horse battery"


def _password_hash() -> str:
    global _PASSWORD_HASH
    if _PASSWORD_HASH is None:
        _PASSWORD_HASH = hash_password(PASSWORD)
    return _PASSWORD_HASH


def make_org(
    session: Session,
    *,
    owner: bool = False,
    buyer: bool = False,
    operator: bool = False,
    lat: float = 29.9,
    lon: float = 121.84,
) -> Organization:
    org = Organization(
        name=f"Org {next(_seq)}", is_owner=owner, is_buyer=buyer, is_operator=operator,
        lat=lat, lon=lon, city="Ningbo",
    )  # fmt: skip
    session.add(org)
    session.flush()
    return org


def make_user(
    session: Session, *, org: Organization | None = None, roles: tuple[Role, ...] = (Role.buyer,)
) -> User:
    if org is None:
        org = make_org(
            session,
            owner=Role.owner in roles,
            buyer=Role.buyer in roles,
            operator=Role.operator in roles,
        )
    assert org.id is not None
    user = User(
        org_id=org.id, email=f"user{next(_seq)}@example.com", full_name="Test User",
        password_hash=_password_hash(), roles=sorted(r.value for r in roles),
    )  # fmt: skip
    session.add(user)
    session.flush()
    return user


def make_cluster(
    session: Session,
    *,
    operator_org: Organization | None = None,
    lat: float = 29.9,
    lon: float = 121.84,
) -> Cluster:
    n = next(_seq)
    cluster = Cluster(
        key=f"cluster-{n}", name_en=f"Cluster {n}", name_zh=f"集群{n}", city="Ningbo",
        lat=lat, lon=lon, families=["cnc"], operator_org_id=operator_org.id if operator_org else None,
    )  # fmt: skip
    session.add(cluster)
    session.flush()
    return cluster


def make_machine(session: Session, *, owner: User, **overrides: Any) -> Machine:
    values: dict[str, Any] = dict(
        owner_org_id=owner.org_id, name=f"Haas VF-2 #{next(_seq)}", make_model="Haas VF-2",
        process_key="milling_3axis", materials=["aluminium", "steel"], envelope_x_mm=762,
        envelope_y_mm=406, envelope_z_mm=508, tolerance_mm=0.02, speed_factor=1.0,
        hourly_rate_fen=9000, min_booking_minutes=60, leasable=True, lat=29.9, lon=121.84,
    )  # fmt: skip
    values.update(overrides)
    machine = Machine(**values)
    session.add(machine)
    session.flush()
    return machine


def make_window(
    session: Session, *, machine: Machine, start: dt.datetime, end: dt.datetime
) -> AvailabilityWindow:
    assert machine.id is not None
    window = AvailabilityWindow(machine_id=machine.id, start_at=start, end_at=end)
    session.add(window)
    session.flush()
    return window


def make_booking(
    session: Session,
    *,
    machine: Machine,
    org_id: int,
    start: dt.datetime,
    end: dt.datetime,
    state: BookingState = BookingState.confirmed,
    kind: BookingKind = BookingKind.lease,
    price_fen: int = 1,
    order_id: int | None = None,
    operation_id: int | None = None,
) -> Booking:
    """A booking written straight to the table, past the booking rules."""
    assert machine.id is not None
    booking = Booking(
        machine_id=machine.id, kind=kind.value, state=state, start_at=start, end_at=end,
        org_id=org_id, order_id=order_id, operation_id=operation_id, price_fen=price_fen,
    )  # fmt: skip
    session.add(booking)
    session.flush()
    return booking


def hours_from_now(hours: float) -> dt.datetime:
    """A time on a whole minute, ``hours`` from now."""
    return (utcnow() + dt.timedelta(hours=hours)).replace(second=0, microsecond=0)


def auth(settings: Settings, user: User) -> dict[str, str]:
    assert user.id is not None
    token, _ = create_access_token(settings=settings, user_id=user.id)
    return {"Authorization": f"Bearer {token}"}


def login(client: TestClient, email: str, password: str = PASSWORD) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", data={"username": email, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}
