"""Signed webhook deliveries from the stub to a loopback receiver, and their faults."""

from __future__ import annotations

import json
import time

import pytest

from app.money.provider import (
    SIGNATURE_HEADER,
    InvalidWebhookSignature,
    PaymentsClient,
    compute_signature,
    parse_webhook_event,
    verify_signature,
)
from payments_stub import create_stub_app, serve_in_thread, sign_payload
from tests.payments.conftest import API_KEY, WEBHOOK_SECRET, Receiver, Stub, make_client


def _subscribe(payments: PaymentsClient, receiver: Receiver, *events: str) -> None:
    payments.create_webhook_endpoint(
        url=receiver.url, enabled_events=events or ("*",), idempotency_key=f"we-{receiver.url}"
    )


def _event_ids(received: list) -> list[str]:  # type: ignore[type-arg]
    return [json.loads(r.body)["id"] for r in received]


class TestDelivery:
    def test_events_are_delivered_signed(
        self, payments: PaymentsClient, receiver: Receiver
    ) -> None:
        _subscribe(payments, receiver)
        customer = payments.create_customer(idempotency_key="w-1", name="Keqiao Textiles")
        (delivery,) = receiver.wait_for(1)
        header = delivery.headers[SIGNATURE_HEADER]
        assert verify_signature(delivery.body, header, WEBHOOK_SECRET) > 0
        event = parse_webhook_event(delivery.body, header, WEBHOOK_SECRET)
        assert event.type == "customer.created"
        assert event.object_id == customer.id
        assert delivery.headers["Capshare-Event-Id"] == event.id
        assert [e.id for e in payments.list_events().data] == [event.id]

    def test_endpoint_only_gets_subscribed_types(
        self, stub: Stub, payments: PaymentsClient, receiver: Receiver
    ) -> None:
        _subscribe(payments, receiver, "payment_intent.succeeded")
        payments.create_payment_intent(
            amount_fen=300, capture_method="automatic", confirm=True, idempotency_key="w-2"
        )
        (delivery,) = receiver.wait_for(1)
        stub.wait_webhooks_idle()
        assert json.loads(delivery.body)["type"] == "payment_intent.succeeded"
        assert len(receiver.received) == 1

    def test_non_2xx_is_retried_with_backoff(
        self, stub: Stub, payments: PaymentsClient, receiver: Receiver
    ) -> None:
        receiver.fail_next = 2
        _subscribe(payments, receiver)
        payments.create_customer(idempotency_key="w-3")
        (delivery,) = receiver.wait_for(1)
        assert delivery.headers["Capshare-Delivery-Attempt"] == "3"
        stub.wait_webhooks_idle()  # the stub logs "delivered" once it has read the answer
        log = stub.deliveries()
        assert [d["outcome"] for d in log] == ["failed", "failed", "delivered"]
        assert [d["status_code"] for d in log] == [500, 500, 200]
        assert log[2]["at"] - log[0]["at"] >= 0.05 + 0.1 - 0.01  # 0.05 s, then 0.1 s backoff

    def test_unreachable_endpoint_is_abandoned_after_max_attempts(
        self, stub: Stub, payments: PaymentsClient
    ) -> None:
        payments.create_webhook_endpoint(url="http://127.0.0.1:9/down", idempotency_key="we-down")
        payments.create_customer(idempotency_key="w-4")
        stub.wait_webhooks_idle()
        outcomes = [d["outcome"] for d in stub.deliveries()]
        assert outcomes == ["failed", "failed", "failed", "abandoned"]
        assert "error" in stub.deliveries()[0]

    def test_webhook_url_configured_at_creation(self, receiver: Receiver) -> None:
        app = create_stub_app(
            api_key=API_KEY, webhook_secret="whsec_configured", webhook_url=receiver.url
        )
        with serve_in_thread(app) as url, make_client(url) as payments:
            payments.create_connected_account(idempotency_key="w-5", name="owner")
            (delivery,) = receiver.wait_for(1)
        event = parse_webhook_event(
            delivery.body, delivery.headers[SIGNATURE_HEADER], "whsec_configured"
        )
        assert event.type == "account.created"


class TestDeliveryFaults:
    def test_drop(self, stub: Stub, payments: PaymentsClient, receiver: Receiver) -> None:
        _subscribe(payments, receiver)
        stub.faults({"kind": "webhook_drop", "count": 1})
        payments.create_customer(idempotency_key="d-1", name="dropped")
        payments.create_customer(idempotency_key="d-2", name="kept")
        received = receiver.wait_for(1)
        stub.wait_webhooks_idle()
        assert [json.loads(r.body)["data"]["object"]["name"] for r in receiver.received] == ["kept"]
        assert len(received) == 1
        # The dropped event is still in the event log, where a reconciler finds it.
        assert [e.data_object["name"] for e in payments.list_events().data] == ["dropped", "kept"]
        assert stub.injected("webhook_drop") == 1

    def test_duplicate(self, stub: Stub, payments: PaymentsClient, receiver: Receiver) -> None:
        _subscribe(payments, receiver)
        stub.faults({"kind": "webhook_duplicate", "count": 1})
        payments.create_customer(idempotency_key="u-1")
        received = receiver.wait_for(2)
        ids = _event_ids(received)
        assert ids[0] == ids[1]
        assert stub.injected("webhook_duplicate") == 1

    def test_reorder(self, stub: Stub, payments: PaymentsClient, receiver: Receiver) -> None:
        _subscribe(payments, receiver)
        stub.faults({"kind": "webhook_reorder", "count": 3})
        for i in range(3):
            payments.create_customer(idempotency_key=f"r-{i}", name=f"c{i}")
        received = receiver.wait_for(3)
        names = [json.loads(r.body)["data"]["object"]["name"] for r in received]
        assert names == ["c2", "c1", "c0"]
        assert stub.injected("webhook_reorder") == 3

    def test_flush_releases_a_partial_reorder_batch(
        self, stub: Stub, payments: PaymentsClient, receiver: Receiver
    ) -> None:
        _subscribe(payments, receiver)
        stub.faults({"kind": "webhook_reorder", "count": 5})
        payments.create_customer(idempotency_key="pr-1", name="a")
        payments.create_customer(idempotency_key="pr-2", name="b")
        assert stub.stats()["webhooks"]["held"] == 2
        assert stub.http.post("/_control/webhooks/flush").json() == {"released": 2}
        received = receiver.wait_for(2)
        assert [json.loads(r.body)["data"]["object"]["name"] for r in received] == ["b", "a"]

    def test_chaos_webhooks_are_reproducible_by_seed(
        self, stub: Stub, payments: PaymentsClient, receiver: Receiver
    ) -> None:
        _subscribe(payments, receiver)
        outcomes = []
        for run in range(2):
            stub.http.post(
                "/_control/faults",
                json={
                    "replace": True,
                    "chaos": {
                        "seed": 99,
                        "webhook_drop_rate": 0.3,
                        "webhook_duplicate_rate": 0.3,
                        "path_prefix": "/nothing",
                    },
                },
            ).raise_for_status()
            before = dict(stub.stats()["faults_injected"])
            for i in range(10):
                payments.create_customer(idempotency_key=f"ch-{run}-{i}")
            after = stub.stats()["faults_injected"]
            outcomes.append(
                {
                    k: after.get(k, 0) - before.get(k, 0)
                    for k in ("webhook_drop", "webhook_duplicate")
                }
            )
        assert outcomes[0] == outcomes[1]
        assert outcomes[0]["webhook_drop"] + outcomes[0]["webhook_duplicate"] > 0


class TestVerifySignature:
    BODY = b'{"id":"evt_1","type":"payment_intent.succeeded"}'

    def test_stub_and_client_agree(self) -> None:
        header = sign_payload(self.BODY, "whsec_a", 1_700_000_000)
        assert header == f"t=1700000000,v1={compute_signature(self.BODY, 'whsec_a', 1_700_000_000)}"
        assert verify_signature(self.BODY, header, "whsec_a", now=1_700_000_100) == 1_700_000_000

    @pytest.mark.parametrize("skew", [301, -301])
    def test_outside_tolerance_is_rejected(self, skew: int) -> None:
        header = sign_payload(self.BODY, "whsec_a", 1_700_000_000)
        with pytest.raises(InvalidWebhookSignature) as exc_info:
            verify_signature(
                self.BODY, header, "whsec_a", tolerance_s=300, now=1_700_000_000 + skew
            )
        assert exc_info.value.code == "stale"
        assert exc_info.value.status_code == 400

    def test_tampered_body_or_wrong_secret_is_rejected(self) -> None:
        now = time.time()
        header = sign_payload(self.BODY, "whsec_a", int(now))
        with pytest.raises(InvalidWebhookSignature, match="does not match"):
            verify_signature(self.BODY.replace(b"succeeded", b"canceled"), header, "whsec_a")
        with pytest.raises(InvalidWebhookSignature, match="does not match"):
            verify_signature(self.BODY, header, "whsec_b")
        forged = header.replace(f"t={int(now)}", f"t={int(now) + 1}")
        with pytest.raises(InvalidWebhookSignature, match="does not match"):
            verify_signature(self.BODY, forged, "whsec_a")

    @pytest.mark.parametrize("header", [None, "", "v1=abc", "t=1", "t=x,v1=ab", "garbage"])
    def test_malformed_headers_are_rejected(self, header: str | None) -> None:
        with pytest.raises(InvalidWebhookSignature):
            verify_signature(self.BODY, header, "whsec_a", now=1)

    def test_any_matching_v1_is_accepted_during_rotation(self) -> None:
        t = int(time.time())
        old = compute_signature(self.BODY, "whsec_old", t)
        new = compute_signature(self.BODY, "whsec_new", t)
        assert verify_signature(self.BODY, f"t={t},v1={old},v1={new}", "whsec_new") == t

    def test_parse_rejects_signed_garbage(self) -> None:
        t = int(time.time())
        header = sign_payload(b"[1, 2]", "whsec_a", t)
        with pytest.raises(InvalidWebhookSignature, match="not a valid event"):
            parse_webhook_event(b"[1, 2]", header, "whsec_a")
