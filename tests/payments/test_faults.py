"""Client retries against injected provider faults: nothing is ever charged twice."""

from __future__ import annotations

import httpx
import pytest

from app.money.provider import PaymentInvalidRequest, PaymentProviderError, PaymentsClient
from tests.payments.conftest import Stub, make_client


def _intents_with_key(stub: Stub, key: str) -> list[dict[str, object]]:
    response = stub.http.get("/v1/payment_intents", params={"idempotency_key": key})
    return list(response.json()["data"])


def test_two_500s_then_success_creates_exactly_once(stub: Stub, payments: PaymentsClient) -> None:
    stub.faults({"kind": "error", "count": 2, "path_prefix": "/v1/payment_intents"})
    intent = payments.create_payment_intent(amount_fen=1_200, idempotency_key="f-1")
    assert intent.amount_fen == 1_200
    assert len(_intents_with_key(stub, "f-1")) == 1
    stats = stub.stats()
    assert stats["faults_injected"] == {"error": 2}
    assert stats["counters"]["requests"] == 3 + 1  # three attempts, then the list above


def test_retries_exhausted_is_provider_error(stub: Stub) -> None:
    stub.faults({"kind": "error", "count": 10, "status": 503})
    with make_client(stub.url, max_attempts=3) as client:
        with pytest.raises(PaymentProviderError) as exc_info:
            client.create_customer(idempotency_key="f-2")
    assert exc_info.value.status_code == 502
    assert exc_info.value.provider_status == 503
    assert stub.injected("error") == 3
    stub.http.delete("/_control/faults")
    assert stub.stats()["objects"]["customer"] == 0


def test_timeout_then_retry_with_same_key_does_not_double_charge(stub: Stub) -> None:
    with make_client(stub.url) as setup:
        intent = setup.create_payment_intent(amount_fen=5_000, confirm=True, idempotency_key="t-1")
    # The first capture is applied but answered after the client's 0.3 s timeout.
    stub.faults(
        {"kind": "delay", "when": "after", "delay_ms": 800, "path_prefix": "/v1/payment_intents/"}
    )
    with make_client(stub.url, timeout_s=0.3) as client:
        captured = client.capture_payment_intent(intent.id, idempotency_key="t-1-cap")
        assert captured.status == "succeeded"
        assert captured.amount_received_fen == 5_000
        assert client.get_balance().available_fen == 5_000
    assert stub.injected("delay") == 1
    assert stub.stats()["counters"]["idempotent_replays"] == 1


def test_timeout_before_apply_then_retry_executes_once(stub: Stub) -> None:
    # The first attempt sleeps before reaching the API and is applied after the client has
    # given up and retried; the late arrival must find the retry's stored answer.
    stub.faults({"kind": "delay", "when": "before", "delay_ms": 600, "method": "POST"})
    with make_client(stub.url, timeout_s=0.3) as client:
        intent = client.create_payment_intent(amount_fen=3_000, idempotency_key="t-2")
    assert stub.injected("delay") == 1
    # Wait (server-side, no polling) until the delayed first attempt has been processed.
    idle = stub.http.post("/_control/requests/wait_idle", params={"timeout_s": 5})
    assert idle.json()["idle"] is True
    assert len(_intents_with_key(stub, "t-2")) == 1
    assert _intents_with_key(stub, "t-2")[0]["id"] == intent.id
    assert stub.stats()["counters"]["idempotent_replays"] == 1  # the late first attempt


@pytest.mark.parametrize("mode", ["response", "close"])
def test_fail_after_apply_retry_returns_stored_result(
    stub: Stub, payments: PaymentsClient, mode: str
) -> None:
    intent = payments.create_payment_intent(amount_fen=4_000, confirm=True, idempotency_key="a-1")
    stub.faults({"kind": "error_after_apply", "mode": mode, "path_prefix": "/v1/payment_intents/"})
    captured = payments.capture_payment_intent(intent.id, amount_fen=2_500, idempotency_key="a-cap")
    assert captured.amount_received_fen == 2_500
    assert payments.get_balance().available_fen == 2_500
    succeeded = [e for e in payments.list_events().data if e.type == "payment_intent.succeeded"]
    assert len(succeeded) == 1
    assert stub.injected("error_after_apply") == 1


def test_fail_after_apply_raw_shows_the_effect_happened(stub: Stub) -> None:
    stub.faults({"kind": "error_after_apply", "path_prefix": "/v1/customers"})
    lost = stub.post("/v1/customers", {"name": "x"}, "raw-1")
    assert lost.status_code == 500
    assert lost.json()["error"]["code"] == "injected_fault"
    assert stub.stats()["objects"]["customer"] == 1
    replay = stub.post("/v1/customers", {"name": "x"}, "raw-1")
    assert replay.status_code == 200
    assert replay.headers["idempotent-replayed"] == "true"


def test_close_mode_drops_the_connection(stub: Stub) -> None:
    stub.faults({"kind": "error", "mode": "close"})
    with pytest.raises(httpx.RemoteProtocolError):
        stub.http.get("/v1/balance")
    assert stub.http.get("/v1/balance").status_code == 200


def test_path_prefix_and_method_scope_faults(stub: Stub, payments: PaymentsClient) -> None:
    stub.faults({"kind": "error", "count": 5, "path_prefix": "/v1/refunds", "method": "POST"})
    payments.create_customer(idempotency_key="p-1")
    assert payments.list_refunds().data == ()
    assert stub.injected("error") == 0
    assert stub.stats()["pending_rules"][0]["remaining"] == 5


def test_4xx_is_not_retried(stub: Stub, payments: PaymentsClient) -> None:
    intent = payments.create_payment_intent(amount_fen=10, confirm=True, idempotency_key="n-1")
    before = stub.requests()
    with pytest.raises(PaymentInvalidRequest, match="capturable"):
        payments.capture_payment_intent(intent.id, amount_fen=11, idempotency_key="n-1-cap")
    assert stub.requests() == before + 1


def test_reset_clears_faults_and_stats(stub: Stub) -> None:
    stub.faults({"kind": "error", "count": 3}, chaos={"seed": 1, "error_rate": 0.5})
    assert stub.http.get("/v1/balance").status_code == 500
    stub.http.post("/_control/reset").raise_for_status()
    stats = stub.stats()
    assert stats["faults_injected"] == {}
    assert stats["pending_rules"] == []
    assert stats["chaos"] is None
    assert stub.http.get("/v1/balance").status_code == 200


def test_chaos_run_settles_every_payment_exactly_once(stub: Stub) -> None:
    stub.faults(
        chaos={
            "seed": 20260501,
            "method": "POST",
            "error_rate": 0.2,
            "error_after_apply_rate": 0.2,
            "mode": "response",
        }
    )
    total = 0
    with make_client(stub.url, max_attempts=12) as client:
        for i in range(12):
            amount = 1_000 + i
            intent = client.create_payment_intent(
                amount_fen=amount, idempotency_key=f"c-{i}", metadata={"run": "chaos"}
            )
            client.authorize_payment_intent(intent.id, idempotency_key=f"c-{i}-auth")
            client.capture_payment_intent(intent.id, idempotency_key=f"c-{i}-cap")
            total += amount
        stats = stub.stats()
        stub.http.delete("/_control/faults")
        intents = client.list_payment_intents(metadata={"run": "chaos"}).data
        assert len(intents) == 12
        assert all(pi.status == "succeeded" for pi in intents)
        assert client.get_balance().available_fen == total
        succeeded = list(client.iter_events(types=("payment_intent.succeeded",)))
        assert len(succeeded) == 12
    assert stats["faults_injected"]["chaos"] >= 5
    assert stats["faults_injected"]["error"] >= 1
    assert stats["faults_injected"]["error_after_apply"] >= 1
