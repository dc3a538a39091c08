"""Pure-ASGI middleware of the stub: fault injection → API-key auth → idempotency.

They are plain ASGI callables (not ``BaseHTTPMiddleware``) because they must buffer,
replay, delay, swallow or cut responses, and must not depend on how Starlette streams
bodies between middleware.

Order matters and is fixed in ``create_stub_app``: faults wrap auth, which wraps the
idempotency layer, which wraps the "delay during" layer and then the routes. So a "fail
after apply" fault loses a response whose idempotency record is already stored, exactly
like a provider that committed and then dropped the connection.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from payments_stub.faults import Faults, RequestFault
from payments_stub.store import IdempotencyRecord, Store, StubError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

API_PREFIX = "/v1/"
DELAY_DURING_KEY = "capshare_stub.delay_during_ms"


async def send_json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def _close_without_response(send: Send) -> None:
    """Start a response and stop mid-body: the server then drops the connection."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")],
        }
    )
    await send({"type": "http.response.body", "body": b"{", "more_body": True})


async def _run_buffered(app: ASGIApp, scope: Scope, receive: Receive) -> list[Message]:
    messages: list[Message] = []

    async def capture(message: Message) -> None:
        messages.append(message)

    await app(scope, receive, capture)
    return messages


async def _replay(messages: list[Message], send: Send) -> None:
    for message in messages:
        await send(message)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


class FaultMiddleware:
    def __init__(self, app: ASGIApp, *, faults: Faults) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        self.faults.count("requests")
        self.faults.request_started()
        try:
            fault = self.faults.for_request(scope["method"], scope["path"])
            if fault is None:
                await self.app(scope, receive, send)
            else:
                await self._inject(fault, scope, receive, send)
        finally:
            self.faults.request_finished()

    async def _inject(
        self, fault: RequestFault, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if fault.kind == "delay":
            if fault.when == "before":
                # The request has fully arrived but waits to be processed: even if the client
                # gives up meanwhile, it is still processed later (like a slow provider).
                body = await _read_body(receive)
                await asyncio.sleep(fault.delay_ms / 1000)
                await self.app(scope, _receive_once(body or b""), send)
            elif fault.when == "during":
                scope[DELAY_DURING_KEY] = fault.delay_ms
                await self.app(scope, receive, send)
            else:
                messages = await _run_buffered(self.app, scope, receive)
                await asyncio.sleep(fault.delay_ms / 1000)
                await _replay(messages, send)
            return
        if fault.kind == "error_after_apply":
            await _run_buffered(self.app, scope, receive)
        if fault.mode == "close":
            await _close_without_response(send)
            return
        error = StubError(
            fault.status,
            f"Injected fault ({fault.kind}): the provider failed to answer.",
            type="api_error",
            code="injected_fault",
        )
        await send_json(send, fault.status, error.body())


class DelayDuringMiddleware:
    """Innermost layer: sleeps for a ``delay`` fault with ``"when": "during"``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        delay_ms = scope.get(DELAY_DURING_KEY)
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        await self.app(scope, receive, send)


class AuthMiddleware:
    def __init__(self, app: ASGIApp, *, api_key: str) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        header = _header(scope, b"authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self.api_key.encode()
        ):
            error = StubError(
                401,
                "Invalid API key provided. Send 'Authorization: Bearer sk_test_...'.",
                type="authentication_error",
                code="invalid_api_key",
            )
            await send_json(send, 401, error.body(), [(b"www-authenticate", b"Bearer")])
            return
        await self.app(scope, receive, send)


def _fingerprint(scope: Scope, body: bytes) -> str:
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body
    digest = hashlib.sha256()
    digest.update(
        f"{scope['method']} {scope['path']}?{scope.get('query_string', b'').decode()}\n".encode()
    )
    digest.update(canonical)
    return digest.hexdigest()


class IdempotencyMiddleware:
    """Stores the first response per (API key, Idempotency-Key) and replays it.

    * same key, same request (method, path, canonical JSON body) → the stored status and
      body, with ``Idempotent-Replayed: true``;
    * same key, different request → 409 ``idempotency_key_reused``;
    * same key while the first request still runs → 409 ``idempotency_key_in_use`` (the
      operation never runs twice; the client retries and then gets the stored answer).

    Responses with status < 500 are stored; a 5xx releases the key so a retry re-executes
    (handlers are atomic, so a 5xx means nothing was applied).
    """

    def __init__(
        self, app: ASGIApp, *, store: Store, faults: Faults, api_key: str, required: bool
    ) -> None:
        self.app = app
        self.store = store
        self.faults = faults
        self.api_key = api_key
        self.required = required

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not scope["path"].startswith(API_PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        key = _header(scope, b"idempotency-key")
        if not key:
            if self.required:
                error = StubError(
                    400,
                    "Every POST needs an Idempotency-Key header.",
                    param="Idempotency-Key",
                    code="idempotency_key_missing",
                )
                await send_json(send, 400, error.body())
                return
            await self.app(scope, receive, send)
            return
        if len(key) > 255:
            error = StubError(
                400, "Idempotency-Key is longer than 255 characters.", param="Idempotency-Key"
            )
            await send_json(send, 400, error.body())
            return

        body = await _read_body(receive)
        if body is None:
            self.faults.count("client_disconnected")
            return  # the client left before its request arrived in full: nothing to do
        fingerprint = _fingerprint(scope, body)
        scope_key = (self.api_key, key)
        with self.store.lock:
            record = self.store.idempotency.get(scope_key)
            if record is None:
                record = IdempotencyRecord(fingerprint=fingerprint)
                self.store.idempotency[scope_key] = record
                fresh = True
            else:
                fresh = False
        if not fresh:
            await self._answer_existing(record, fingerprint, key, send)
            return

        try:
            messages = await _run_buffered(self.app, scope, _receive_once(body))
        except BaseException:
            with self.store.lock:
                self.store.idempotency.pop(scope_key, None)
            raise
        start = next(m for m in messages if m["type"] == "http.response.start")
        status = int(start["status"])
        with self.store.lock:
            if status < 500:
                record.done = True
                record.status_code = status
                record.headers = [
                    (k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"
                ]
                record.body = b"".join(
                    m.get("body", b"") for m in messages if m["type"] == "http.response.body"
                )
            else:
                self.store.idempotency.pop(scope_key, None)
        await _replay(messages, send)

    async def _answer_existing(
        self, record: IdempotencyRecord, fingerprint: str, key: str, send: Send
    ) -> None:
        with self.store.lock:
            matches = hmac.compare_digest(record.fingerprint, fingerprint)
            done = record.done
            status, headers, body = record.status_code, list(record.headers), record.body
        if not matches:
            self.faults.count("idempotency_conflicts")
            error = StubError(
                409,
                f"Idempotency-Key '{key}' was already used with different request parameters; "
                "use a new key for a different request.",
                param="Idempotency-Key",
                code="idempotency_key_reused",
            )
            await send_json(send, 409, error.body())
            return
        if not done:
            self.faults.count("idempotency_in_use")
            error = StubError(
                409,
                f"A request with Idempotency-Key '{key}' is still being processed; retry later.",
                param="Idempotency-Key",
                code="idempotency_key_in_use",
            )
            await send_json(send, 409, error.body(), [(b"retry-after", b"1")])
            return
        self.faults.count("idempotent_replays")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    *headers,
                    (b"content-length", str(len(body)).encode()),
                    (b"idempotent-replayed", b"true"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client disconnected first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _receive_once(body: bytes) -> Receive:
    """A ``receive`` that yields ``body`` once, then a disconnect."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # like a server: no disconnect until the response is done
        return {"type": "http.disconnect"}

    return receive
