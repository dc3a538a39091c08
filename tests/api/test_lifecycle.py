"""The order lifecycle over HTTP, as a black-box client walks it: a two-step order,
one step declined, the other confirmed; what may and may not happen next."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session

from app import tasks
from app.config import Settings
from tests.factories import auth
from tests.factories_matching import Market, make_market, make_order

Clock = Callable[[dt.datetime], None]


def match(
    client: TestClient, session: Session, settings: Settings, market: Market
) -> dict[str, Any]:
    h = auth(settings, market.operator)
    r = client.post(
        "/api/v1/match-runs", json={"cluster_id": market.cluster.id, "time_limit_s": 2}, headers=h
    )
    assert (r.status_code, r.json()["status"]) == (202, "queued"), r.text
    tasks.run_ready(session)  # the queue's worker, here in the test's session
    run: dict[str, Any] = client.get(f"/api/v1/match-runs/{r.json()['id']}", headers=h).json()
    assert run["status"] == "succeeded", run
    return run


def steps(client: TestClient, headers: dict[str, str], order_id: int) -> list[dict[str, Any]]:
    r = client.get("/api/v1/bookings", params={"order_id": order_id}, headers=headers)
    assert r.status_code == 200
    rows: list[dict[str, Any]] = r.json()["data"]
    return [b for b in rows if b["state"] in ("proposed", "confirmed", "in_progress", "done")]


def test_a_declined_step_holds_back_the_order_over_http(
    client: TestClient, session: Session, settings: Settings, clock: Clock
) -> None:
    market = make_market(session)
    owner, buyer = auth(settings, market.owner), auth(settings, market.buyer)
    order = make_order(session, buyer=market.buyer, operations=[{}, {}])
    match(client, session, settings, market)
    step1, step2 = steps(client, owner, order.id)  # type: ignore[arg-type]
    declined = client.post(
        f"/api/v1/bookings/{step1['id']}/decline", json={"reason": "fixture busy"}, headers=owner
    )
    assert declined.status_code == 200
    got = client.get(f"/api/v1/orders/{order.id}", headers=buyer).json()
    assert got["status"] == "open"  # back in the pool at once
    timeline = client.get(f"/api/v1/orders/{order.id}/timeline", headers=buyer).json()
    assert [e["state"] for e in timeline][-2:] == ["booking_declined", "open"]

    url = f"/api/v1/bookings/{step2['id']}"
    assert client.post(f"{url}/accept", headers=owner).status_code == 200  # authorization only
    clock(dt.datetime.fromisoformat(step2["start_at"]))
    refused = client.post(f"{url}/start", headers=owner)
    assert refused.status_code == 409
    assert "whole order" in refused.json()["detail"]
    refused = client.post(f"{url}/complete", headers=owner)
    assert refused.status_code == 409 and "has not started" in refused.json()["detail"]

    run = match(client, session, settings, market)  # the declined pair is not proposed again
    again = steps(client, owner, order.id)  # type: ignore[arg-type]
    assert run["proposals"] >= 1 and len(again) == 2  # step 1 anew (step 2 kept or re-placed)
    assert all(b["id"] != step1["id"] for b in again)
    new1 = next(b for b in again if b["operation_id"] == step1["operation_id"])
    assert new1["machine_id"] != step1["machine_id"]

    cancelled = client.post(f"/api/v1/orders/{order.id}/cancel", json={}, headers=buyer)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    states = [
        e["state"] for e in client.get(f"/api/v1/orders/{order.id}/timeline", headers=buyer).json()
    ]
    assert states[-3:] == ["booking_cancelled", "booking_cancelled", "cancelled"]


def test_early_start_and_precedence_are_409s_naming_the_rule(
    client: TestClient, session: Session, settings: Settings, clock: Clock
) -> None:
    market = make_market(session)
    owner = auth(settings, market.owner)
    order = make_order(session, buyer=market.buyer, operations=[{}, {}])
    match(client, session, settings, market)
    step1, step2 = steps(client, owner, order.id)  # type: ignore[arg-type]
    for b in (step1, step2):
        assert client.post(f"/api/v1/bookings/{b['id']}/accept", headers=owner).status_code == 200
    start1 = dt.datetime.fromisoformat(step1["start_at"])
    clock(start1 - dt.timedelta(minutes=settings.early_start_minutes + 5))
    early = client.post(f"/api/v1/bookings/{step1['id']}/start", headers=owner)
    assert early.status_code == 409 and "early start" in early.json()["detail"]
    clock(dt.datetime.fromisoformat(step2["start_at"]))
    before = client.post(f"/api/v1/bookings/{step2['id']}/start", headers=owner)
    assert before.status_code == 409 and "precedence" in before.json()["detail"]
    assert client.post(f"/api/v1/bookings/{step1['id']}/start", headers=owner).status_code == 200
    assert client.post(f"/api/v1/bookings/{step1['id']}/complete", headers=owner).status_code == 200
    started = client.post(f"/api/v1/bookings/{step2['id']}/start", headers=owner)
    assert started.status_code == 200 and started.json()["started_at"] is not None
