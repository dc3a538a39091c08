from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from app.config import Settings
from models import BookingKind, BookingState, Operation, Order, Role
from tests.factories import auth, hours_from_now, make_booking, make_machine, make_user


def new_order(**change: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Aluminium housings",
        "release_at": hours_from_now(24).isoformat(),
        "due_at": hours_from_now(24 * 7).isoformat(),
        "budget_fen": 500_000,
        "operations": [
            {"process_key": "milling_3axis", "material_key": "aluminium", "quantity": 200,
             "part_x_mm": 120, "part_y_mm": 80, "part_z_mm": 30, "tolerance_mm": 0.02, "std_duration_min": 480},
            {"process_key": "anodizing", "material_key": "aluminium", "quantity": 200, "std_duration_min": 240},
            {"process_key": "inspection_cmm", "material_key": "aluminium", "quantity": 20, "std_duration_min": 90},
        ],
    }  # fmt: skip
    body.update(change)
    return body


def count(session: Session, model: type) -> int:
    return session.exec(select(func.count()).select_from(model)).one()


@pytest.fixture
def buyer(session: Session) -> Any:
    return make_user(session, roles=(Role.buyer,))


class TestCreate:
    def test_multi_step_order_keeps_its_sequence(
        self, client: TestClient, settings: Settings, buyer: Any
    ) -> None:
        r = client.post("/api/v1/orders", json=new_order(), headers=auth(settings, buyer))
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["status"] == "draft"
        assert [(o["seq"], o["process_key"]) for o in body["operations"]] == [
            (1, "milling_3axis"), (2, "anodizing"), (3, "inspection_cmm"),
        ]  # fmt: skip
        assert body["delivery_lat"] == 29.9  # defaults to the buyer's site

    @pytest.mark.parametrize(
        ("change", "status", "field"),
        [
            ({"due_at": hours_from_now(1).isoformat()}, 422, "due_at"),  # due before release
            (
                {
                    "due_at": hours_from_now(-5).isoformat(),
                    "release_at": hours_from_now(-10).isoformat(),
                },
                422,
                "due_at",
            ),
            ({"budget_fen": -1}, 422, "budget_fen"),
            ({"budget_fen": 10**15}, 422, "budget_fen"),
            ({"operations": []}, 422, "operations"),
            ({"due_kind": "soft"}, 422, "tardiness_fen_per_hour"),
            ({"title": ""}, 422, "title"),
        ],
    )
    def test_bad_order(
        self, client: TestClient, session: Session, settings: Settings, buyer: Any,
        change: dict[str, Any], status: int, field: str,
    ) -> None:  # fmt: skip
        before = count(session, Order)
        r = client.post("/api/v1/orders", json=new_order(**change), headers=auth(settings, buyer))
        assert (r.status_code, r.json()["field"]) == (status, field), r.text
        assert count(session, Order) == before

    @pytest.mark.parametrize(
        ("op_change", "field"),
        [
            ({"process_key": "alchemy"}, "operations[1].process_key"),
            ({"material_key": "unobtainium"}, "operations[1].material_key"),
            (
                {"material_key": "steel"},
                "operations[1].material_key",
            ),  # anodizing takes aluminium only
            ({"quantity": 0}, "operations[1].quantity"),
            ({"quantity": -5}, "operations[1].quantity"),
            ({"quantity": 10**12}, "operations[1].quantity"),
            ({"std_duration_min": 0}, "operations[1].std_duration_min"),
            ({"std_duration_min": 10**9}, "operations[1].std_duration_min"),
            ({"tolerance_mm": -0.1}, "operations[1].tolerance_mm"),
        ],
    )
    def test_bad_operation_names_it(
        self, client: TestClient, session: Session, settings: Settings, buyer: Any,
        op_change: dict[str, Any], field: str,
    ) -> None:  # fmt: skip
        body = new_order()
        body["operations"][1].update(op_change)
        before = (count(session, Order), count(session, Operation))
        r = client.post("/api/v1/orders", json=body, headers=auth(settings, buyer))
        assert (r.status_code, r.json()["field"]) == (422, field), r.text
        assert (count(session, Order), count(session, Operation)) == before

    def test_owner_only_org_cannot_order(
        self, client: TestClient, session: Session, settings: Settings
    ) -> None:
        owner = make_user(session, roles=(Role.owner,))
        assert (
            client.post(
                "/api/v1/orders", json=new_order(), headers=auth(settings, owner)
            ).status_code
            == 403
        )


class TestLifecycle:
    def test_update_open_cancel_and_timeline(
        self, client: TestClient, settings: Settings, buyer: Any
    ) -> None:
        h = auth(settings, buyer)
        order = client.post("/api/v1/orders", json=new_order(), headers=h).json()
        url = f"/api/v1/orders/{order['id']}"
        ops = [{"process_key": "turning", "material_key": "brass", "std_duration_min": 60}]
        r = client.patch(url, json={"title": "Brass pins", "operations": ops}, headers=h)
        assert r.status_code == 200
        assert (r.json()["title"], len(r.json()["operations"])) == ("Brass pins", 1)
        assert client.post(f"{url}/open", headers=h).json()["status"] == "open"
        late = client.patch(url, json={"title": "changed"}, headers=h)
        assert late.status_code == 409
        assert client.get(url, headers=h).json()["title"] == "Brass pins"
        assert client.post(f"{url}/open", headers=h).status_code == 409
        assert (
            client.post(f"{url}/cancel", json={"reason": "plans changed"}, headers=h).json()[
                "status"
            ]
            == "cancelled"
        )
        assert client.post(f"{url}/cancel", headers=h).status_code == 409
        states = [e["state"] for e in client.get(f"{url}/timeline", headers=h).json()]
        assert states == ["draft", "open", "cancelled"]

    def test_cancel_releases_held_machines(
        self, client: TestClient, session: Session, settings: Settings, buyer: Any
    ) -> None:
        h = auth(settings, buyer)
        order = client.post("/api/v1/orders", json=new_order(), headers=h).json()
        client.post(f"/api/v1/orders/{order['id']}/open", headers=h)
        machine = make_machine(session, owner=make_user(session, roles=(Role.owner,)))
        booking = make_booking(
            session, machine=machine, org_id=buyer.org_id, kind=BookingKind.service,
            state=BookingState.proposed, start=hours_from_now(30), end=hours_from_now(38),
            order_id=order["id"], operation_id=order["operations"][0]["id"], price_fen=72000,
        )  # fmt: skip
        client.post(f"/api/v1/orders/{order['id']}/cancel", headers=h)
        session.refresh(booking)
        assert booking.state == "cancelled"


class TestScoping:
    def test_foreign_order_is_404(
        self, client: TestClient, session: Session, settings: Settings, buyer: Any
    ) -> None:
        other = make_user(session, roles=(Role.buyer,))
        order = client.post(
            "/api/v1/orders", json=new_order(), headers=auth(settings, buyer)
        ).json()
        h = auth(settings, other)
        for method, path in [
            ("get", ""),
            ("patch", ""),
            ("post", "/open"),
            ("post", "/cancel"),
            ("get", "/timeline"),
        ]:
            kwargs: dict[str, Any] = {"json": {}} if method == "patch" else {}
            r = getattr(client, method)(f"/api/v1/orders/{order['id']}{path}", headers=h, **kwargs)
            assert r.status_code == 404, (method, path)
        assert client.get("/api/v1/orders", headers=h).json()["count"] == 0
        mine = client.get("/api/v1/orders", headers=auth(settings, buyer)).json()
        assert [o["id"] for o in mine["data"]] == [order["id"]]

    def test_owner_sees_an_order_only_once_assigned(
        self, client: TestClient, session: Session, settings: Settings, buyer: Any
    ) -> None:
        owner = make_user(session, roles=(Role.owner,))
        machine = make_machine(session, owner=owner)
        order = client.post(
            "/api/v1/orders", json=new_order(), headers=auth(settings, buyer)
        ).json()
        url = f"/api/v1/orders/{order['id']}"
        booking = make_booking(
            session, machine=machine, org_id=buyer.org_id, kind=BookingKind.service,
            state=BookingState.proposed, start=hours_from_now(30), end=hours_from_now(38),
            order_id=order["id"],
        )  # fmt: skip
        assert client.get(url, headers=auth(settings, owner)).status_code == 404  # only proposed
        booking.state = BookingState.confirmed
        session.add(booking)
        session.flush()
        assert client.get(url, headers=auth(settings, owner)).status_code == 200
        assert (
            client.patch(url, json={"title": "x"}, headers=auth(settings, owner)).status_code == 404
        )
