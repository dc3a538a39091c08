"""The stub provider's HTTP API (``/v1``) and its test-only control API (``/_control``).

Why one file of about 800 lines: it is the stub's whole route table, one short handler
per provider endpoint, kept in one place like the API reference it mirrors; the state,
idempotency, faults and webhooks it uses live in their own modules.

All amounts are integer fen in currency ``"cny"``; JSON floats are refused. Every ``/v1``
call needs ``Authorization: Bearer <api_key>``; every ``/v1`` POST needs an
``Idempotency-Key`` header (see ``middleware.IdempotencyMiddleware``). Errors are
``{"error": {"type", "message", "param", "code"}}`` with a 4xx/5xx status. Lists are
``{"object": "list", "data": [...], "has_more": bool}`` in creation order (oldest
first), paged with ``limit`` (1-100, default 10) and ``starting_after=<id>``.

Resources
---------
=======  ===========================================  =========================================
POST     /v1/customers                                 create a customer
GET      /v1/customers, /v1/customers/{id}
POST     /v1/payment_intents                           create (``confirm: true`` also authorizes)
GET      /v1/payment_intents                           filters: customer, status, idempotency_key,
                                                       ``metadata[key]=value`` (repeatable)
GET      /v1/payment_intents/{id}
POST     /v1/payment_intents/{id}/confirm              authorize: hold (manual) / charge (auto)
POST     /v1/payment_intents/{id}/capture              ``amount_to_capture`` ≤ held; rest released
POST     /v1/payment_intents/{id}/cancel               void a hold / abandon an unconfirmed intent
POST     /v1/refunds                                   refund captured money, full or partial
GET      /v1/refunds?payment_intent=&idempotency_key=, /v1/refunds/{id}
POST     /v1/accounts                                  create a connected account (a payee)
GET      /v1/accounts, /v1/accounts/{id}, /v1/accounts/{id}/balance
POST     /v1/payouts                                   platform available balance → account
GET      /v1/payouts?destination=&idempotency_key=, /v1/payouts/{id}
GET      /v1/balance                                   platform available / pending
GET      /v1/events?after=<evt id>&type=&limit=        event log, oldest first, ``next_cursor``
GET      /v1/events/{id}
POST     /v1/webhook_endpoints                         ``{url, enabled_events?, secret?}``
GET      /v1/webhook_endpoints, /v1/webhook_endpoints/{id}
DELETE   /v1/webhook_endpoints/{id}
=======  ===========================================  =========================================

Payment intent states: ``requires_confirmation`` → (confirm) → ``requires_capture`` (manual)
or ``succeeded`` (automatic) → (capture) → ``succeeded``; ``canceled`` from any state before
``succeeded``; a declined card (``payment_method`` ``pm_card_declined`` or
``pm_card_insufficient_funds``) answers 402 ``card_error`` and leaves the intent in
``requires_payment_method`` (confirm again with another payment method). A forbidden
transition is 409 ``payment_intent_unexpected_state``; over-capture and over-refund are
400 ``amount_too_large``; an unknown id is 404 ``resource_missing``.

Events: ``customer.created``, ``payment_intent.created``,
``payment_intent.amount_capturable_updated`` (authorized), ``payment_intent.succeeded``
(captured), ``payment_intent.payment_failed``, ``payment_intent.canceled``,
``refund.created``, ``account.created``, ``payout.created``, ``payout.paid``.

Control API (tests and local development; disabled with ``enable_control=False``)
-------------------------------------------------------------------------------
``GET /_control/health``; ``POST /_control/faults`` (plan, see ``faults.py``);
``DELETE /_control/faults``; ``GET /_control/stats``; ``POST /_control/reset``;
``POST /_control/settle`` (pending → available); ``POST /_control/balance``
(``{"amount": n}`` adds test funds to the platform's available balance);
``GET /_control/webhook_deliveries``; ``POST /_control/webhooks/flush``;
``POST /_control/webhooks/wait_idle?timeout_s=``;
``POST /_control/requests/wait_idle?timeout_s=`` (until no ``/v1`` request is in flight).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from payments_stub.faults import FaultPlan, Faults
from payments_stub.middleware import (
    AuthMiddleware,
    DelayDuringMiddleware,
    FaultMiddleware,
    IdempotencyMiddleware,
)
from payments_stub.store import JSON, Store, StubError, public
from payments_stub.webhooks import WebhookDispatcher

Fen = Annotated[int, Field(strict=True, ge=1, le=10**13)]
Metadata = Annotated[dict[str, Annotated[str, Field(max_length=500)]], Field(max_length=50)]
Limit = Annotated[int, Query(ge=1, le=100)]
DECLINING_METHODS = {
    "pm_card_declined": "generic_decline",
    "pm_card_insufficient_funds": "insufficient_funds",
}


@dataclass(frozen=True)
class StubConfig:
    api_key: str
    webhook_secret: str
    webhook_urls: tuple[str, ...] = ()
    settle_delay_s: float = 0.0
    webhook_max_attempts: int = 6
    webhook_backoff_base_s: float = 1.0
    webhook_backoff_max_s: float = 60.0
    webhook_timeout_s: float = 5.0
    require_idempotency_key: bool = True
    enable_control: bool = True


@dataclass
class StubState:
    """What ``app.state.stub`` holds, for in-process inspection."""

    config: StubConfig
    store: Store
    faults: Faults
    dispatcher: WebhookDispatcher
    configured_endpoint_ids: list[str] = field(default_factory=list)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CustomerCreate(_Body):
    email: str | None = Field(default=None, max_length=254)
    name: str | None = Field(default=None, max_length=200)
    metadata: Metadata = Field(default_factory=dict)


class PaymentIntentCreate(_Body):
    amount: Fen
    currency: Literal["cny"] = "cny"
    customer: str | None = None
    capture_method: Literal["manual", "automatic"] = "manual"
    payment_method: str = "pm_card_visa"
    confirm: bool = False
    description: str | None = Field(default=None, max_length=1000)
    metadata: Metadata = Field(default_factory=dict)


class PaymentIntentConfirm(_Body):
    payment_method: str | None = None


class PaymentIntentCapture(_Body):
    amount_to_capture: Fen | None = None


class PaymentIntentCancel(_Body):
    cancellation_reason: (
        Literal["duplicate", "fraudulent", "requested_by_customer", "abandoned"] | None
    ) = None


class RefundCreate(_Body):
    payment_intent: str
    amount: Fen | None = None
    reason: Literal["duplicate", "fraudulent", "requested_by_customer"] | None = None
    metadata: Metadata = Field(default_factory=dict)


class AccountCreate(_Body):
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=254)
    metadata: Metadata = Field(default_factory=dict)


class PayoutCreate(_Body):
    amount: Fen
    currency: Literal["cny"] = "cny"
    destination: str
    description: str | None = Field(default=None, max_length=1000)
    metadata: Metadata = Field(default_factory=dict)


class WebhookEndpointCreate(_Body):
    url: str = Field(min_length=8, max_length=2048, pattern=r"^https?://")
    enabled_events: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    secret: str | None = Field(default=None, min_length=8)
    description: str | None = None


class BalanceTopUp(_Body):
    amount: Annotated[int, Field(strict=True)]


def _now() -> int:
    return int(time.time())


def _unexpected_state(obj: JSON, action: str) -> StubError:
    return StubError(
        409,
        f"You cannot {action} this PaymentIntent because it has a status of {obj['status']}.",
        code="payment_intent_unexpected_state",
        extra={"payment_intent": public(obj)},
    )


def _metadata_filter(request: Request) -> dict[str, str]:
    wanted: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key.startswith("metadata[") and key.endswith("]"):
            wanted[key[len("metadata[") : -1]] = value
    return wanted


def _build_v1(state: StubState) -> APIRouter:
    store = state.store
    router = APIRouter(prefix="/v1")

    def idem_key(request: Request) -> str | None:
        return request.headers.get("idempotency-key")

    # -- customers --------------------------------------------------------------------------

    @router.post("/customers")
    def create_customer(body: CustomerCreate, request: Request) -> JSON:
        with store.lock:
            customer = store.insert(
                "customer",
                {
                    "id": store.new_id("cus"),
                    "object": "customer",
                    "email": body.email,
                    "name": body.name,
                    "metadata": body.metadata,
                    "created": _now(),
                    "idempotency_key": idem_key(request),
                },
            )
            store.emit("customer.created", customer)
            return public(customer)

    @router.get("/customers/{customer_id}")
    def get_customer(customer_id: str) -> JSON:
        return public(store.get("customer", customer_id))

    @router.get("/customers")
    def list_customers(limit: Limit = 10, starting_after: str | None = None) -> JSON:
        return store.list_page("customer", limit=limit, starting_after=starting_after)

    # -- payment intents ----------------------------------------------------------------------

    def confirm(intent: JSON, payment_method: str | None) -> None:
        if intent["status"] not in ("requires_confirmation", "requires_payment_method"):
            raise _unexpected_state(intent, "confirm")
        if payment_method is not None:
            intent["payment_method"] = payment_method
        decline_code = DECLINING_METHODS.get(intent["payment_method"])
        if decline_code is not None:
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": decline_code,
                "message": "Your card was declined.",
            }
            store.emit("payment_intent.payment_failed", intent)
            raise StubError(
                402,
                "Your card was declined.",
                type="card_error",
                code="card_declined",
                param="payment_method",
                extra={"decline_code": decline_code, "payment_intent": public(intent)},
            )
        intent["last_payment_error"] = None
        if intent["capture_method"] == "manual":
            intent["status"] = "requires_capture"
            intent["amount_capturable"] = intent["amount"]
            store.emit("payment_intent.amount_capturable_updated", intent)
        else:
            intent["status"] = "succeeded"
            intent["amount_received"] = intent["amount"]
            store.credit_platform(intent["amount"])
            store.emit("payment_intent.succeeded", intent)

    @router.post("/payment_intents")
    def create_payment_intent(body: PaymentIntentCreate, request: Request) -> JSON:
        with store.lock:
            if body.customer is not None:
                store.get("customer", body.customer, param="customer")
            intent = store.insert(
                "payment_intent",
                {
                    "id": store.new_id("pi"),
                    "object": "payment_intent",
                    "amount": body.amount,
                    "amount_capturable": 0,
                    "amount_received": 0,
                    "amount_refunded": 0,
                    "currency": body.currency,
                    "customer": body.customer,
                    "capture_method": body.capture_method,
                    "payment_method": body.payment_method,
                    "status": "requires_confirmation",
                    "description": body.description,
                    "metadata": body.metadata,
                    "last_payment_error": None,
                    "canceled_at": None,
                    "cancellation_reason": None,
                    "created": _now(),
                    "idempotency_key": idem_key(request),
                },
            )
            store.emit("payment_intent.created", intent)
            if body.confirm:
                confirm(intent, None)
            return public(intent)

    @router.get("/payment_intents/{intent_id}")
    def get_payment_intent(intent_id: str) -> JSON:
        return public(store.get("payment_intent", intent_id))

    @router.get("/payment_intents")
    def list_payment_intents(
        request: Request,
        limit: Limit = 10,
        starting_after: str | None = None,
        customer: str | None = None,
        status: str | None = None,
        idempotency_key: str | None = None,
    ) -> JSON:
        metadata = _metadata_filter(request)

        def keep(pi: JSON) -> bool:
            return (
                (customer is None or pi["customer"] == customer)
                and (status is None or pi["status"] == status)
                and (idempotency_key is None or pi["idempotency_key"] == idempotency_key)
                and all(pi["metadata"].get(k) == v for k, v in metadata.items())
            )

        return store.list_page(
            "payment_intent", predicate=keep, limit=limit, starting_after=starting_after
        )

    @router.post("/payment_intents/{intent_id}/confirm")
    def confirm_payment_intent(
        intent_id: str, body: Annotated[PaymentIntentConfirm | None, Body()] = None
    ) -> JSON:
        with store.lock:
            intent = store.get("payment_intent", intent_id)
            confirm(intent, body.payment_method if body else None)
            return public(intent)

    @router.post("/payment_intents/{intent_id}/capture")
    def capture_payment_intent(
        intent_id: str, body: Annotated[PaymentIntentCapture | None, Body()] = None
    ) -> JSON:
        with store.lock:
            intent = store.get("payment_intent", intent_id)
            if intent["status"] != "requires_capture":
                raise _unexpected_state(intent, "capture")
            amount = body.amount_to_capture if body and body.amount_to_capture else None
            capturable = intent["amount_capturable"]
            if amount is None:
                amount = capturable
            if amount > capturable:
                raise StubError(
                    400,
                    f"amount_to_capture ({amount}) is greater than the amount capturable "
                    f"({capturable}).",
                    param="amount_to_capture",
                    code="amount_too_large",
                )
            intent["amount_received"] = amount
            intent["amount_capturable"] = 0
            intent["status"] = "succeeded"
            store.credit_platform(amount)
            store.emit("payment_intent.succeeded", intent)
            return public(intent)

    @router.post("/payment_intents/{intent_id}/cancel")
    def cancel_payment_intent(
        intent_id: str, body: Annotated[PaymentIntentCancel | None, Body()] = None
    ) -> JSON:
        with store.lock:
            intent = store.get("payment_intent", intent_id)
            if intent["status"] not in (
                "requires_payment_method",
                "requires_confirmation",
                "requires_capture",
            ):
                raise _unexpected_state(intent, "cancel")
            intent["status"] = "canceled"
            intent["amount_capturable"] = 0
            intent["canceled_at"] = _now()
            intent["cancellation_reason"] = body.cancellation_reason if body else None
            store.emit("payment_intent.canceled", intent)
            return public(intent)

    # -- refunds ----------------------------------------------------------------------------

    @router.post("/refunds")
    def create_refund(body: RefundCreate, request: Request) -> JSON:
        with store.lock:
            intent = store.get("payment_intent", body.payment_intent, param="payment_intent")
            if intent["status"] != "succeeded":
                raise StubError(
                    409,
                    "Only captured money can be refunded; this PaymentIntent has a status of "
                    f"{intent['status']}.",
                    param="payment_intent",
                    code="payment_intent_unexpected_state",
                )
            refundable = intent["amount_received"] - intent["amount_refunded"]
            if refundable <= 0:
                raise StubError(
                    400,
                    f"PaymentIntent {intent['id']} has already been refunded in full.",
                    param="payment_intent",
                    code="charge_already_refunded",
                )
            amount = body.amount if body.amount is not None else refundable
            if amount > refundable:
                raise StubError(
                    400,
                    f"Refund amount ({amount}) is greater than the unrefunded captured amount "
                    f"({refundable}).",
                    param="amount",
                    code="amount_too_large",
                )
            intent["amount_refunded"] += amount
            store.debit_platform_for_refund(amount)
            refund = store.insert(
                "refund",
                {
                    "id": store.new_id("re"),
                    "object": "refund",
                    "amount": amount,
                    "currency": intent["currency"],
                    "payment_intent": intent["id"],
                    "status": "succeeded",
                    "reason": body.reason,
                    "metadata": body.metadata,
                    "created": _now(),
                    "idempotency_key": idem_key(request),
                },
            )
            store.emit("refund.created", refund)
            return public(refund)

    @router.get("/refunds/{refund_id}")
    def get_refund(refund_id: str) -> JSON:
        return public(store.get("refund", refund_id))

    @router.get("/refunds")
    def list_refunds(
        limit: Limit = 10,
        starting_after: str | None = None,
        payment_intent: str | None = None,
        idempotency_key: str | None = None,
    ) -> JSON:
        return store.list_page(
            "refund",
            predicate=lambda r: (
                (payment_intent is None or r["payment_intent"] == payment_intent)
                and (idempotency_key is None or r["idempotency_key"] == idempotency_key)
            ),
            limit=limit,
            starting_after=starting_after,
        )

    # -- connected accounts, payouts, balances --------------------------------------------------

    @router.post("/accounts")
    def create_account(body: AccountCreate, request: Request) -> JSON:
        with store.lock:
            account = store.insert(
                "account",
                {
                    "id": store.new_id("acct"),
                    "object": "account",
                    "name": body.name,
                    "email": body.email,
                    "payouts_enabled": True,
                    "metadata": body.metadata,
                    "created": _now(),
                    "idempotency_key": idem_key(request),
                },
            )
            store.account_available[account["id"]] = 0
            store.emit("account.created", account)
            return public(account)

    @router.get("/accounts/{account_id}")
    def get_account(account_id: str) -> JSON:
        return public(store.get("account", account_id))

    @router.get("/accounts/{account_id}/balance")
    def get_account_balance(account_id: str) -> JSON:
        return store.account_balance(account_id)

    @router.get("/accounts")
    def list_accounts(limit: Limit = 10, starting_after: str | None = None) -> JSON:
        return store.list_page("account", limit=limit, starting_after=starting_after)

    @router.post("/payouts")
    def create_payout(body: PayoutCreate, request: Request) -> JSON:
        with store.lock:
            store.get("account", body.destination, param="destination")
            store.settle()
            if store.platform_available < body.amount:
                raise StubError(
                    400,
                    f"Insufficient available platform balance ({store.platform_available}) "
                    f"for a payout of {body.amount}.",
                    param="amount",
                    code="balance_insufficient",
                )
            store.platform_available -= body.amount
            store.account_available[body.destination] = (
                store.account_available.get(body.destination, 0) + body.amount
            )
            payout = store.insert(
                "payout",
                {
                    "id": store.new_id("po"),
                    "object": "payout",
                    "amount": body.amount,
                    "currency": body.currency,
                    "destination": body.destination,
                    "status": "paid",
                    "description": body.description,
                    "metadata": body.metadata,
                    "arrival_date": _now(),
                    "created": _now(),
                    "idempotency_key": idem_key(request),
                },
            )
            store.emit("payout.created", payout)
            store.emit("payout.paid", payout)
            return public(payout)

    @router.get("/payouts/{payout_id}")
    def get_payout(payout_id: str) -> JSON:
        return public(store.get("payout", payout_id))

    @router.get("/payouts")
    def list_payouts(
        limit: Limit = 10,
        starting_after: str | None = None,
        destination: str | None = None,
        idempotency_key: str | None = None,
    ) -> JSON:
        return store.list_page(
            "payout",
            predicate=lambda p: (
                (destination is None or p["destination"] == destination)
                and (idempotency_key is None or p["idempotency_key"] == idempotency_key)
            ),
            limit=limit,
            starting_after=starting_after,
        )

    @router.get("/balance")
    def get_balance() -> JSON:
        return store.platform_balance()

    # -- events and webhook endpoints -------------------------------------------------------------

    @router.get("/events")
    def list_events(
        limit: Limit = 10,
        after: str | None = None,
        type: Annotated[list[str] | None, Query()] = None,
    ) -> JSON:
        return store.events_after(after, limit=limit, types=set(type) if type else None)

    @router.get("/events/{event_id}")
    def get_event(event_id: str) -> JSON:
        return public(store.get("event", event_id))

    @router.post("/webhook_endpoints")
    def create_webhook_endpoint(body: WebhookEndpointCreate) -> JSON:
        with store.lock:
            endpoint = _insert_endpoint(
                store,
                url=body.url,
                secret=body.secret or state.config.webhook_secret,
                enabled_events=body.enabled_events,
                description=body.description,
            )
            return public(endpoint)

    @router.get("/webhook_endpoints/{endpoint_id}")
    def get_webhook_endpoint(endpoint_id: str) -> JSON:
        return public(store.get("webhook_endpoint", endpoint_id))

    @router.get("/webhook_endpoints")
    def list_webhook_endpoints(limit: Limit = 10, starting_after: str | None = None) -> JSON:
        return store.list_page("webhook_endpoint", limit=limit, starting_after=starting_after)

    @router.delete("/webhook_endpoints/{endpoint_id}")
    def delete_webhook_endpoint(endpoint_id: str) -> JSON:
        with store.lock:
            store.get("webhook_endpoint", endpoint_id)
            del store.objects["webhook_endpoint"][endpoint_id]
            return {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}

    return router


def _insert_endpoint(
    store: Store, *, url: str, secret: str, enabled_events: list[str], description: str | None
) -> JSON:
    return store.insert(
        "webhook_endpoint",
        {
            "id": store.new_id("we"),
            "object": "webhook_endpoint",
            "url": url,
            "enabled_events": enabled_events,
            "status": "enabled",
            "description": description,
            "secret": secret,
            "created": _now(),
        },
    )


def _build_control(state: StubState, reset: Callable[[], None]) -> APIRouter:
    router = APIRouter(prefix="/_control", include_in_schema=True, tags=["control"])
    store, faults, dispatcher = state.store, state.faults, state.dispatcher

    @router.get("/health")
    def health() -> JSON:
        return {"ok": True}

    @router.post("/faults")
    def set_faults(plan: FaultPlan) -> JSON:
        faults.apply_plan(plan)
        return faults.snapshot()

    @router.delete("/faults")
    def clear_faults() -> JSON:
        faults.clear()
        return faults.snapshot()

    @router.get("/stats")
    def stats() -> JSON:
        with store.lock:
            objects = {kind: len(items) for kind, items in store.objects.items()}
            idempotency_keys = len(store.idempotency)
        return {
            **faults.snapshot(),
            "objects": objects,
            "idempotency_keys": idempotency_keys,
            "webhooks": dispatcher.pending(),
        }

    @router.post("/reset")
    def reset_all() -> JSON:
        reset()
        return {"ok": True}

    @router.post("/settle")
    def settle() -> JSON:
        store.settle(force=True)
        return store.platform_balance()

    @router.post("/balance")
    def top_up(body: BalanceTopUp) -> JSON:
        with store.lock:
            store.platform_available += body.amount
            return store.platform_balance()

    @router.get("/webhook_deliveries")
    def webhook_deliveries(event_id: str | None = None) -> JSON:
        log = [d for d in list(dispatcher.log) if event_id is None or d["event_id"] == event_id]
        return {"object": "list", "data": log}

    @router.post("/webhooks/flush")
    def flush_webhooks() -> JSON:
        return {"released": dispatcher.flush_held()}

    @router.post("/webhooks/wait_idle")
    def wait_idle(timeout_s: Annotated[float, Query(gt=0, le=60)] = 5.0) -> JSON:
        return {"idle": dispatcher.wait_idle(timeout_s), **dispatcher.pending()}

    @router.post("/requests/wait_idle")
    def wait_requests_idle(timeout_s: Annotated[float, Query(gt=0, le=60)] = 5.0) -> JSON:
        return {"idle": faults.wait_requests_idle(timeout_s)}

    return router


def _error_response(error: StubError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status_code)


def create_stub_app(
    *,
    api_key: str,
    webhook_secret: str,
    webhook_url: str | None = None,
    webhook_urls: tuple[str, ...] = (),
    settle_delay_s: float = 0.0,
    webhook_max_attempts: int = 6,
    webhook_backoff_base_s: float = 1.0,
    webhook_backoff_max_s: float = 60.0,
    webhook_timeout_s: float = 5.0,
    require_idempotency_key: bool = True,
    enable_control: bool = True,
) -> FastAPI:
    """Build the provider stub. ``webhook_url(s)`` are registered as endpoints at start-up
    (and again after ``POST /_control/reset``), signed with ``webhook_secret``."""
    if not api_key:
        raise ValueError("api_key must not be empty")
    if not webhook_secret:
        raise ValueError("webhook_secret must not be empty")
    config = StubConfig(
        api_key=api_key,
        webhook_secret=webhook_secret,
        webhook_urls=(*((webhook_url,) if webhook_url else ()), *webhook_urls),
        settle_delay_s=settle_delay_s,
        webhook_max_attempts=webhook_max_attempts,
        webhook_backoff_base_s=webhook_backoff_base_s,
        webhook_backoff_max_s=webhook_backoff_max_s,
        webhook_timeout_s=webhook_timeout_s,
        require_idempotency_key=require_idempotency_key,
        enable_control=enable_control,
    )
    store = Store(settle_delay_s=settle_delay_s)
    faults = Faults()

    def endpoints() -> list[JSON]:
        with store.lock:
            return [dict(e) for e in store.objects["webhook_endpoint"].values()]

    dispatcher = WebhookDispatcher(
        faults=faults,
        endpoints=endpoints,
        max_attempts=webhook_max_attempts,
        backoff_base_s=webhook_backoff_base_s,
        backoff_max_s=webhook_backoff_max_s,
        timeout_s=webhook_timeout_s,
    )
    store.set_event_listener(dispatcher.enqueue_event)
    state = StubState(config=config, store=store, faults=faults, dispatcher=dispatcher)

    def register_configured_endpoints() -> None:
        with store.lock:
            state.configured_endpoint_ids = [
                _insert_endpoint(
                    store,
                    url=url,
                    secret=webhook_secret,
                    enabled_events=["*"],
                    description="configured at start-up",
                )["id"]
                for url in config.webhook_urls
            ]

    def reset() -> None:
        store.reset()
        faults.reset()
        dispatcher.reset()
        register_configured_endpoints()

    register_configured_endpoints()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        dispatcher.start()
        try:
            yield
        finally:
            dispatcher.stop()

    app = FastAPI(
        title="capshare payments stub",
        description="An offline card + escrow provider with the shape of a real one.",
        lifespan=lifespan,
    )
    app.state.stub = state

    @app.exception_handler(StubError)
    async def on_stub_error(_: Request, exc: StubError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        param = ".".join(loc) or None
        message = first.get("msg", "Invalid request")
        return _error_response(
            StubError(
                400,
                f"Invalid parameter {param}: {message}" if param else message,
                param=param,
                code="parameter_invalid",
            )
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "resource_missing" if exc.status_code == 404 else None
        return _error_response(StubError(exc.status_code, str(exc.detail), code=code))

    app.include_router(_build_v1(state))
    if enable_control:
        app.include_router(_build_control(state, reset))

    # Added last = outermost: faults → auth → idempotency → delay-during → routes.
    app.add_middleware(DelayDuringMiddleware)
    app.add_middleware(
        IdempotencyMiddleware,
        store=store,
        faults=faults,
        api_key=api_key,
        required=require_idempotency_key,
    )
    app.add_middleware(AuthMiddleware, api_key=api_key)
    app.add_middleware(FaultMiddleware, faults=faults)
    return app
