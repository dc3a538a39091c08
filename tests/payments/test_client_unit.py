"""PaymentsClient against httpx.MockTransport: error mapping, retries, request shape."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import httpx
import pytest
from pydantic import SecretStr

from app.money.provider import (
    PaymentConflict,
    PaymentDeclined,
    PaymentError,
    PaymentInvalidRequest,
    PaymentNotFound,
    PaymentProviderError,
    PaymentsClient,
    build_payments_client,
)

INTENT = {
    "id": "pi_1",
    "object": "payment_intent",
    "amount": 1000,
    "amount_capturable": 1000,
    "amount_received": 0,
    "amount_refunded": 0,
    "currency": "cny",
    "customer": None,
    "capture_method": "manual",
    "payment_method": "pm_card_visa",
    "status": "requires_capture",
    "metadata": {"order_id": "7"},
    "created": 1,
}


def _error(status: int, code: str | None = None, **extra: object) -> httpx.Response:
    return httpx.Response(
        status,
        json={
            "error": {
                "type": "x",
                "message": f"boom {status}",
                "param": None,
                "code": code,
                **extra,
            }
        },
    )


class Script:
    """A MockTransport handler answering from a list of responses / exceptions in turn."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def _client(
    handler: Callable[[httpx.Request], httpx.Response], **kwargs: object
) -> tuple[PaymentsClient, list[float]]:
    sleeps: list[float] = []
    http = httpx.Client(base_url="https://pay.test", transport=httpx.MockTransport(handler))
    options: dict[str, object] = {
        "api_key": "sk_test_unit",
        "max_attempts": 3,
        "sleep": sleeps.append,
    }
    options.update(kwargs)
    return PaymentsClient(http, **options), sleeps  # type: ignore[arg-type]


def _capture(client: PaymentsClient) -> object:
    return client.capture_payment_intent("pi_1", amount_fen=500, idempotency_key="cap-1")


@pytest.mark.parametrize(
    ("response", "exc_type", "status_code"),
    [
        (_error(402, "card_declined", decline_code="stolen_card"), PaymentDeclined, 402),
        (_error(409, "idempotency_key_reused"), PaymentConflict, 409),
        (_error(409, "payment_intent_unexpected_state"), PaymentConflict, 409),
        (_error(400, "amount_too_large"), PaymentInvalidRequest, 400),
        (_error(422, "parameter_invalid"), PaymentInvalidRequest, 422),
        (_error(404, "resource_missing"), PaymentNotFound, 404),
        (_error(401, "invalid_api_key"), PaymentProviderError, 502),
        (_error(403), PaymentProviderError, 502),
    ],
)
def test_4xx_maps_to_error_tree_without_retry(
    response: httpx.Response, exc_type: type[PaymentError], status_code: int
) -> None:
    script = Script(response)
    client, sleeps = _client(script)
    with pytest.raises(exc_type) as exc_info:
        _capture(client)
    error = exc_info.value
    assert isinstance(error, PaymentError)
    assert error.status_code == status_code
    assert error.provider_status == response.status_code
    assert error.message == f"boom {response.status_code}"
    assert len(script.requests) == 1
    assert sleeps == []


def test_declined_exposes_decline_code() -> None:
    client, _ = _client(Script(_error(402, "card_declined", decline_code="stolen_card")))
    with pytest.raises(PaymentDeclined) as exc_info:
        _capture(client)
    assert exc_info.value.decline_code == "stolen_card"
    assert exc_info.value.code == "card_declined"


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500, text="oops"),
        httpx.Response(503, json={"error": {"message": "busy"}}),
        httpx.Response(429, json={"error": {"message": "slow down"}}),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("peer closed connection"),
    ],
)
def test_transient_failures_are_retried_with_the_same_idempotency_key(
    failure: httpx.Response | Exception,
) -> None:
    script = Script(failure, failure, httpx.Response(200, json={**INTENT, "status": "succeeded"}))
    client, sleeps = _client(script)
    intent = client.capture_payment_intent("pi_1", idempotency_key="cap-1")
    assert intent.status == "succeeded"
    assert len(script.requests) == 3
    assert {r.headers["Idempotency-Key"] for r in script.requests} == {"cap-1"}
    assert len(sleeps) == 2
    assert all(0 < s <= 5.2 for s in sleeps)


def test_exhausted_retries_raise_provider_error() -> None:
    script = Script(httpx.Response(502, json={"error": {"message": "bad gateway"}}))
    client, sleeps = _client(script, max_attempts=4)
    with pytest.raises(PaymentProviderError) as exc_info:
        _capture(client)
    assert exc_info.value.status_code == 502
    assert exc_info.value.provider_status == 502
    assert len(script.requests) == 4
    assert len(sleeps) == 3


def test_exhausted_transport_retries_raise_provider_error() -> None:
    client, _ = _client(Script(httpx.ConnectError("refused")))
    with pytest.raises(PaymentProviderError, match="unreachable") as exc_info:
        client.get_balance()
    assert exc_info.value.provider_status is None
    assert isinstance(exc_info.value.__cause__, httpx.ConnectError)


def test_idempotency_key_in_use_is_retried() -> None:
    script = Script(_error(409, "idempotency_key_in_use"), httpx.Response(200, json=INTENT))
    client, sleeps = _client(script)
    assert _capture(client) is not None
    assert len(script.requests) == 2


def test_idempotency_key_in_use_forever_is_a_conflict() -> None:
    client, _ = _client(Script(_error(409, "idempotency_key_in_use")))
    with pytest.raises(PaymentConflict) as exc_info:
        _capture(client)
    assert exc_info.value.code == "idempotency_key_in_use"


def test_backoff_grows_exponentially() -> None:
    client, sleeps = _client(
        Script(httpx.Response(500)), max_attempts=5, backoff_initial_s=0.1, jitter_s=0.0
    )
    with pytest.raises(PaymentProviderError):
        client.get_balance()
    assert sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8])


def test_non_json_success_is_provider_error() -> None:
    client, _ = _client(Script(httpx.Response(200, text="<html>")))
    with pytest.raises(PaymentProviderError, match="non-JSON"):
        client.get_balance()


def test_request_shape() -> None:
    script = Script(httpx.Response(200, json=INTENT))
    client, _ = _client(script, api_key=SecretStr("sk_test_secret"))
    intent = client.create_payment_intent(
        amount_fen=1000, customer="cus_1", metadata={"order_id": "7"}, idempotency_key="k-1"
    )
    request = script.requests[0]
    assert request.method == "POST"
    assert request.url.path == "/v1/payment_intents"
    assert request.headers["Authorization"] == "Bearer sk_test_secret"
    assert request.headers["Idempotency-Key"] == "k-1"
    assert json.loads(request.content) == {
        "amount": 1000,
        "currency": "cny",
        "customer": "cus_1",
        "capture_method": "manual",
        "metadata": {"order_id": "7"},
    }
    assert intent.amount_fen == 1000
    assert intent.metadata == {"order_id": "7"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        intent.status = "canceled"  # type: ignore[misc]


def test_list_filters_are_query_parameters() -> None:
    script = Script(
        httpx.Response(200, json={"object": "list", "data": [INTENT], "has_more": True})
    )
    client, _ = _client(script)
    page = client.list_payment_intents(metadata={"order_id": "7"}, status="succeeded", limit=5)
    params = script.requests[0].url.params
    assert params["metadata[order_id]"] == "7"
    assert params["status"] == "succeeded"
    assert params["limit"] == "5"
    assert page.has_more
    assert page.next_cursor == "pi_1"


@pytest.mark.parametrize("amount", [0, -1, 10.5, True, "100"])
def test_amounts_must_be_positive_integer_fen(amount: object) -> None:
    script = Script(httpx.Response(200, json=INTENT))
    client, _ = _client(script)
    with pytest.raises(ValueError, match="fen"):
        client.create_payment_intent(amount_fen=amount, idempotency_key="k")  # type: ignore[arg-type]
    assert script.requests == []


def test_build_payments_client_sets_base_url_and_timeout() -> None:
    script = Script(
        httpx.Response(
            200,
            json={
                "object": "balance",
                "available": [{"amount": 5, "currency": "cny"}],
                "pending": [],
            },
        )
    )
    with build_payments_client(
        "https://pay.test", "sk_test_b", 3.0, transport=httpx.MockTransport(script)
    ) as client:
        assert client.get_balance().available_fen == 5
    request = script.requests[0]
    assert str(request.url) == "https://pay.test/v1/balance"
    assert request.extensions["timeout"]["read"] == 3.0
    assert request.extensions["timeout"]["connect"] == 3.0


def test_empty_api_key_is_refused() -> None:
    with pytest.raises(ValueError, match="api_key"):
        PaymentsClient(httpx.Client(), api_key="")
