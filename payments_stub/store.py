"""The stub provider's state: objects, balances, events and idempotency records.

Everything lives in memory behind one re-entrant lock, so each API operation is atomic:
a handler validates and mutates under ``store.lock`` and either applies all of its
effects (object change, balance change, event) or none.

Objects are kept in their wire form (plain JSON-able dicts) because this is a stub; the
handlers in ``api.py`` own the state machine, this module owns storage and invariants
that every handler shares (ids, sequence numbers, balances, the event log).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

CURRENCY = "cny"


class StubError(Exception):
    """An API error rendered as ``{"error": {"type", "message", "param", "code"}}``."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        extra: JSON | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.extra = extra or {}

    def body(self) -> JSON:
        error: JSON = {
            "type": self.type,
            "message": self.message,
            "param": self.param,
            "code": self.code,
        }
        error.update(self.extra)
        return {"error": error}


def not_found(kind: str, object_id: str, param: str = "id") -> StubError:
    return StubError(404, f"No such {kind}: '{object_id}'", param=param, code="resource_missing")


@dataclass
class IdempotencyRecord:
    fingerprint: str
    done: bool = False
    status_code: int = 0
    body: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    created: float = field(default_factory=time.time)


@dataclass
class PendingFunds:
    amount: int
    available_on: float


class Store:
    """Thread-safe in-memory provider state. Use ``with store.lock:`` for compound ops."""

    def __init__(self, *, settle_delay_s: float = 0.0) -> None:
        self.lock = threading.RLock()
        self.settle_delay_s = settle_delay_s
        self._on_event: Callable[[JSON], None] | None = None
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.objects: dict[str, dict[str, JSON]] = {
                "customer": {},
                "payment_intent": {},
                "refund": {},
                "account": {},
                "payout": {},
                "webhook_endpoint": {},
                "event": {},
            }
            self.events: list[JSON] = []
            self.idempotency: dict[tuple[str, str], IdempotencyRecord] = {}
            self.platform_available = 0
            self.platform_pending: list[PendingFunds] = []
            self.account_available: dict[str, int] = {}
            self._seq = 0

    def set_event_listener(self, listener: Callable[[JSON], None] | None) -> None:
        self._on_event = listener

    # -- ids and objects ------------------------------------------------------------------

    def next_seq(self) -> int:
        with self.lock:
            self._seq += 1
            return self._seq

    @staticmethod
    def new_id(prefix: str) -> str:
        return f"{prefix}_{secrets.token_hex(12)}"

    def insert(self, kind: str, obj: JSON) -> JSON:
        with self.lock:
            obj["_seq"] = self.next_seq()
            self.objects[kind][obj["id"]] = obj
            return obj

    def get(self, kind: str, object_id: str, *, param: str = "id") -> JSON:
        with self.lock:
            obj = self.objects[kind].get(object_id)
            if obj is None:
                raise not_found(kind, object_id, param)
            return obj

    def list_page(
        self,
        kind: str,
        *,
        predicate: Callable[[JSON], bool] = lambda _: True,
        limit: int = 10,
        starting_after: str | None = None,
    ) -> JSON:
        """One page of objects in creation order (oldest first), Stripe's list envelope."""
        with self.lock:
            items: Iterable[JSON] = self.objects[kind].values()
            if starting_after is not None:
                anchor = self.get(kind, starting_after, param="starting_after")
                items = (o for o in items if o["_seq"] > anchor["_seq"])
            matched = [o for o in items if predicate(o)]
            page = matched[:limit]
            return {
                "object": "list",
                "data": [public(o) for o in page],
                "has_more": len(matched) > limit,
            }

    # -- balances -------------------------------------------------------------------------

    def settle(self, *, force: bool = False) -> None:
        """Move pending funds whose ``available_on`` has passed (or all, if forced)."""
        with self.lock:
            now = time.time()
            keep: list[PendingFunds] = []
            for funds in self.platform_pending:
                if force or funds.available_on <= now:
                    self.platform_available += funds.amount
                else:
                    keep.append(funds)
            self.platform_pending = keep

    def credit_platform(self, amount: int) -> None:
        with self.lock:
            if self.settle_delay_s <= 0:
                self.platform_available += amount
            else:
                self.platform_pending.append(
                    PendingFunds(amount, time.time() + self.settle_delay_s)
                )

    def debit_platform_for_refund(self, amount: int) -> None:
        """Refunds are drawn from available funds, which may go negative (as at Stripe)."""
        with self.lock:
            self.settle()
            self.platform_available -= amount

    def platform_balance(self) -> JSON:
        with self.lock:
            self.settle()
            pending = sum(f.amount for f in self.platform_pending)
            return {
                "object": "balance",
                "account": None,
                "available": [{"amount": self.platform_available, "currency": CURRENCY}],
                "pending": [{"amount": pending, "currency": CURRENCY}],
            }

    def account_balance(self, account_id: str) -> JSON:
        with self.lock:
            self.get("account", account_id)
            return {
                "object": "balance",
                "account": account_id,
                "available": [
                    {"amount": self.account_available.get(account_id, 0), "currency": CURRENCY}
                ],
                "pending": [{"amount": 0, "currency": CURRENCY}],
            }

    # -- events ---------------------------------------------------------------------------

    def emit(self, event_type: str, obj: JSON) -> JSON:
        """Append an event with a snapshot of ``obj`` and hand it to the webhook dispatcher."""
        with self.lock:
            seq = self.next_seq()
            event: JSON = {
                "id": self.new_id("evt"),
                "object": "event",
                "type": event_type,
                "created": int(time.time()),
                "sequence": seq,
                "data": {"object": public(obj)},
                "_seq": seq,
            }
            self.objects["event"][event["id"]] = event
            self.events.append(event)
            listener = self._on_event
        if listener is not None:
            listener(public(event))
        return event

    def events_after(self, after: str | None, *, limit: int, types: set[str] | None) -> JSON:
        with self.lock:
            start_seq = 0
            if after:
                start_seq = self.get("event", after, param="after")["_seq"]
            matched = [
                e
                for e in self.events
                if e["_seq"] > start_seq and (types is None or e["type"] in types)
            ]
            page = matched[:limit]
            return {
                "object": "list",
                "data": [public(e) for e in page],
                "has_more": len(matched) > limit,
                "next_cursor": page[-1]["id"] if page else after,
            }


def public(obj: JSON) -> JSON:
    """The wire form of a stored object: a copy without private ``_``-prefixed keys."""
    return {k: v for k, v in obj.items() if not k.startswith("_")}
