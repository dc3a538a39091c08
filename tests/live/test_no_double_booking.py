"""No double-booking, over real HTTP, on the suite's database (SQLite or PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, func, select

from app.db import make_engine
from models import Booking, BookingState, Role
from tests.factories import PASSWORD, hours_from_now, make_machine, make_user, make_window
from tests.live.conftest import LiveServer

CONCURRENT = 60


@pytest.mark.slow
def test_concurrent_conflicting_leases_one_wins(live_server: LiveServer) -> None:
    engine = make_engine(live_server.database_url)
    with Session(engine) as session:
        owner = make_user(session, roles=(Role.owner,))
        machine = make_machine(session, owner=owner, min_booking_minutes=60)
        make_window(session, machine=machine, start=hours_from_now(24), end=hours_from_now(48))
        buyers = [make_user(session, roles=(Role.buyer,)) for _ in range(6)]
        session.commit()
        machine_id, emails = machine.id, [b.email for b in buyers]

    tokens = []
    with httpx.Client(base_url=live_server.base_url, timeout=30) as http:
        for email in emails:
            r = http.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD})
            assert r.status_code == 200, r.text
            tokens.append(r.json()["access_token"])

    start = hours_from_now(30)
    # Every request wants the same machine at overlapping times; some ask the
    # exact same slot, others shift it by up to three hours.
    bodies = [
        {"machine_id": machine_id, "start_at": (start + dt.timedelta(minutes=15 * (i % 12))).isoformat(),
         "end_at": (start + dt.timedelta(hours=4, minutes=15 * (i % 12))).isoformat()}
        for i in range(CONCURRENT)
    ]  # fmt: skip
    barrier = threading.Barrier(CONCURRENT)

    def fire(i: int) -> int:
        with httpx.Client(base_url=live_server.base_url, timeout=120) as http:
            barrier.wait()
            r = http.post(
                "/api/v1/leases",
                json=bodies[i],
                headers={"Authorization": f"Bearer {tokens[i % len(tokens)]}"},
            )
            return r.status_code

    with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
        statuses = list(pool.map(fire, range(CONCURRENT)))

    assert statuses.count(201) == 1, statuses
    assert statuses.count(409) == CONCURRENT - 1, statuses
    with Session(engine) as session:
        held = session.exec(
            select(func.count()).select_from(Booking).where(Booking.machine_id == machine_id)
        ).one()
    engine.dispose()
    assert held == 1
    print(
        f"\n{CONCURRENT} concurrent leases on {engine.dialect.name}: 1 × 201, {statuses.count(409)} × 409, 1 booking"
    )


def test_database_refuses_overlap_even_without_the_service(live_database_url: str) -> None:
    """On PostgreSQL the exclusion constraint holds even for a writer that skips
    the service's check; cancelled bookings do not hold the machine."""
    engine = make_engine(live_database_url)
    if engine.dialect.name != "postgresql":
        engine.dispose()
        pytest.skip("the exclusion constraint is PostgreSQL's; SQLite serializes writers instead")
    from app.migrations import upgrade

    upgrade(url=live_database_url)
    with Session(engine) as session:
        owner, buyer = (
            make_user(session, roles=(Role.owner,)),
            make_user(session, roles=(Role.buyer,)),
        )
        machine = make_machine(session, owner=owner)
        session.commit()
        mid, oid = machine.id, buyer.org_id
        assert mid is not None

        def booking(state: BookingState, start_h: float, end_h: float) -> Booking:
            return Booking(machine_id=mid, kind="lease", state=state, start_at=hours_from_now(start_h),
                           end_at=hours_from_now(end_h), org_id=oid, price_fen=1)  # fmt: skip

        session.add(booking(BookingState.confirmed, 10, 14))
        session.commit()
        session.add(booking(BookingState.cancelled, 11, 13))  # inactive: allowed
        session.commit()
        session.add(booking(BookingState.proposed, 13, 15))
        with pytest.raises(IntegrityError, match="ex_booking_no_overlap"):
            session.commit()
        session.rollback()
        session.add(booking(BookingState.proposed, 14, 15))  # back to back: allowed
        session.commit()
    engine.dispose()
