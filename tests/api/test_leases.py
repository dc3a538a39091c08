from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from app.config import Settings
from models import Booking, BookingKind, BookingState, Role
from tests.factories import auth, hours_from_now, make_booking, make_machine, make_user, make_window


def count_bookings(session: Session) -> int:
    return session.exec(select(func.count()).select_from(Booking)).one()


@pytest.fixture
def setup(session: Session) -> dict[str, Any]:
    owner = make_user(session, roles=(Role.owner,))
    machine = make_machine(session, owner=owner, hourly_rate_fen=8850, min_booking_minutes=120)
    make_window(session, machine=machine, start=hours_from_now(10), end=hours_from_now(22))
    make_window(
        session, machine=machine, start=hours_from_now(22), end=hours_from_now(30)
    )  # touching
    return {"owner": owner, "machine": machine, "buyer": make_user(session, roles=(Role.buyer,))}


def lease(machine_id: int, start_h: float, end_h: float) -> dict[str, Any]:
    return {
        "machine_id": machine_id,
        "start_at": hours_from_now(start_h).isoformat(),
        "end_at": hours_from_now(end_h).isoformat(),
    }


class TestLease:
    def test_lease_is_confirmed_and_priced_in_fen(
        self, client: TestClient, settings: Settings, setup: dict[str, Any]
    ) -> None:
        r = client.post(
            "/api/v1/leases",
            json=lease(setup["machine"].id, 11, 13.5),
            headers=auth(settings, setup["buyer"]),
        )
        assert r.status_code == 201, r.text
        body = r.json()
        assert (body["kind"], body["state"], body["currency"]) == ("lease", "confirmed", "CNY")
        assert body["price_fen"] == 22125  # 150 min × ¥88.50/h = ¥221.25
        assert isinstance(body["price_fen"], int)

    def test_lease_may_span_touching_windows(
        self, client: TestClient, settings: Settings, setup: dict[str, Any]
    ) -> None:
        r = client.post(
            "/api/v1/leases",
            json=lease(setup["machine"].id, 20, 24),
            headers=auth(settings, setup["buyer"]),
        )
        assert r.status_code == 201, r.text

    @pytest.mark.parametrize(
        ("start_h", "end_h", "status", "field"),
        [
            (11, 12, 422, "end_at"),  # shorter than the 120-minute minimum
            (8, 12, 422, "start_at"),  # starts before the offered time
            (28, 32, 422, "start_at"),  # runs past it
            (14, 12, 422, "end_at"),  # reversed
            (-3, 1, 422, "start_at"),  # in the past
        ],
    )
    def test_bad_leases(
        self, client: TestClient, session: Session, settings: Settings, setup: dict[str, Any],
        start_h: float, end_h: float, status: int, field: str,
    ) -> None:  # fmt: skip
        before = count_bookings(session)
        r = client.post(
            "/api/v1/leases",
            json=lease(setup["machine"].id, start_h, end_h),
            headers=auth(settings, setup["buyer"]),
        )
        assert (r.status_code, r.json()["field"]) == (status, field), r.text
        assert count_bookings(session) == before

    def test_collision_is_409(
        self, client: TestClient, session: Session, settings: Settings, setup: dict[str, Any]
    ) -> None:
        h = auth(settings, setup["buyer"])
        assert (
            client.post(
                "/api/v1/leases", json=lease(setup["machine"].id, 11, 14), headers=h
            ).status_code
            == 201
        )
        r = client.post("/api/v1/leases", json=lease(setup["machine"].id, 13, 16), headers=h)
        assert r.status_code == 409
        assert count_bookings(session) == 1
        # back to back is fine: intervals are half-open
        assert (
            client.post(
                "/api/v1/leases", json=lease(setup["machine"].id, 14, 16), headers=h
            ).status_code
            == 201
        )

    def test_service_only_machine_is_not_leasable(
        self, client: TestClient, session: Session, settings: Settings, setup: dict[str, Any]
    ) -> None:
        machine = make_machine(session, owner=setup["owner"], leasable=False)
        make_window(session, machine=machine, start=hours_from_now(10), end=hours_from_now(22))
        assert machine.id is not None
        r = client.post(
            "/api/v1/leases", json=lease(machine.id, 11, 14), headers=auth(settings, setup["buyer"])
        )
        assert (r.status_code, r.json()["field"]) == (422, "machine_id")

    def test_unknown_machine_is_404(
        self, client: TestClient, settings: Settings, setup: dict[str, Any]
    ) -> None:
        r = client.post(
            "/api/v1/leases", json=lease(987654, 11, 14), headers=auth(settings, setup["buyer"])
        )
        assert r.status_code == 404


class TestStateMachine:
    def test_owner_runs_the_lease_and_forbidden_moves_are_409(
        self,
        client: TestClient,
        settings: Settings,
        setup: dict[str, Any],
        clock: Callable[[dt.datetime], None],
    ) -> None:
        buyer_h, owner_h = auth(settings, setup["buyer"]), auth(settings, setup["owner"])
        booking = client.post(
            "/api/v1/leases", json=lease(setup["machine"].id, 11, 14), headers=buyer_h
        ).json()
        url = f"/api/v1/bookings/{booking['id']}"
        clock(hours_from_now(11))
        assert client.post(f"{url}/accept", headers=owner_h).status_code == 409  # already confirmed
        assert (
            client.post(f"{url}/start", headers=buyer_h).status_code == 403
        )  # the owner starts it
        assert client.post(f"{url}/start", headers=owner_h).json()["state"] == "in_progress"
        assert client.post(f"{url}/cancel", headers=buyer_h).status_code == 409  # too late
        assert client.post(f"{url}/complete", headers=owner_h).json()["state"] == "done"
        assert client.post(f"{url}/fly", headers=owner_h).status_code == 422

    def test_cancel_frees_the_slot(
        self, client: TestClient, settings: Settings, setup: dict[str, Any]
    ) -> None:
        h = auth(settings, setup["buyer"])
        booking = client.post(
            "/api/v1/leases", json=lease(setup["machine"].id, 11, 14), headers=h
        ).json()
        assert (
            client.post(f"/api/v1/bookings/{booking['id']}/cancel", headers=h).json()["state"]
            == "cancelled"
        )
        assert (
            client.post(
                "/api/v1/leases", json=lease(setup["machine"].id, 11, 14), headers=h
            ).status_code
            == 201
        )

    def test_decline_needs_a_reason(
        self, client: TestClient, session: Session, settings: Settings, setup: dict[str, Any]
    ) -> None:
        booking = make_booking(
            session, machine=setup["machine"], org_id=setup["buyer"].org_id,
            kind=BookingKind.service, state=BookingState.proposed, start=hours_from_now(11),
            end=hours_from_now(14), price_fen=100,
        )  # fmt: skip
        url, h = f"/api/v1/bookings/{booking.id}/decline", auth(settings, setup["owner"])
        r = client.post(url, json={"reason": " "}, headers=h)
        assert (r.status_code, r.json()["field"]) == (422, "reason")
        r = client.post(url, json={"reason": "spindle maintenance"}, headers=h)
        assert (r.json()["state"], r.json()["reason"]) == ("declined", "spindle maintenance")

    def test_bookings_are_scoped(
        self, client: TestClient, session: Session, settings: Settings, setup: dict[str, Any]
    ) -> None:
        booking = client.post(
            "/api/v1/leases",
            json=lease(setup["machine"].id, 11, 14),
            headers=auth(settings, setup["buyer"]),
        ).json()
        stranger = make_user(session, roles=(Role.buyer,))
        assert (
            client.get(
                f"/api/v1/bookings/{booking['id']}", headers=auth(settings, stranger)
            ).status_code
            == 404
        )
        assert (
            client.post(
                f"/api/v1/bookings/{booking['id']}/cancel", headers=auth(settings, stranger)
            ).status_code
            == 404
        )
        assert client.get("/api/v1/bookings", headers=auth(settings, stranger)).json()["count"] == 0
        owner_view = client.get("/api/v1/bookings", headers=auth(settings, setup["owner"])).json()
        assert [b["id"] for b in owner_view["data"]] == [booking["id"]]
