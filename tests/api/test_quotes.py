from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from app.config import Settings
from models import Booking, MatchRun, Operation, Order, OrderEvent
from tests.factories import auth, hours_from_now, make_machine, make_window
from tests.factories_matching import Market, make_market


def rows(session: Session) -> tuple[int, ...]:
    return tuple(
        session.exec(select(func.count()).select_from(m)).one()
        for m in (Booking, Order, Operation, OrderEvent, MatchRun)
    )


def draft(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "housings", "release_at": hours_from_now(1).isoformat(), "due_at": hours_from_now(72).isoformat(),
        "operations": [{"process_key": "milling_3axis", "material_key": "aluminium", "std_duration_min": 120},
                       {"process_key": "milling_3axis", "material_key": "aluminium", "std_duration_min": 60}],
    }  # fmt: skip
    body.update(overrides)
    return body


@pytest.fixture
def market(session: Session) -> Market:
    m = make_market(session)
    far = make_machine(
        session, owner=m.owner, hourly_rate_fen=6000, lat=30.6, lon=121.84, cluster_id=m.cluster.id
    )  # ~78 km north, cheap
    make_window(session, machine=far, start=hours_from_now(20), end=hours_from_now(60))  # and later
    return m


class TestQuotes:
    def test_up_to_three_consistent_options_and_nothing_written(
        self, client: TestClient, session: Session, settings: Settings, market: Market
    ) -> None:
        before = rows(session)
        r = client.post("/api/v1/quotes", json=draft(), headers=auth(settings, market.buyer))
        assert r.status_code == 200, r.text
        body = r.json()
        assert 1 <= len(body["options"]) <= 3
        labels = [label for o in body["options"] for label in o["labels"]]
        assert sorted(labels) == ["cheapest", "earliest", "nearest"]
        for o in body["options"]:
            assert len(o["steps"]) == 2
            assert o["processing_fen"] == sum(s["price_fen"] for s in o["steps"])
            assert o["transport_fen"] == sum(s["transport_fen"] for s in o["steps"])
            assert o["total_fen"] == o["processing_fen"] + o["transport_fen"]
            assert all(
                isinstance(o[k], int) for k in ("processing_fen", "transport_fen", "total_fen")
            )
            assert o["steps"][0]["end_at"] <= o["steps"][1]["start_at"]
            assert o["completion_at"] == o["steps"][-1]["end_at"]
        by = {label: o for o in body["options"] for label in o["labels"]}
        assert by["cheapest"]["total_fen"] <= min(o["total_fen"] for o in body["options"])
        assert by["earliest"]["completion_at"] <= min(o["completion_at"] for o in body["options"])
        assert by["nearest"]["max_distance_km"] <= min(
            o["max_distance_km"] for o in body["options"]
        )
        assert rows(session) == before

    def test_no_capacity_says_why(
        self, client: TestClient, settings: Settings, market: Market
    ) -> None:
        body = draft(
            operations=[{"process_key": "turning", "material_key": "steel", "std_duration_min": 60}]
        )
        r = client.post("/api/v1/quotes", json=body, headers=auth(settings, market.buyer))
        assert r.status_code == 200
        assert r.json()["options"] == [] and "no_eligible_machine" in r.json()["unavailable"]

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"due_at": hours_from_now(-5).isoformat()}, "due_at"),
            ({"operations": []}, "operations"),
            (
                {
                    "operations": [
                        {
                            "process_key": "milling_3axis",
                            "material_key": "aluminium",
                            "std_duration_min": 0,
                        }
                    ]
                },
                "operations[0].std_duration_min",
            ),
            (
                {
                    "operations": [
                        {
                            "process_key": "juggling",
                            "material_key": "aluminium",
                            "std_duration_min": 60,
                        }
                    ]
                },
                "operations[0].process_key",
            ),
            ({"budget_fen": -1}, "budget_fen"),
        ],
    )
    def test_bad_drafts_are_422_naming_the_field(
        self,
        client: TestClient,
        session: Session,
        settings: Settings,
        market: Market,
        change: dict[str, Any],
        field: str,
    ) -> None:
        before = rows(session)
        r = client.post(
            "/api/v1/quotes", json=draft(**change), headers=auth(settings, market.buyer)
        )
        assert (r.status_code, r.json()["field"]) == (422, field), r.text
        assert rows(session) == before

    def test_owners_only_are_refused(
        self, client: TestClient, settings: Settings, market: Market
    ) -> None:
        assert (
            client.post(
                "/api/v1/quotes", json=draft(), headers=auth(settings, market.owner)
            ).status_code
            == 403
        )
