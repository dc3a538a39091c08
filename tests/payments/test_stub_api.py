"""The stub's API over real HTTP, through PaymentsClient: lifecycles, errors, lists."""

from __future__ import annotations

import httpx
import pytest

from app.money.provider import (
    PaymentConflict,
    PaymentDeclined,
    PaymentInvalidRequest,
    PaymentNotFound,
    PaymentProviderError,
    PaymentsClient,
)
from payments_stub import create_stub_app, serve_in_thread
from tests.payments.conftest import API_KEY, WEBHOOK_SECRET, Stub, make_client


def _authorized(payments: PaymentsClient, amount_fen: int, key: str) -> str:
    customer = payments.create_customer(idempotency_key=f"{key}-cus", email="buyer@example.cn")
    intent = payments.create_payment_intent(
        amount_fen=amount_fen,
        customer=customer.id,
        idempotency_key=f"{key}-pi",
        metadata={"order_id": key},
    )
    assert intent.status == "requires_confirmation"
    held = payments.authorize_payment_intent(intent.id, idempotency_key=f"{key}-auth")
    assert held.status == "requires_capture"
    assert held.amount_capturable_fen == amount_fen
    return intent.id


class TestIntentLifecycle:
    def test_authorize_partial_capture_refund(self, payments: PaymentsClient) -> None:
        intent_id = _authorized(payments, 10_000, "order-1")

        captured = payments.capture_payment_intent(
            intent_id, amount_fen=8_000, idempotency_key="order-1-cap"
        )
        assert captured.status == "succeeded"
        assert captured.amount_received_fen == 8_000
        assert captured.amount_capturable_fen == 0  # the rest of the hold is released
        assert payments.get_balance().available_fen == 8_000

        refund = payments.create_refund(
            payment_intent=intent_id, amount_fen=3_000, idempotency_key="order-1-re1"
        )
        assert (refund.amount_fen, refund.status, refund.currency) == (3_000, "succeeded", "cny")
        rest = payments.refund(payment_intent=intent_id, idempotency_key="order-1-re2")
        assert rest.amount_fen == 5_000
        assert payments.get_payment_intent(intent_id).amount_refunded_fen == 8_000
        assert payments.get_balance().available_fen == 0
        assert [r.id for r in payments.list_refunds(payment_intent=intent_id).data] == [
            refund.id,
            rest.id,
        ]
        with pytest.raises(PaymentInvalidRequest) as exc_info:
            payments.refund(payment_intent=intent_id, amount_fen=1, idempotency_key="order-1-re3")
        assert exc_info.value.code == "charge_already_refunded"

        types = [e.type for e in payments.list_events().data]
        assert types == [
            "customer.created",
            "payment_intent.created",
            "payment_intent.amount_capturable_updated",
            "payment_intent.succeeded",
            "refund.created",
            "refund.created",
        ]

    def test_automatic_capture_on_create(self, payments: PaymentsClient) -> None:
        intent = payments.create_payment_intent(
            amount_fen=500, capture_method="automatic", confirm=True, idempotency_key="auto-1"
        )
        assert intent.status == "succeeded"
        assert intent.amount_received_fen == 500

    def test_cancel_voids_hold_and_blocks_capture(self, payments: PaymentsClient) -> None:
        intent_id = _authorized(payments, 2_000, "order-2")
        canceled = payments.cancel_payment_intent(
            intent_id, reason="requested_by_customer", idempotency_key="order-2-cancel"
        )
        assert (canceled.status, canceled.amount_capturable_fen) == ("canceled", 0)
        assert canceled.cancellation_reason == "requested_by_customer"
        with pytest.raises(PaymentConflict) as exc_info:
            payments.capture_payment_intent(intent_id, idempotency_key="order-2-cap")
        assert exc_info.value.code == "payment_intent_unexpected_state"
        assert exc_info.value.status_code == 409
        with pytest.raises(PaymentConflict):
            payments.confirm_payment_intent(
                intent_id, payment_method="pm_card_declined", idempotency_key="order-2-conf"
            )
        assert payments.get_payment_intent(intent_id).payment_method == "pm_card_visa"
        assert payments.get_balance().available_fen == 0

    def test_declined_card_then_retry_with_other_method(self, payments: PaymentsClient) -> None:
        intent = payments.create_payment_intent(
            amount_fen=900, payment_method="pm_card_insufficient_funds", idempotency_key="d-1"
        )
        with pytest.raises(PaymentDeclined) as exc_info:
            payments.confirm_payment_intent(intent.id, idempotency_key="d-1-auth")
        assert exc_info.value.status_code == 402
        assert exc_info.value.decline_code == "insufficient_funds"
        after = payments.get_payment_intent(intent.id)
        assert after.status == "requires_payment_method"
        assert after.last_error_code == "insufficient_funds"
        held = payments.confirm_payment_intent(
            intent.id, payment_method="pm_card_visa", idempotency_key="d-1-auth-2"
        )
        assert held.status == "requires_capture"


class TestErrors:
    def test_over_capture_is_400_naming_the_field(
        self, stub: Stub, payments: PaymentsClient
    ) -> None:
        intent_id = _authorized(payments, 1_000, "order-3")
        response = stub.post(
            f"/v1/payment_intents/{intent_id}/capture", {"amount_to_capture": 1_001}, "cap-x"
        )
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["param"] == "amount_to_capture"
        assert "1001" in error["message"]
        with pytest.raises(PaymentInvalidRequest) as exc_info:
            payments.capture_payment_intent(intent_id, amount_fen=1_001, idempotency_key="cap-y")
        assert exc_info.value.param == "amount_to_capture"
        assert payments.get_payment_intent(intent_id).status == "requires_capture"

    def test_refund_of_uncaptured_money_is_refused(self, payments: PaymentsClient) -> None:
        intent_id = _authorized(payments, 1_000, "order-4")
        with pytest.raises(PaymentConflict):
            payments.refund(payment_intent=intent_id, idempotency_key="order-4-re")
        payments.capture_payment_intent(intent_id, amount_fen=400, idempotency_key="order-4-cap")
        with pytest.raises(PaymentInvalidRequest) as exc_info:
            payments.refund(payment_intent=intent_id, amount_fen=401, idempotency_key="re-big")
        assert (exc_info.value.code, exc_info.value.param) == ("amount_too_large", "amount")

    def test_bad_api_key_is_401_and_not_retried(self, stub: Stub) -> None:
        response = httpx.get(
            stub.url + "/v1/balance", headers={"Authorization": "Bearer sk_test_wrong"}
        )
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
        assert httpx.get(stub.url + "/v1/balance").status_code == 401

        before = stub.requests()
        with httpx.Client(base_url=stub.url) as http:
            client = PaymentsClient(http, api_key="sk_test_wrong", max_attempts=3)
            with pytest.raises(PaymentProviderError) as exc_info:
                client.get_balance()
        assert exc_info.value.status_code == 502
        assert exc_info.value.provider_status == 401
        assert stub.requests() == before + 1

    def test_floats_and_unknown_fields_are_400(self, stub: Stub) -> None:
        response = stub.post("/v1/payment_intents", {"amount": 10.5}, "float-1")
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "amount"
        response = stub.post("/v1/payment_intents", {"amount": 10, "amont": 1}, "typo-1")
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "amont"

    def test_post_without_idempotency_key_is_refused(self, stub: Stub) -> None:
        response = stub.post("/v1/customers", {}, None)
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "Idempotency-Key"
        with pytest.raises(ValueError, match="idempotency_key"):
            make_client(stub.url).create_customer(idempotency_key="")

    def test_unknown_object_is_not_found(self, payments: PaymentsClient) -> None:
        with pytest.raises(PaymentNotFound) as exc_info:
            payments.get_payment_intent("pi_missing")
        assert exc_info.value.status_code == 404
        assert exc_info.value.code == "resource_missing"


class TestPayoutsAndBalances:
    def test_payout_moves_platform_funds_to_connected_account(
        self, payments: PaymentsClient
    ) -> None:
        intent_id = _authorized(payments, 10_000, "order-5")
        payments.capture_payment_intent(intent_id, idempotency_key="order-5-cap")
        owner = payments.create_connected_account(
            name="Ningbo Beilun Precision", idempotency_key="acct-1", metadata={"org_id": "42"}
        )
        with pytest.raises(PaymentInvalidRequest) as exc_info:
            payments.create_payout(destination=owner.id, amount_fen=10_001, idempotency_key="po-0")
        assert exc_info.value.code == "balance_insufficient"

        payout = payments.create_payout(
            destination=owner.id, amount_fen=9_500, idempotency_key="po-1"
        )
        assert (payout.status, payout.amount_fen, payout.destination) == ("paid", 9_500, owner.id)
        assert payments.get_balance().available_fen == 500
        assert payments.get_balance(owner.id).available_fen == 9_500
        assert [p.id for p in payments.list_payouts(destination=owner.id).data] == [payout.id]
        assert payments.get_payout(payout.id) == payout
        assert payments.get_connected_account(owner.id).metadata == {"org_id": "42"}

    def test_pending_funds_settle(self) -> None:
        app = create_stub_app(api_key=API_KEY, webhook_secret=WEBHOOK_SECRET, settle_delay_s=3600)
        with serve_in_thread(app) as url, make_client(url) as payments:
            payments.create_payment_intent(
                amount_fen=700, capture_method="automatic", confirm=True, idempotency_key="s-1"
            )
            balance = payments.get_balance()
            assert (balance.available_fen, balance.pending_fen) == (0, 700)
            httpx.post(url + "/_control/settle").raise_for_status()
            balance = payments.get_balance()
            assert (balance.available_fen, balance.pending_fen) == (700, 0)


class TestListsForReconciliation:
    def test_find_intents_by_metadata_and_idempotency_key(self, payments: PaymentsClient) -> None:
        for i in range(3):
            payments.create_payment_intent(
                amount_fen=100 + i,
                idempotency_key=f"rk-{i}",
                metadata={"order_id": f"o{i % 2}", "kind": "service"},
            )
        page = payments.list_payment_intents(metadata={"order_id": "o0", "kind": "service"})
        assert [pi.amount_fen for pi in page.data] == [100, 102]
        found = payments.find_payment_intent(idempotency_key="rk-1")
        assert found is not None
        assert found.amount_fen == 101
        assert payments.find_payment_intent(idempotency_key="rk-unknown") is None

    def test_events_page_with_after_cursor(self, payments: PaymentsClient) -> None:
        for i in range(5):
            payments.create_customer(idempotency_key=f"ev-{i}", name=f"c{i}")
        first = payments.list_events(limit=2)
        assert len(first.data) == 2
        assert first.has_more
        second = payments.list_events(after=first.next_cursor, limit=2)
        assert [e.data_object["name"] for e in second.data] == ["c2", "c3"]
        names = [e.data_object["name"] for e in payments.iter_events(after=first.next_cursor)]
        assert names == ["c2", "c3", "c4"]
        all_ids = [e.id for e in payments.iter_events()]
        assert len(all_ids) == len(set(all_ids)) == 5
        assert payments.get_event(all_ids[0]).type == "customer.created"
        assert payments.list_events(types=("payout.paid",)).data == ()


class TestReadBack:
    def test_find_refund_and_payout_by_idempotency_key(self, payments: PaymentsClient) -> None:
        intent = payments.create_payment_intent(
            amount_fen=2_000, capture_method="automatic", confirm=True, idempotency_key="rb-1"
        )
        refund = payments.refund(payment_intent=intent.id, amount_fen=500, idempotency_key="rb-re")
        owner = payments.create_connected_account(idempotency_key="rb-acct")
        payout = payments.create_payout(
            destination=owner.id, amount_fen=1_000, idempotency_key="rb-po"
        )
        assert payments.find_refund(idempotency_key="rb-re") == refund
        assert payments.find_refund(idempotency_key="rb-nope") is None
        assert payments.find_payout(idempotency_key="rb-po") == payout
        assert payments.get_refund(refund.id) == refund

    def test_customers_and_webhook_endpoints_can_be_read_back(self, stub: Stub) -> None:
        customer = stub.post("/v1/customers", {"name": "a"}, "rb-c").json()
        assert stub.http.get(f"/v1/customers/{customer['id']}").json() == customer
        assert [c["id"] for c in stub.http.get("/v1/customers").json()["data"]] == [customer["id"]]
        endpoint = stub.post(
            "/v1/webhook_endpoints", {"url": "http://127.0.0.1:9/x"}, "rb-w"
        ).json()
        assert stub.http.get(f"/v1/webhook_endpoints/{endpoint['id']}").json() == endpoint
        assert stub.http.delete(f"/v1/webhook_endpoints/{endpoint['id']}").json()["deleted"] is True
        assert stub.http.get("/v1/webhook_endpoints").json()["data"] == []
        assert stub.http.get(f"/v1/webhook_endpoints/{endpoint['id']}").status_code == 404

    def test_list_pages_with_starting_after(self, payments: PaymentsClient) -> None:
        for i in range(5):
            payments.create_payment_intent(amount_fen=10 + i, idempotency_key=f"pg-{i}")
        first = payments.list_payment_intents(limit=2)
        assert first.has_more
        rest = payments.list_payment_intents(limit=10, starting_after=first.next_cursor)
        assert [pi.amount_fen for pi in first.data + rest.data] == [10, 11, 12, 13, 14]
        assert not rest.has_more
