"""The payments provider client and webhook signature check.

Why one file of about 900 lines: it is one wire contract. The typed resources, the error
tree, the retry policy and the signature check change together when the provider's API
does, and are read together; split, one contract would be scattered over five modules.

``PaymentsClient`` wraps an injected ``httpx.Client`` (base URL, timeouts and transport
are the caller's: ``build_payments_client`` for production, ``httpx.MockTransport`` in
unit tests). Its typed methods return frozen dataclasses. Every POST takes an explicit
``idempotency_key``, which the caller persists *before* calling, so a retry — by this
client, or by a job that runs again after a crash — can never move money twice.

Retries (tenacity): connect errors, timeouts, dropped connections, 429 and 5xx are
retried with exponential backoff and jitter, reusing the same idempotency key; a 409
``idempotency_key_in_use`` (the provider is still running our first attempt) is retried
too. Other 4xx are final.

Error tree (each error has ``status_code`` — the status capshare should answer with —
and ``message``; provider errors also carry ``provider_status``, ``code`` and ``param``)::

    PaymentError
     ├── PaymentDeclined          402  card declined
     ├── PaymentConflict          409  idempotency key reused / in use, wrong intent state
     ├── PaymentInvalidRequest    400  provider refused the parameters (400/422)
     │    └── PaymentNotFound     404  no such provider object
     ├── PaymentProviderError     502  5xx after retries, transport failures, bad API key
     └── InvalidWebhookSignature  400  webhook header missing, stale or not matching

``verify_signature`` (stdlib only) checks ``Capshare-Signature: t=<unix>,v1=<hex>`` headers,
where ``v1 = HMAC-SHA256(secret, f"{t}.{body}")``.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Generic, Literal, Protocol, TypeVar

import httpx
import tenacity

from app.config import Settings

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "Capshare-Signature"
CURRENCY = "cny"

CaptureMethod = Literal["manual", "automatic"]

# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class PaymentError(Exception):
    """Base of every payments failure; ``status_code`` is what capshare should answer."""

    status_code: int = 502

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        provider_status: int | None = None,
        code: str | None = None,
        param: str | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.provider_status = provider_status
        self.code = code
        self.param = param
        self.body = dict(body) if body else {}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status_code={self.status_code}, "
            f"provider_status={self.provider_status}, code={self.code!r})"
        )


class PaymentDeclined(PaymentError):
    """The card was declined (provider 402); ``decline_code`` says why."""

    status_code = 402

    @property
    def decline_code(self) -> str | None:
        value = self.body.get("decline_code")
        return str(value) if value is not None else None


class PaymentConflict(PaymentError):
    """Idempotency key reused with other parameters or still in use, or wrong state (409)."""

    status_code = 409


class PaymentInvalidRequest(PaymentError):
    """The provider refused the request's parameters (400/422)."""

    status_code = 400


class PaymentNotFound(PaymentInvalidRequest):
    """The provider has no such object (404)."""

    status_code = 404


class PaymentProviderError(PaymentError):
    """The provider failed (5xx after retries), was unreachable, or refused our API key."""

    status_code = 502


class InvalidWebhookSignature(PaymentError):
    """A webhook's signature header is missing, malformed, stale or does not match."""

    status_code = 400


# --------------------------------------------------------------------------------------------
# Webhook signatures
# --------------------------------------------------------------------------------------------


def compute_signature(payload: bytes, secret: str, timestamp: int) -> str:
    """The hex ``v1`` HMAC-SHA256 of ``f"{timestamp}.{payload}"`` under ``secret``."""
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify_signature(
    payload: bytes,
    header: str | None,
    secret: str,
    tolerance_s: int = 300,
    now: float | None = None,
) -> int:
    """Check a ``Capshare-Signature`` header against the raw request body.

    Accepts the header if any of its ``v1`` signatures matches (providers send several
    while a secret is rotated) and its timestamp is within ``tolerance_s`` of ``now``
    (either direction; this bounds replays). Returns the signed timestamp; raises
    ``InvalidWebhookSignature`` otherwise. Pass the body bytes exactly as received.
    """
    if not header:
        raise InvalidWebhookSignature("Missing webhook signature header.", code="missing")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise InvalidWebhookSignature(
                    "Malformed timestamp in webhook signature header.", code="malformed"
                ) from None
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise InvalidWebhookSignature(
            "Webhook signature header needs t=<unix> and v1=<hex>.", code="malformed"
        )
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise InvalidWebhookSignature(
            f"Webhook timestamp {timestamp} is outside the {tolerance_s}s tolerance.",
            code="stale",
        )
    expected = compute_signature(payload, secret, timestamp)
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise InvalidWebhookSignature("Webhook signature does not match.", code="mismatch")
    return timestamp


# --------------------------------------------------------------------------------------------
# Provider objects
# --------------------------------------------------------------------------------------------


def _metadata(raw: Mapping[str, Any]) -> Mapping[str, str]:
    return {str(k): str(v) for k, v in (raw.get("metadata") or {}).items()}


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    email: str | None
    name: str | None
    metadata: Mapping[str, str]
    created: int

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> Customer:
        return cls(raw["id"], raw.get("email"), raw.get("name"), _metadata(raw), raw["created"])


@dataclass(frozen=True, slots=True)
class PaymentIntent:
    id: str
    status: str
    amount_fen: int
    amount_capturable_fen: int
    amount_received_fen: int
    amount_refunded_fen: int
    currency: str
    customer: str | None
    capture_method: str
    payment_method: str | None
    metadata: Mapping[str, str]
    created: int
    idempotency_key: str | None = None
    canceled_at: int | None = None
    cancellation_reason: str | None = None
    last_error_code: str | None = None

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> PaymentIntent:
        last_error = raw.get("last_payment_error") or {}
        return cls(
            id=raw["id"],
            status=raw["status"],
            amount_fen=raw["amount"],
            amount_capturable_fen=raw.get("amount_capturable", 0),
            amount_received_fen=raw.get("amount_received", 0),
            amount_refunded_fen=raw.get("amount_refunded", 0),
            currency=raw["currency"],
            customer=raw.get("customer"),
            capture_method=raw["capture_method"],
            payment_method=raw.get("payment_method"),
            metadata=_metadata(raw),
            created=raw["created"],
            idempotency_key=raw.get("idempotency_key"),
            canceled_at=raw.get("canceled_at"),
            cancellation_reason=raw.get("cancellation_reason"),
            last_error_code=last_error.get("decline_code") or last_error.get("code"),
        )


@dataclass(frozen=True, slots=True)
class Refund:
    id: str
    payment_intent: str
    amount_fen: int
    currency: str
    status: str
    reason: str | None
    metadata: Mapping[str, str]
    created: int

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> Refund:
        return cls(
            raw["id"],
            raw["payment_intent"],
            raw["amount"],
            raw["currency"],
            raw["status"],
            raw.get("reason"),
            _metadata(raw),
            raw["created"],
        )


@dataclass(frozen=True, slots=True)
class ConnectedAccount:
    id: str
    name: str | None
    email: str | None
    payouts_enabled: bool
    metadata: Mapping[str, str]
    created: int

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> ConnectedAccount:
        return cls(
            raw["id"],
            raw.get("name"),
            raw.get("email"),
            bool(raw.get("payouts_enabled")),
            _metadata(raw),
            raw["created"],
        )


@dataclass(frozen=True, slots=True)
class Payout:
    id: str
    destination: str
    amount_fen: int
    currency: str
    status: str
    metadata: Mapping[str, str]
    created: int

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> Payout:
        return cls(
            raw["id"],
            raw["destination"],
            raw["amount"],
            raw["currency"],
            raw["status"],
            _metadata(raw),
            raw["created"],
        )


@dataclass(frozen=True, slots=True)
class Balance:
    """Available and pending fen of the platform (``account=None``) or a connected account."""

    account: str | None
    available_fen: int
    pending_fen: int
    currency: str = CURRENCY

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> Balance:
        def total(kind: str) -> int:
            return sum(int(e["amount"]) for e in raw.get(kind, []) if e["currency"] == CURRENCY)

        return cls(raw.get("account"), total("available"), total("pending"))


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    type: str
    created: int
    data_object: Mapping[str, Any]
    sequence: int | None = None

    @property
    def object_id(self) -> str | None:
        value = self.data_object.get("id")
        return str(value) if value is not None else None

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> Event:
        return cls(
            raw["id"],
            raw["type"],
            raw["created"],
            (raw.get("data") or {}).get("object") or {},
            raw.get("sequence"),
        )


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    id: str
    url: str
    enabled_events: tuple[str, ...]
    status: str
    secret: str | None

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> WebhookEndpoint:
        return cls(
            raw["id"],
            raw["url"],
            tuple(raw.get("enabled_events") or ()),
            raw["status"],
            raw.get("secret"),
        )


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list; pass ``next_cursor`` as ``starting_after`` / ``after``."""

    data: tuple[T, ...]
    has_more: bool
    next_cursor: str | None = None


def parse_webhook_event(
    payload: bytes,
    header: str | None,
    secret: str,
    tolerance_s: int = 300,
    now: float | None = None,
) -> Event:
    """Verify a webhook's signature, then parse its body into an ``Event``."""
    verify_signature(payload, header, secret, tolerance_s=tolerance_s, now=now)
    try:
        return Event.from_wire(json.loads(payload))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidWebhookSignature(
            "Webhook body is not a valid event.", code="malformed"
        ) from exc


# --------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------


class _SecretLike(Protocol):
    def get_secret_value(self) -> str: ...


class _Retryable(Exception):
    """Internal: an attempt failed in a way that another attempt may fix."""

    def __init__(self, final: PaymentError) -> None:
        super().__init__(final.message)
        self.final = final


_TRANSPORT_RETRYABLE = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class PaymentsClient:
    """Typed, retrying client of the payments provider API (see module docstring)."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        api_key: str | _SecretLike,
        max_attempts: int = 4,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 5.0,
        jitter_s: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._http = http
        self._before_call: Callable[[], None] | None = None
        key = api_key if isinstance(api_key, str) else api_key.get_secret_value()
        if not key:
            raise ValueError("api_key must not be empty")
        self._auth = {"Authorization": f"Bearer {key}"}
        self._retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(max_attempts),
            wait=tenacity.wait_exponential_jitter(
                multiplier=backoff_initial_s, max=backoff_max_s, jitter=jitter_s
            ),
            retry=tenacity.retry_if_exception_type(_Retryable),
            sleep=sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )

    @staticmethod
    def _log_retry(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        logger.warning("payments call failed (attempt %d), retrying: %s", state.attempt_number, exc)

    def before_each_call(self, hook: Callable[[], None]) -> PaymentsClient:
        """This client (the same ``httpx.Client``) calling ``hook`` before each request
        it sends, e.g. to end a session's transaction (``money.driver.outside_transaction``)."""
        bound = copy.copy(self)
        bound._before_call = hook
        return bound

    def close(self) -> None:
        """Close the underlying ``httpx.Client``."""
        self._http.close()

    def __enter__(self) -> PaymentsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- transport ----------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        params: Any = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        if method == "POST" and not idempotency_key:
            raise ValueError("every POST to the payments provider needs an idempotency_key")
        headers = dict(self._auth)
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        body = {k: v for k, v in (json_body or {}).items() if v is not None}
        if self._before_call is not None:
            self._before_call()

        def attempt() -> dict[str, Any]:
            try:
                response = self._http.request(
                    method,
                    path,
                    json=body if method == "POST" else None,
                    params=params,
                    headers=headers,
                )
            except _TRANSPORT_RETRYABLE as exc:
                raise _Retryable(
                    PaymentProviderError(
                        f"Payments provider unreachable ({type(exc).__name__}: {exc}).",
                    )
                ) from exc
            except httpx.HTTPError as exc:
                raise PaymentProviderError(
                    f"Payments provider request failed ({type(exc).__name__}: {exc})."
                ) from exc
            return self._handle(response)

        try:
            result: dict[str, Any] = self._retrying.copy()(attempt)
        except _Retryable as exc:
            raise exc.final from exc.__cause__
        return result

    def _handle(self, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if 200 <= status < 300:
            if not isinstance(payload, dict):
                raise PaymentProviderError(
                    f"Payments provider sent a non-JSON {status} answer.", provider_status=status
                )
            return payload
        error = payload.get("error") if isinstance(payload, dict) else None
        error = error if isinstance(error, dict) else {}
        message = str(error.get("message") or f"Payments provider answered HTTP {status}.")
        kwargs: dict[str, Any] = {
            "provider_status": status,
            "code": error.get("code"),
            "param": error.get("param"),
            "body": error,
        }
        if status >= 500 or status == 429:
            raise _Retryable(PaymentProviderError(message, **kwargs))
        if status == 402:
            raise PaymentDeclined(message, **kwargs)
        if status == 409:
            if error.get("code") == "idempotency_key_in_use":
                raise _Retryable(PaymentConflict(message, **kwargs))
            raise PaymentConflict(message, **kwargs)
        if status == 404:
            raise PaymentNotFound(message, **kwargs)
        if status in (400, 422):
            raise PaymentInvalidRequest(message, status_code=status, **kwargs)
        # 401/403 (our key is wrong) and anything unexpected: the integration is broken.
        raise PaymentProviderError(message, **kwargs)

    @staticmethod
    def _page(raw: Mapping[str, Any], parse: Callable[[Mapping[str, Any]], T]) -> Page[T]:
        data = tuple(parse(item) for item in raw.get("data", []))
        cursor = raw.get("next_cursor")
        if cursor is None and data:
            cursor = getattr(data[-1], "id", None)
        return Page(data=data, has_more=bool(raw.get("has_more")), next_cursor=cursor)

    # -- customers ------------------------------------------------------------------------------

    def create_customer(
        self,
        *,
        idempotency_key: str,
        email: str | None = None,
        name: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Customer:
        raw = self._request(
            "POST",
            "/v1/customers",
            json_body={"email": email, "name": name, "metadata": dict(metadata or {})},
            idempotency_key=idempotency_key,
        )
        return Customer.from_wire(raw)

    def get_customer(self, customer_id: str) -> Customer:
        return Customer.from_wire(self._request("GET", f"/v1/customers/{customer_id}"))

    # -- payment intents ----------------------------------------------------------------------

    def create_payment_intent(
        self,
        *,
        amount_fen: int,
        idempotency_key: str,
        customer: str | None = None,
        capture_method: CaptureMethod = "manual",
        payment_method: str | None = None,
        confirm: bool = False,
        description: str | None = None,
        metadata: Mapping[str, str] | None = None,
        currency: str = CURRENCY,
    ) -> PaymentIntent:
        _check_fen(amount_fen, "amount_fen")
        raw = self._request(
            "POST",
            "/v1/payment_intents",
            json_body={
                "amount": amount_fen,
                "currency": currency,
                "customer": customer,
                "capture_method": capture_method,
                "payment_method": payment_method,
                "confirm": confirm or None,
                "description": description,
                "metadata": dict(metadata or {}),
            },
            idempotency_key=idempotency_key,
        )
        return PaymentIntent.from_wire(raw)

    def confirm_payment_intent(
        self, intent_id: str, *, idempotency_key: str, payment_method: str | None = None
    ) -> PaymentIntent:
        """Authorize: a manual-capture intent puts a hold; an automatic one is charged."""
        raw = self._request(
            "POST",
            f"/v1/payment_intents/{intent_id}/confirm",
            json_body={"payment_method": payment_method},
            idempotency_key=idempotency_key,
        )
        return PaymentIntent.from_wire(raw)

    authorize_payment_intent = confirm_payment_intent
    authorize = confirm_payment_intent

    def capture_payment_intent(
        self, intent_id: str, *, idempotency_key: str, amount_fen: int | None = None
    ) -> PaymentIntent:
        """Capture the hold, in full or (``amount_fen``) in part; the rest is released."""
        if amount_fen is not None:
            _check_fen(amount_fen, "amount_fen")
        raw = self._request(
            "POST",
            f"/v1/payment_intents/{intent_id}/capture",
            json_body={"amount_to_capture": amount_fen},
            idempotency_key=idempotency_key,
        )
        return PaymentIntent.from_wire(raw)

    def cancel_payment_intent(
        self, intent_id: str, *, idempotency_key: str, reason: str | None = None
    ) -> PaymentIntent:
        """Void a hold (or abandon an unconfirmed intent)."""
        raw = self._request(
            "POST",
            f"/v1/payment_intents/{intent_id}/cancel",
            json_body={"cancellation_reason": reason},
            idempotency_key=idempotency_key,
        )
        return PaymentIntent.from_wire(raw)

    capture = capture_payment_intent
    cancel = cancel_payment_intent

    def get_payment_intent(self, intent_id: str) -> PaymentIntent:
        return PaymentIntent.from_wire(self._request("GET", f"/v1/payment_intents/{intent_id}"))

    def list_payment_intents(
        self,
        *,
        customer: str | None = None,
        status: str | None = None,
        idempotency_key: str | None = None,
        metadata: Mapping[str, str] | None = None,
        limit: int = 100,
        starting_after: str | None = None,
    ) -> Page[PaymentIntent]:
        params: list[tuple[str, str | int]] = [("limit", limit)]
        for name, value in (
            ("customer", customer),
            ("status", status),
            ("idempotency_key", idempotency_key),
            ("starting_after", starting_after),
        ):
            if value is not None:
                params.append((name, value))
        params.extend((f"metadata[{k}]", v) for k, v in (metadata or {}).items())
        raw = self._request("GET", "/v1/payment_intents", params=params)
        return self._page(raw, PaymentIntent.from_wire)

    def find_payment_intent(self, *, idempotency_key: str) -> PaymentIntent | None:
        """The intent a create call with this key made, if the provider has it (reconciler)."""
        page = self.list_payment_intents(idempotency_key=idempotency_key, limit=1)
        return page.data[0] if page.data else None

    # -- refunds ------------------------------------------------------------------------------

    def create_refund(
        self,
        *,
        payment_intent: str,
        idempotency_key: str,
        amount_fen: int | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Refund:
        """Refund captured money, in full (``amount_fen=None``) or in part."""
        if amount_fen is not None:
            _check_fen(amount_fen, "amount_fen")
        raw = self._request(
            "POST",
            "/v1/refunds",
            json_body={
                "payment_intent": payment_intent,
                "amount": amount_fen,
                "reason": reason,
                "metadata": dict(metadata or {}),
            },
            idempotency_key=idempotency_key,
        )
        return Refund.from_wire(raw)

    refund = create_refund

    def get_refund(self, refund_id: str) -> Refund:
        return Refund.from_wire(self._request("GET", f"/v1/refunds/{refund_id}"))

    def list_refunds(
        self,
        *,
        payment_intent: str | None = None,
        idempotency_key: str | None = None,
        limit: int = 100,
        starting_after: str | None = None,
    ) -> Page[Refund]:
        params = _params(
            limit=limit,
            payment_intent=payment_intent,
            idempotency_key=idempotency_key,
            starting_after=starting_after,
        )
        return self._page(self._request("GET", "/v1/refunds", params=params), Refund.from_wire)

    def find_refund(self, *, idempotency_key: str) -> Refund | None:
        """The refund a create call with this key made, if the provider has it (reconciler)."""
        page = self.list_refunds(idempotency_key=idempotency_key, limit=1)
        return page.data[0] if page.data else None

    # -- connected accounts, payouts, balances --------------------------------------------------

    def create_connected_account(
        self,
        *,
        idempotency_key: str,
        name: str | None = None,
        email: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ConnectedAccount:
        raw = self._request(
            "POST",
            "/v1/accounts",
            json_body={"name": name, "email": email, "metadata": dict(metadata or {})},
            idempotency_key=idempotency_key,
        )
        return ConnectedAccount.from_wire(raw)

    def get_connected_account(self, account_id: str) -> ConnectedAccount:
        return ConnectedAccount.from_wire(self._request("GET", f"/v1/accounts/{account_id}"))

    def create_payout(
        self,
        *,
        destination: str,
        amount_fen: int,
        idempotency_key: str,
        description: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Payout:
        """Pay ``amount_fen`` from the platform's available balance to a connected account."""
        _check_fen(amount_fen, "amount_fen")
        raw = self._request(
            "POST",
            "/v1/payouts",
            json_body={
                "destination": destination,
                "amount": amount_fen,
                "currency": CURRENCY,
                "description": description,
                "metadata": dict(metadata or {}),
            },
            idempotency_key=idempotency_key,
        )
        return Payout.from_wire(raw)

    def get_payout(self, payout_id: str) -> Payout:
        return Payout.from_wire(self._request("GET", f"/v1/payouts/{payout_id}"))

    def list_payouts(
        self,
        *,
        destination: str | None = None,
        idempotency_key: str | None = None,
        limit: int = 100,
        starting_after: str | None = None,
    ) -> Page[Payout]:
        params = _params(
            limit=limit,
            destination=destination,
            idempotency_key=idempotency_key,
            starting_after=starting_after,
        )
        return self._page(self._request("GET", "/v1/payouts", params=params), Payout.from_wire)

    def find_payout(self, *, idempotency_key: str) -> Payout | None:
        """The payout a create call with this key made, if the provider has it (reconciler)."""
        page = self.list_payouts(idempotency_key=idempotency_key, limit=1)
        return page.data[0] if page.data else None

    def get_balance(self, account: str | None = None) -> Balance:
        """The platform balance, or a connected account's with ``account``."""
        path = "/v1/balance" if account is None else f"/v1/accounts/{account}/balance"
        return Balance.from_wire(self._request("GET", path))

    # -- events and webhook endpoints ---------------------------------------------------------

    def list_events(
        self, *, after: str | None = None, types: tuple[str, ...] = (), limit: int = 100
    ) -> Page[Event]:
        """Events oldest first, strictly after the event id ``after`` (a reconciler's cursor)."""
        params: list[tuple[str, str | int]] = [("limit", limit)]
        if after is not None:
            params.append(("after", after))
        params.extend(("type", t) for t in types)
        return self._page(self._request("GET", "/v1/events", params=params), Event.from_wire)

    def iter_events(
        self, *, after: str | None = None, types: tuple[str, ...] = ()
    ) -> Iterator[Event]:
        """Every event after ``after``, following pages until the log is exhausted."""
        cursor = after
        while True:
            page = self.list_events(after=cursor, types=types)
            yield from page.data
            if not page.has_more or page.next_cursor is None:
                return
            cursor = page.next_cursor

    def get_event(self, event_id: str) -> Event:
        return Event.from_wire(self._request("GET", f"/v1/events/{event_id}"))

    def create_webhook_endpoint(
        self,
        *,
        url: str,
        idempotency_key: str,
        enabled_events: tuple[str, ...] = ("*",),
        secret: str | None = None,
    ) -> WebhookEndpoint:
        raw = self._request(
            "POST",
            "/v1/webhook_endpoints",
            json_body={"url": url, "enabled_events": list(enabled_events), "secret": secret},
            idempotency_key=idempotency_key,
        )
        return WebhookEndpoint.from_wire(raw)


def _check_fen(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer number of fen, got {value!r}")


def _params(*, limit: int, **filters: str | None) -> list[tuple[str, str | int]]:
    params: list[tuple[str, str | int]] = [("limit", limit)]
    params.extend((k, v) for k, v in filters.items() if v is not None)
    return params


def build_payments_client(
    base_url: str,
    api_key: str | _SecretLike,
    timeout_s: float = 10.0,
    *,
    max_attempts: int = 4,
    transport: httpx.BaseTransport | None = None,
) -> PaymentsClient:
    """A ``PaymentsClient`` over a fresh ``httpx.Client`` (close it with ``client.close()``)."""
    http = httpx.Client(
        base_url=base_url,
        timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
        headers={"User-Agent": "capshare-payments/0.1"},
        transport=transport,
    )
    return PaymentsClient(http, api_key=api_key, max_attempts=max_attempts)


# --------------------------------------------------------------------------------------------
# The provider client
# --------------------------------------------------------------------------------------------


@lru_cache
def _client_for(base_url: str, api_key: str, timeout_s: float) -> PaymentsClient:
    return build_payments_client(base_url, api_key, timeout_s)


def get_payments_client(settings: Settings) -> PaymentsClient | None:
    """The shared client, or None when payments are left to the reconciler."""
    if not settings.payments_inline:
        return None
    return _client_for(
        settings.payments_base_url,
        settings.payments_api_key.get_secret_value(),
        settings.payments_timeout_s,
    )
