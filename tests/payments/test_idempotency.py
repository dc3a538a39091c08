"""Idempotency-Key semantics of the stub, over real HTTP."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from app.money.provider import PaymentConflict, PaymentsClient
from tests.payments.conftest import Stub, make_client


def test_same_key_same_body_replays_identical_response(stub: Stub) -> None:
    body = {"amount": 1_500, "metadata": {"order_id": "o-1"}}
    first = stub.post("/v1/payment_intents", body, "idem-1")
    second = stub.post(
        "/v1/payment_intents", {"metadata": {"order_id": "o-1"}, "amount": 1_500}, "idem-1"
    )
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    listed = stub.http.get("/v1/payment_intents", params={"idempotency_key": "idem-1"}).json()
    assert len(listed["data"]) == 1


def test_same_key_different_body_is_409(stub: Stub, payments: PaymentsClient) -> None:
    assert stub.post("/v1/payment_intents", {"amount": 1_500}, "idem-2").status_code == 200
    response = stub.post("/v1/payment_intents", {"amount": 1_501}, "idem-2")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "idempotency_key_reused"
    assert error["param"] == "Idempotency-Key"
    assert "different request parameters" in error["message"]
    with pytest.raises(PaymentConflict) as exc_info:
        payments.create_payment_intent(amount_fen=1_502, idempotency_key="idem-2")
    assert exc_info.value.code == "idempotency_key_reused"
    before = stub.requests()
    with pytest.raises(PaymentConflict):
        payments.create_payment_intent(amount_fen=1_502, idempotency_key="idem-2")
    assert stub.requests() == before + 1  # a reused key is final, never retried


def test_same_key_on_another_endpoint_is_409(stub: Stub) -> None:
    assert stub.post("/v1/customers", {}, "idem-3").status_code == 200
    assert stub.post("/v1/accounts", {}, "idem-3").status_code == 409


def test_stored_error_is_replayed_too(stub: Stub, payments: PaymentsClient) -> None:
    intent = payments.create_payment_intent(amount_fen=100, confirm=True, idempotency_key="i-4")
    path = f"/v1/payment_intents/{intent.id}/capture"
    first = stub.post(path, {"amount_to_capture": 101}, "idem-4")
    second = stub.post(path, {"amount_to_capture": 101}, "idem-4")
    assert first.status_code == second.status_code == 400
    assert first.content == second.content


def test_keys_are_scoped_per_request_not_global_across_objects(stub: Stub) -> None:
    a = stub.post("/v1/customers", {"name": "a"}, "idem-5a").json()
    b = stub.post("/v1/customers", {"name": "b"}, "idem-5b").json()
    assert a["id"] != b["id"]


def test_concurrent_same_key_executes_once(stub: Stub) -> None:
    # Hold whichever request runs the operation inside the idempotency layer, so the others
    # overlap with it (requests answered by the idempotency layer never reach the delay).
    stub.faults({"kind": "delay", "when": "during", "delay_ms": 300, "method": "POST", "count": 50})
    barrier = threading.Barrier(8)

    def create(_: int) -> httpx.Response:
        with httpx.Client(base_url=stub.url, headers=dict(stub.http.headers), timeout=5) as http:
            barrier.wait()
            return http.post(
                "/v1/payment_intents", json={"amount": 777}, headers={"Idempotency-Key": "race-1"}
            )

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(create, range(8)))
    ok = [r for r in responses if r.status_code == 200]
    in_use = [r for r in responses if r.status_code == 409]
    assert len(ok) + len(in_use) == 8
    assert len(ok) >= 1
    assert len(in_use) >= 1
    assert {r.json()["error"]["code"] for r in in_use} == {"idempotency_key_in_use"}
    assert len({r.content for r in ok}) == 1
    listed = stub.http.get("/v1/payment_intents", params={"idempotency_key": "race-1"}).json()
    assert len(listed["data"]) == 1


def test_concurrent_clients_with_same_key_all_get_the_one_intent(stub: Stub) -> None:
    stub.faults(
        {"kind": "delay", "when": "during", "delay_ms": 200, "method": "POST", "count": 500}
    )
    barrier = threading.Barrier(6)

    def create(_: int) -> str:
        with make_client(stub.url, max_attempts=20) as client:
            barrier.wait()
            intent = client.create_payment_intent(amount_fen=888, idempotency_key="race-2")
            return intent.id

    with ThreadPoolExecutor(6) as pool:
        ids = set(pool.map(create, range(6)))
    assert len(ids) == 1
    assert stub.stats()["counters"]["idempotency_in_use"] >= 1
    listed = stub.http.get("/v1/payment_intents", params={"idempotency_key": "race-2"}).json()
    assert len(listed["data"]) == 1
