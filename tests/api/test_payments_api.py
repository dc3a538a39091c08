"""HTTP contract of the payments API: the webhook inbox (signature, duplicates, order)
and the scoped money views."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, func, select

from app import jobs, tasks
from app.bookings import delivery as booking_delivery
from app.bookings import flows as booking_flows
from app.config import Settings
from app.money import driver, reconcile
from app.money.provider import PaymentsClient, compute_signature
from models import Booking, LedgerEntry, Payment, PaymentEvent, Role
from tests.factories import auth, make_user
from tests.money_fixtures import (  # noqa: F401
    STUB_KEY,
    STUB_SECRET,
    Market,
    make_service_booking,
    market,
    money_stub_url,
    provider,
)

HOOK = "/api/v1/webhooks/payments"


def signed(body: bytes, secret: str = STUB_SECRET) -> dict[str, str]:
    ts = int(time.time())
    return {
        "Capshare-Signature": f"t={ts},v1={compute_signature(body, secret, ts)}",
        "Content-Type": "application/json",
    }


def raw_events(stub_url: str) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{stub_url}/v1/events",
        params={"limit": 100},
        headers={"Authorization": f"Bearer {STUB_KEY}"},
    )
    r.raise_for_status()
    return list(r.json()["data"])


class TestWebhookInbox:
    def test_bad_or_missing_signature_is_400_and_stores_nothing(
        self, client: TestClient, session: Session
    ) -> None:
        body = json.dumps(
            {
                "id": "evt_x",
                "type": "payment_intent.succeeded",
                "created": 1,
                "data": {"object": {}},
            }
        ).encode()
        assert (
            client.post(HOOK, content=body, headers=signed(body, "whsec_wrong")).status_code == 400
        )
        r = client.post(HOOK, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["field"] == "Capshare-Signature"
        assert session.exec(select(func.count()).select_from(PaymentEvent)).one() == 0

    def test_duplicate_delivery_is_processed_once(
        self, client: TestClient, session: Session
    ) -> None:
        body = json.dumps(
            {
                "id": "evt_dup",
                "type": "payout.paid",
                "created": 1,
                "data": {"object": {"id": "po_1"}},
            }
        ).encode()
        first = client.post(HOOK, content=body, headers=signed(body))
        second = client.post(HOOK, content=body, headers=signed(body))
        assert (first.status_code, second.status_code) == (200, 200)
        assert (first.json()["duplicate"], second.json()["duplicate"]) == (False, True)
        rows = session.exec(select(PaymentEvent)).all()
        assert len(rows) == 1 and rows[0].handled_at is None  # stored; a task applies it
        assert [j.task for j in tasks.ready] == ["payments.webhook"]  # once, not twice
        assert tasks.run_ready(session) == 1
        session.refresh(rows[0])
        assert rows[0].handled_at is not None
        third = client.post(HOOK, content=body, headers=signed(body))  # after it was applied
        assert third.json()["duplicate"] and tasks.ready == []

    def test_out_of_order_events_move_forward_only(
        self,
        client: TestClient,
        session: Session,
        market: Market,
        provider: PaymentsClient,
        money_stub_url: str,
    ) -> None:
        booking = make_service_booking(session, market, price_fen=40_000)
        assert booking.id is not None
        for action in ("accept", "start", "complete"):  # no client: the payments stay pending
            booking_flows.transition_booking(
                session=session, user=market.owner, booking_id=booking.id, action=action
            )
        booking_delivery.accept_delivery(session=session, user=market.buyer, booking_id=booking.id)
        hold, capture = session.exec(
            select(Payment).where(Payment.booking_id == booking.id).order_by(col(Payment.id))
        ).all()
        # the provider applies both, but capshare hears only through webhooks
        intent = provider.create_payment_intent(amount_fen=40_000, idempotency_key=hold.idempotency_key,
                                                capture_method="manual", payment_method=hold.payment_method,
                                                confirm=True, metadata=driver._metadata(hold))  # fmt: skip
        provider.capture_payment_intent(
            intent.id, idempotency_key=capture.idempotency_key, amount_fen=40_000
        )
        events = {e["type"]: e for e in raw_events(money_stub_url)}
        newest, older = (
            events["payment_intent.succeeded"],
            events["payment_intent.amount_capturable_updated"],
        )
        for event in (newest, older, newest):  # newest first, then a stale one, then a duplicate
            body = json.dumps(event).encode()
            assert client.post(HOOK, content=body, headers=signed(body)).status_code == 200
            tasks.run_ready(session)  # the webhook task, as a worker would run it
        session.refresh(hold)
        session.refresh(capture)
        assert (hold.status, capture.status) == ("succeeded", "succeeded")
        assert capture.provider_intent_id == intent.id
        txns = session.exec(select(func.count(func.distinct(LedgerEntry.transaction_id)))).one()
        assert txns == 1  # one capture transaction; the payout is planned, not yet sent
        payout = session.exec(select(Payment).where(Payment.kind == "payout")).one()
        assert (payout.status, payout.amount_fen) == ("pending", 38_000)


class TestReconcileAndTheInbox:
    def test_only_webhooks_that_never_arrived_count_as_missed(
        self,
        client: TestClient,
        session: Session,
        market: Market,
        provider: PaymentsClient,
        money_stub_url: str,
    ) -> None:
        booking = make_service_booking(session, market, price_fen=30_000)
        assert booking.id is not None
        booking_flows.transition_booking(
            session=session, user=market.owner, booking_id=booking.id, action="accept"
        )
        hold = session.exec(select(Payment).where(Payment.booking_id == booking.id)).one()
        provider.create_payment_intent(amount_fen=30_000, idempotency_key=hold.idempotency_key,
                                       capture_method="manual", payment_method=hold.payment_method,
                                       confirm=True, metadata=driver._metadata(hold))  # fmt: skip
        events = raw_events(money_stub_url)
        assert len(events) >= 2
        arrived = events[0]  # its webhook came: stored, its task not run yet
        body = json.dumps(arrived).encode()
        assert client.post(HOOK, content=body, headers=signed(body)).status_code == 200
        report = reconcile.reconcile_payments(session=session, payments=provider)
        missed = [d.detail for d in report.differences if d.kind == "webhook_missed"]
        assert len(missed) == len(events) - 1 and not any(arrived["id"] in m for m in missed)
        row = session.exec(
            select(PaymentEvent).where(PaymentEvent.external_id == arrived["id"])
        ).one()
        assert row.handled_at is not None  # applied by the reconciler, once
        assert "payments.webhook" in [j.task for j in tasks.ready]
        tasks.run_ready(session)  # its task still comes, and finds it handled
        session.refresh(hold)
        assert hold.status == "succeeded"


@pytest.fixture
def tasks_pay_with(monkeypatch: pytest.MonkeyPatch, provider: PaymentsClient) -> PaymentsClient:
    """The payments tasks talk to the test's provider."""
    monkeypatch.setattr(jobs, "get_payments_client", lambda _settings: provider)
    return provider


def post(client: TestClient, session: Session, url: str, headers: dict[str, str], **kw: Any) -> Any:
    """A command over HTTP, then the tasks it deferred (the worker's part)."""
    r = client.post(url, headers=headers, **kw)
    tasks.run_ready(session)
    return r


def delivered(
    client: TestClient,
    session: Session,
    settings: Settings,
    market: Market,
    price_fen: int,
) -> tuple[Booking, dict[str, str], dict[str, str]]:
    """A service booking the owner accepted, started and completed over HTTP, its payments
    driven by the tasks: (booking, owner's headers, buyer's headers)."""
    booking = make_service_booking(session, market, price_fen=price_fen)
    owner_h, buyer_h = auth(settings, market.owner), auth(settings, market.buyer)
    for action in ("accept", "start", "complete"):
        assert (
            post(client, session, f"/api/v1/bookings/{booking.id}/{action}", owner_h).status_code
            == 200
        )
    return booking, owner_h, buyer_h


class TestMoneyViews:
    def test_delivery_accepted_over_http_and_views_are_scoped(
        self,
        client: TestClient,
        session: Session,
        settings: Settings,
        market: Market,
        tasks_pay_with: PaymentsClient,
    ) -> None:
        booking, owner_h, buyer_h = delivered(client, session, settings, market, 20_000)
        assert (
            client.get(f"/api/v1/bookings/{booking.id}/payments", headers=buyer_h).json()[
                "money_status"
            ]
            == "authorized"
        )
        assert (
            client.post(
                f"/api/v1/bookings/{booking.id}/delivery/accept", headers=owner_h
            ).status_code
            == 403
        )
        r = client.post(f"/api/v1/bookings/{booking.id}/delivery/accept", headers=buyer_h)
        assert r.status_code == 200, r.text  # answered at once: the provider is a task's job
        assert r.json()["money_status"] != "captured"
        assert tasks.run_ready(session) >= 1
        r = client.get(f"/api/v1/bookings/{booking.id}/payments", headers=buyer_h)
        assert r.json()["money_status"] == "captured" and r.json()["captured_fen"] == 20_000
        assert (
            client.post(
                f"/api/v1/bookings/{booking.id}/delivery/accept", headers=buyer_h
            ).status_code
            == 409
        )

        earnings = client.get("/api/v1/payments/earnings", headers=owner_h).json()
        assert (earnings["earned_fen"], earnings["paid_out_fen"], earnings["payable_fen"]) == (
            19_000,
            19_000,
            0,
        )
        assert (earnings["gross_fen"], earnings["fee_fen"]) == (20_000, 1_000)
        assert len(earnings["payouts"]) == 1
        statement = client.get("/api/v1/payments/statement", headers=buyer_h).json()
        assert (statement["paid_fen"], statement["held_fen"]) == (20_000, 0)
        assert [line["amount_fen"] for line in statement["lines"]] == [-20_000]

        stranger = make_user(session, roles=(Role.buyer, Role.owner))
        stranger_h = auth(settings, stranger)
        assert (
            client.get(f"/api/v1/bookings/{booking.id}/payments", headers=stranger_h).status_code
            == 404
        )
        assert (
            client.post(
                f"/api/v1/bookings/{booking.id}/delivery/dispute",
                json={"note": "x"},
                headers=stranger_h,
            ).status_code
            == 404
        )
        assert client.get("/api/v1/payments/statement", headers=stranger_h).json()["lines"] == []
        assert client.get("/api/v1/payments/earnings", headers=stranger_h).json()["earned_fen"] == 0
        assert client.get("/api/v1/payments/earnings", headers=buyer_h).status_code == 403

    def test_dispute_over_http_and_only_an_admin_resolves(
        self,
        client: TestClient,
        session: Session,
        settings: Settings,
        market: Market,
        tasks_pay_with: PaymentsClient,
    ) -> None:
        booking, owner_h, buyer_h = delivered(client, session, settings, market, 10_000)
        r = client.post(
            f"/api/v1/bookings/{booking.id}/delivery/dispute",
            json={"note": "scratched"},
            headers=buyer_h,
        )
        assert r.status_code == 200 and r.json()["money_status"] == "disputed"
        resolve = f"/api/v1/bookings/{booking.id}/delivery/resolve"
        assert client.post(resolve, json={"refund_fen": 10_000}, headers=buyer_h).status_code == 403
        admin_h = auth(settings, make_user(session, roles=(Role.admin,)))
        assert client.post(resolve, json={"refund_fen": 10_001}, headers=admin_h).status_code == 422
        assert (
            post(client, session, resolve, admin_h, json={"refund_fen": 2_500}).status_code == 200
        )
        r = client.get(f"/api/v1/bookings/{booking.id}/payments", headers=buyer_h)
        assert r.json()["captured_fen"] == 7_500
