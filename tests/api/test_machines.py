from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from app.config import Settings
from models import Machine, Role
from tests.factories import (
    auth,
    hours_from_now,
    make_booking,
    make_cluster,
    make_machine,
    make_user,
    make_window,
)

NEW_MACHINE: dict[str, Any] = {
    "name": "DMG Mori DMU 50 #1",
    "make_model": "DMG Mori DMU 50",
    "process_key": "milling_5axis",
    "materials": ["aluminium", "titanium"],
    "envelope_x_mm": 650,
    "envelope_y_mm": 520,
    "envelope_z_mm": 475,
    "tolerance_mm": 0.005,
    "speed_factor": 1.1,
    "hourly_rate_fen": 35000,
    "min_booking_minutes": 120,
    "leasable": False,
    "certifications": ["AS9100"],
}


def count_machines(session: Session) -> int:
    return session.exec(select(func.count()).select_from(Machine)).one()


class TestCreate:
    def test_owner_lists_a_machine_at_its_org_location(
        self, client: TestClient, session: Session, settings: Settings
    ) -> None:
        cluster = make_cluster(session, lat=29.9, lon=121.84)
        owner = make_user(session, roles=(Role.owner,))
        r = client.post("/api/v1/machines", json=NEW_MACHINE, headers=auth(settings, owner))
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["telemetry_token"].startswith("mt_")
        assert body["owner_org_id"] == owner.org_id
        assert body["cluster_id"] == cluster.id  # nearest cluster within reach
        assert (body["lat"], body["lon"]) == (29.9, 121.84)
        again = client.get(f"/api/v1/machines/{body['id']}", headers=auth(settings, owner)).json()
        assert "telemetry_token" not in again

    def test_buyer_cannot_list_machines(
        self, client: TestClient, session: Session, settings: Settings
    ) -> None:
        buyer = make_user(session, roles=(Role.buyer,))
        before = count_machines(session)
        r = client.post("/api/v1/machines", json=NEW_MACHINE, headers=auth(settings, buyer))
        assert r.status_code == 403
        assert count_machines(session) == before

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"process_key": "teleportation"}, "process_key"),
            ({"materials": ["cheese"]}, "materials"),
            ({"materials": []}, "materials"),
            ({"hourly_rate_fen": -100}, "hourly_rate_fen"),
            ({"hourly_rate_fen": 10**12}, "hourly_rate_fen"),
            ({"hourly_rate_fen": 99.5}, "hourly_rate_fen"),
            ({"tolerance_mm": 0}, "tolerance_mm"),
            ({"envelope_x_mm": -1}, "envelope_x_mm"),
            ({"min_booking_minutes": 0}, "min_booking_minutes"),
            ({"speed_factor": 1000}, "speed_factor"),
            ({"lat": 123}, "lat"),
        ],
    )
    def test_bad_input_names_the_field_and_writes_nothing(
        self,
        client: TestClient,
        session: Session,
        settings: Settings,
        change: dict[str, Any],
        field: str,
    ) -> None:
        owner = make_user(session, roles=(Role.owner,))
        before = count_machines(session)
        r = client.post(
            "/api/v1/machines", json={**NEW_MACHINE, **change}, headers=auth(settings, owner)
        )
        assert r.status_code == 422, r.text
        assert r.json()["field"] == field
        assert count_machines(session) == before


class TestVisibility:
    def test_scoping(self, client: TestClient, session: Session, settings: Settings) -> None:
        owner_a = make_user(session, roles=(Role.owner,))
        owner_b = make_user(session, roles=(Role.owner,))
        buyer = make_user(session, roles=(Role.buyer,))
        machine = make_machine(session, owner=owner_a)
        url = f"/api/v1/machines/{machine.id}"
        assert client.get(url, headers=auth(settings, owner_a)).status_code == 200
        assert (
            client.get(url, headers=auth(settings, buyer)).status_code == 200
        )  # listed on the market
        assert client.get(url, headers=auth(settings, owner_b)).status_code == 404  # a competitor
        r = client.patch(url, json={"hourly_rate_fen": 1}, headers=auth(settings, buyer))
        assert r.status_code == 404

    def test_operator_reads_its_own_clusters_only(
        self, client: TestClient, session: Session, settings: Settings
    ) -> None:
        operator = make_user(session, roles=(Role.operator,))
        from models import Organization

        op_org = session.get(Organization, operator.org_id)
        mine, other = make_cluster(session, operator_org=op_org), make_cluster(session)
        owner = make_user(session, roles=(Role.owner,))
        inside = make_machine(session, owner=owner, cluster_id=mine.id)
        outside = make_machine(session, owner=owner, cluster_id=other.id)
        headers = auth(settings, operator)
        assert client.get(f"/api/v1/machines/{inside.id}", headers=headers).status_code == 200
        assert client.get(f"/api/v1/machines/{outside.id}", headers=headers).status_code == 404
        ids = {m["id"] for m in client.get("/api/v1/machines", headers=headers).json()["data"]}
        assert ids == {inside.id}


class TestUpdateAndRetire:
    def test_update_then_retire_hides_from_buyers(
        self, client: TestClient, session: Session, settings: Settings
    ) -> None:
        owner, buyer = (
            make_user(session, roles=(Role.owner,)),
            make_user(session, roles=(Role.buyer,)),
        )
        machine = make_machine(session, owner=owner)
        url = f"/api/v1/machines/{machine.id}"
        r = client.patch(
            url,
            json={"hourly_rate_fen": 12000, "materials": ["steel"]},
            headers=auth(settings, owner),
        )
        assert r.status_code == 200
        assert (r.json()["hourly_rate_fen"], r.json()["materials"]) == (12000, ["steel"])
        bad = client.patch(url, json={"materials": ["silk"]}, headers=auth(settings, owner))
        assert bad.status_code == 422 and bad.json()["field"] == "materials"
        assert (
            client.post(f"{url}/retire", headers=auth(settings, owner)).json()["status"]
            == "retired"
        )
        assert client.get(url, headers=auth(settings, buyer)).status_code == 404
        assert (
            client.patch(url, json={"name": "x"}, headers=auth(settings, owner)).status_code == 422
        )

    def test_retire_refused_while_booked(
        self, client: TestClient, session: Session, settings: Settings
    ) -> None:
        owner, buyer = (
            make_user(session, roles=(Role.owner,)),
            make_user(session, roles=(Role.buyer,)),
        )
        machine = make_machine(session, owner=owner)
        make_booking(
            session, machine=machine, org_id=buyer.org_id, start=hours_from_now(5),
            end=hours_from_now(7), price_fen=100,
        )  # fmt: skip
        r = client.post(f"/api/v1/machines/{machine.id}/retire", headers=auth(settings, owner))
        assert r.status_code == 409
        reread = session.get(Machine, machine.id)
        assert reread is not None and reread.status == "active"


class TestSearch:
    @pytest.fixture
    def market(self, session: Session) -> dict[str, Any]:
        owner = make_user(session, roles=(Role.owner,))
        ningbo = make_cluster(session, lat=29.9, lon=121.84)
        cheap = make_machine(
            session, owner=owner, hourly_rate_fen=6000, tolerance_mm=0.02, cluster_id=ningbo.id
        )
        precise = make_machine(
            session, owner=owner, process_key="milling_5axis", materials=["titanium"],
            hourly_rate_fen=40000, tolerance_mm=0.005, envelope_x_mm=450, envelope_y_mm=400,
            envelope_z_mm=250, certifications=["AS9100"], lat=30.16, lon=120.26, cluster_id=None,
        )  # fmt: skip
        lathe = make_machine(
            session, owner=owner, process_key="turning", materials=["brass"], hourly_rate_fen=5000,
            envelope_x_mm=380, envelope_y_mm=0, envelope_z_mm=650, lat=28.0, lon=120.6,
        )  # fmt: skip
        return {
            "buyer": make_user(session, roles=(Role.buyer,)),
            "cheap": cheap,
            "precise": precise,
            "lathe": lathe,
            "ningbo": ningbo,
        }

    def ids(
        self, client: TestClient, settings: Settings, market: dict[str, Any], **params: Any
    ) -> list[int]:
        r = client.get("/api/v1/machines", params=params, headers=auth(settings, market["buyer"]))
        assert r.status_code == 200, r.text
        return [m["id"] for m in r.json()["data"]]

    def test_filters(self, client: TestClient, settings: Settings, market: dict[str, Any]) -> None:
        cheap, precise, lathe = market["cheap"].id, market["precise"].id, market["lathe"].id
        assert self.ids(client, settings, market, process="milling_5axis") == [precise]
        assert self.ids(client, settings, market, material="brass") == [lathe]
        assert self.ids(client, settings, market, family="cnc", tolerance_mm=0.01) == [precise]
        assert self.ids(client, settings, market, part_x_mm=500, part_y_mm=300) == [cheap]
        assert self.ids(client, settings, market, part_x_mm=370, part_z_mm=600) == [lathe]
        assert set(self.ids(client, settings, market, part_x_mm=300, part_y_mm=300)) == {
            cheap,
            precise,
            lathe,
        }
        assert self.ids(client, settings, market, certification="AS9100") == [precise]
        assert self.ids(client, settings, market, cluster_id=market["ningbo"].id) == [cheap]
        near = self.ids(
            client, settings, market, near_lat=29.9, near_lon=121.84, within_km=200, sort="distance"
        )
        assert near == [cheap, precise]  # Hangzhou is ~150 km away, Wenzhou ~230 km
        assert self.ids(client, settings, market, sort="rate") == [lathe, cheap, precise]
        assert self.ids(client, settings, market, sort="-rate", limit=1, offset=1) == [cheap]

    def test_free_between(
        self, client: TestClient, session: Session, settings: Settings, market: dict[str, Any]
    ) -> None:
        cheap, precise = market["cheap"], market["precise"]
        make_window(session, machine=cheap, start=hours_from_now(10), end=hours_from_now(30))
        make_window(session, machine=precise, start=hours_from_now(10), end=hours_from_now(30))
        make_booking(
            session,
            machine=precise,
            org_id=market["buyer"].org_id,
            start=hours_from_now(12),
            end=hours_from_now(14),
        )
        params = {
            "free_from": hours_from_now(11).isoformat(),
            "free_to": hours_from_now(13).isoformat(),
        }
        assert self.ids(client, settings, market, **params) == [cheap.id]
        later = {
            "free_from": hours_from_now(15).isoformat(),
            "free_to": hours_from_now(20).isoformat(),
        }
        assert set(self.ids(client, settings, market, **later)) == {cheap.id, precise.id}

    def test_count_and_bad_params(
        self, client: TestClient, settings: Settings, market: dict[str, Any]
    ) -> None:
        headers = auth(settings, market["buyer"])
        body = client.get("/api/v1/machines", params={"limit": 1}, headers=headers).json()
        assert body["count"] == 3 and len(body["data"]) == 1
        r = client.get("/api/v1/machines", params={"sort": "distance"}, headers=headers)
        assert r.status_code == 422 and r.json()["field"] == "sort"
        r = client.get("/api/v1/machines", params={"limit": 100000}, headers=headers)
        assert r.status_code == 422 and r.json()["field"] == "limit"


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("get", "/api/v1/machines/1180591620717411303424", "machine_id"),
        ("get", "/api/v1/orders/9223372036854775808", "order_id"),
        ("get", "/api/v1/machines?owner_org_id=99999999999999999999", "owner_org_id"),
        ("post", "/api/v1/leases", "machine_id"),
    ],
)
def test_out_of_range_ids_are_422_naming_the_field(
    client: TestClient, session: Session, settings: Settings, method: str, path: str, field: str
) -> None:
    buyer = make_user(session, roles=(Role.buyer,))
    body = {
        "machine_id": 2**40,
        "start_at": "2030-01-01T00:00:00Z",
        "end_at": "2030-01-01T05:00:00Z",
    }
    r = client.request(
        method.upper(), path, headers=auth(settings, buyer), json=body if method == "post" else None
    )
    assert (r.status_code, r.json()["field"]) == (422, field)


def test_naive_and_aware_free_times_are_compared_not_crashed(
    client: TestClient, session: Session, settings: Settings
) -> None:
    buyer = make_user(session, roles=(Role.buyer,))
    r = client.get("/api/v1/machines", params={"free_from": "2030-01-02T00:00:00", "free_to": "2030-01-01T00:00:00Z"},
                   headers=auth(settings, buyer))  # fmt: skip
    assert (r.status_code, r.json()["field"]) == (422, "free_to")
