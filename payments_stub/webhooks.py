"""Signed webhook deliveries from the stub, with retries and injectable faults.

Each event is delivered to every enabled endpoint that subscribes to its type, as a JSON
POST signed in the ``Capshare-Signature`` header::

    Capshare-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>

A single background thread sends deliveries in due-time order. A non-2xx answer or a
transport error schedules a retry after ``backoff_base_s * 2 ** (attempt - 1)`` seconds
(capped at ``backoff_max_s``) until ``max_attempts`` is reached. Every attempt is signed
afresh with the current time, as real providers do.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from payments_stub.faults import Faults

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "Capshare-Signature"
EVENT_ID_HEADER = "Capshare-Event-Id"


def sign_payload(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``Capshare-Signature`` header value for ``payload`` signed at ``timestamp``."""
    signed = str(timestamp).encode() + b"." + payload
    mac = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    endpoint_id: str = field(compare=False)
    url: str = field(compare=False)
    secret: str = field(compare=False)
    event_id: str = field(compare=False)
    event_type: str = field(compare=False)
    body: bytes = field(compare=False)
    attempt: int = field(default=1, compare=False)
    generation: int = field(default=0, compare=False)


class WebhookDispatcher:
    """Queues, signs, sends and retries webhook deliveries on one background thread."""

    def __init__(
        self,
        *,
        faults: Faults,
        endpoints: Callable[[], list[dict[str, Any]]],
        max_attempts: int = 6,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        timeout_s: float = 5.0,
    ) -> None:
        self._faults = faults
        self._endpoints = endpoints
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self._cond = threading.Condition()
        self._heap: list[_Delivery] = []
        self._held: list[_Delivery] = []
        self._inflight = 0
        self._seq = 0
        self._generation = 0
        self._stop = False
        self._thread: threading.Thread | None = None
        self.log: deque[dict[str, Any]] = deque(maxlen=10_000)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        with self._cond:
            if self._thread is not None:
                return
            self._stop = False
            self._thread = threading.Thread(
                target=self._run, name="payments-stub-webhooks", daemon=True
            )
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)

    def reset(self) -> None:
        """Forget queued, held and logged deliveries (an attempt in flight still finishes)."""
        with self._cond:
            self._generation += 1
            self._heap.clear()
            self._held.clear()
            self.log.clear()
            self._cond.notify_all()

    # -- queueing -------------------------------------------------------------------------

    def enqueue_event(self, event: dict[str, Any]) -> None:
        body = json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
        for endpoint in self._endpoints():
            if endpoint.get("status") != "enabled":
                continue
            subscribed = endpoint.get("enabled_events") or ["*"]
            if "*" not in subscribed and event["type"] not in subscribed:
                continue
            with self._cond:
                self._seq += 1
                delivery = _Delivery(
                    due=time.monotonic(),
                    seq=self._seq,
                    endpoint_id=endpoint["id"],
                    url=endpoint["url"],
                    secret=endpoint["secret"],
                    event_id=event["id"],
                    event_type=event["type"],
                    body=body,
                    generation=self._generation,
                )
            self._submit(delivery)

    def _submit(self, delivery: _Delivery) -> None:
        fault = self._faults.for_webhook()
        with self._cond:
            if fault == "webhook_drop":
                self._record(delivery, outcome="dropped")
                return
            if fault == "webhook_reorder":
                self._held.append(delivery)
                if self._faults.reorder_in_progress():
                    return
                self._release_held_locked()
                return
            self._push_locked(delivery)
            if fault == "webhook_duplicate":
                self._seq += 1
                twin = _Delivery(**{**delivery.__dict__, "seq": self._seq})
                self._push_locked(twin)
                self._record(delivery, outcome="duplicated")

    def flush_held(self) -> int:
        """Release deliveries held back by a ``webhook_reorder`` rule, in reverse order."""
        with self._cond:
            released = len(self._held)
            self._release_held_locked()
            return released

    def _release_held_locked(self) -> None:
        held, self._held = self._held, []
        for delivery in reversed(held):
            self._seq += 1
            delivery.seq = self._seq
            delivery.due = time.monotonic()
            self._push_locked(delivery)

    def _push_locked(self, delivery: _Delivery) -> None:
        heapq.heappush(self._heap, delivery)
        self._cond.notify_all()

    def _record(self, delivery: _Delivery, **fields: Any) -> None:
        self.log.append(
            {
                "event_id": delivery.event_id,
                "event_type": delivery.event_type,
                "endpoint_id": delivery.endpoint_id,
                "url": delivery.url,
                "attempt": delivery.attempt,
                "at": time.time(),
                **fields,
            }
        )

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until nothing is queued or in flight (held deliveries excepted)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._heap or self._inflight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def pending(self) -> dict[str, int]:
        with self._cond:
            return {"queued": len(self._heap), "held": len(self._held), "inflight": self._inflight}

    # -- the delivery thread ----------------------------------------------------------------

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout_s) as http:
            while True:
                with self._cond:
                    while not self._stop:
                        now = time.monotonic()
                        if self._heap and self._heap[0].due <= now:
                            break
                        wait = self._heap[0].due - now if self._heap else None
                        self._cond.wait(wait)
                    if self._stop:
                        return
                    delivery = heapq.heappop(self._heap)
                    self._inflight += 1
                try:
                    self._send(http, delivery)
                finally:
                    with self._cond:
                        self._inflight -= 1
                        self._cond.notify_all()

    def _send(self, http: httpx.Client, delivery: _Delivery) -> None:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "capshare-payments-stub/1",
            SIGNATURE_HEADER: sign_payload(delivery.body, delivery.secret, int(time.time())),
            EVENT_ID_HEADER: delivery.event_id,
            "Capshare-Delivery-Attempt": str(delivery.attempt),
        }
        self._faults.count("webhook_attempts")
        try:
            response = http.post(delivery.url, content=delivery.body, headers=headers)
        except httpx.HTTPError as exc:
            self._retry_or_give_up(delivery, error=f"{type(exc).__name__}: {exc}")
            return
        if 200 <= response.status_code < 300:
            self._faults.count("webhook_delivered")
            with self._cond:
                self._record(delivery, outcome="delivered", status_code=response.status_code)
            return
        self._retry_or_give_up(delivery, status_code=response.status_code)

    def _retry_or_give_up(self, delivery: _Delivery, **fields: Any) -> None:
        self._faults.count("webhook_failed_attempts")
        with self._cond:
            if delivery.generation != self._generation:
                return  # queued before a reset: forget it
            if delivery.attempt >= self.max_attempts:
                self._faults.count("webhook_abandoned")
                self._record(delivery, outcome="abandoned", **fields)
                return
            self._record(delivery, outcome="failed", **fields)
            delay = min(self.backoff_base_s * 2 ** (delivery.attempt - 1), self.backoff_max_s)
            delivery.attempt += 1
            delivery.due = time.monotonic() + delay
            self._seq += 1
            delivery.seq = self._seq
            self._push_locked(delivery)
        logger.info(
            "webhook %s to %s failed; retry in %.2fs", delivery.event_id, delivery.url, delay
        )
