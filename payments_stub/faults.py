"""Fault injection for the stub: a plan of one-shot rules plus seeded random chaos.

A plan is posted to ``POST /_control/faults`` as JSON::

    {
      "rules": [
        {"kind": "error", "count": 2, "path_prefix": "/v1/payment_intents", "status": 500},
        {"kind": "error_after_apply", "count": 1, "mode": "close"},
        {"kind": "delay", "delay_ms": 1500, "when": "after"},
        {"kind": "webhook_drop", "count": 1},
        {"kind": "webhook_duplicate", "count": 1},
        {"kind": "webhook_reorder", "count": 3}
      ],
      "chaos": {"seed": 7, "error_rate": 0.1, "error_after_apply_rate": 0.1,
                "delay_rate": 0.0, "delay_ms": 100,
                "webhook_drop_rate": 0.0, "webhook_duplicate_rate": 0.0}
    }

Request kinds (matched by ``method`` and ``path_prefix``, default every ``/v1/`` call):

* ``error``: answer ``status`` (default 500) without performing the operation; with
  ``"mode": "close"`` the connection is closed instead of answering.
* ``error_after_apply``: perform the operation (its idempotency record is stored), then
  lose the response: answer ``status`` (default 500) or close the connection (``"close"``).
* ``delay``: sleep ``delay_ms`` before the operation (``"when": "before"``, default),
  while it runs (``"during"``: inside the idempotency layer, so the key stays "in use"),
  or after it (``"after"``: the operation is applied, then the answer is held back).

Webhook kinds (one count per delivery):

* ``webhook_drop``: the delivery is silently discarded (never sent, never retried).
* ``webhook_duplicate``: the delivery is sent twice.
* ``webhook_reorder``: the next ``count`` deliveries are held back and then released in
  reverse order (``POST /_control/webhooks/flush`` releases a partial batch).

Each matching request or delivery consumes one ``count`` of the first matching rule;
exhausted rules disappear. Chaos faults apply only when no rule matched, drawing from a
``random.Random(seed)`` so that a chaos run is reproducible for a given request order.
Every injected fault is counted by kind in ``GET /_control/stats``.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RequestFaultKind = Literal["error", "error_after_apply", "delay"]
WebhookFaultKind = Literal["webhook_drop", "webhook_duplicate", "webhook_reorder"]
REQUEST_KINDS = ("error", "error_after_apply", "delay")
WEBHOOK_KINDS = ("webhook_drop", "webhook_duplicate", "webhook_reorder")


class FaultRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal[
        "error",
        "error_after_apply",
        "delay",
        "webhook_drop",
        "webhook_duplicate",
        "webhook_reorder",
    ]
    count: int = Field(default=1, ge=1, le=1_000_000)
    path_prefix: str = "/v1/"
    method: str | None = None
    status: int = Field(default=500, ge=400, le=599)
    mode: Literal["response", "close"] = "response"
    delay_ms: int = Field(default=0, ge=0, le=120_000)
    when: Literal["before", "during", "after"] = "before"


class ChaosPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    path_prefix: str = "/v1/"
    method: str | None = None
    error_rate: float = Field(default=0.0, ge=0, le=1)
    error_after_apply_rate: float = Field(default=0.0, ge=0, le=1)
    delay_rate: float = Field(default=0.0, ge=0, le=1)
    delay_ms: int = Field(default=100, ge=0, le=120_000)
    status: int = Field(default=500, ge=400, le=599)
    mode: Literal["response", "close"] = "response"
    webhook_drop_rate: float = Field(default=0.0, ge=0, le=1)
    webhook_duplicate_rate: float = Field(default=0.0, ge=0, le=1)


class FaultPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[FaultRule] = Field(default_factory=list)
    chaos: ChaosPlan | None = None
    replace: bool = False


@dataclass(frozen=True)
class RequestFault:
    kind: RequestFaultKind
    status: int = 500
    mode: Literal["response", "close"] = "response"
    delay_ms: int = 0
    when: Literal["before", "during", "after"] = "before"


@dataclass
class _ActiveRule:
    rule: FaultRule
    remaining: int


@dataclass
class Faults:
    """The live fault plan and the counters of what was injected. Thread-safe."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rules: list[_ActiveRule] = field(default_factory=list)
    _chaos: ChaosPlan | None = None
    _rng: random.Random = field(default_factory=random.Random)
    injected: Counter[str] = field(default_factory=Counter)
    counters: Counter[str] = field(default_factory=Counter)
    _inflight: int = 0
    _idle: threading.Condition = field(default_factory=threading.Condition)

    def request_started(self) -> None:
        with self._idle:
            self._inflight += 1

    def request_finished(self) -> None:
        with self._idle:
            self._inflight -= 1
            self._idle.notify_all()

    def wait_requests_idle(self, timeout_s: float) -> bool:
        """Block until no ``/v1`` request is in flight (e.g. one held by a delay fault)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout_s)

    def reset(self) -> None:
        with self._lock:
            self._rules.clear()
            self._chaos = None
            self.injected.clear()
            self.counters.clear()

    def apply_plan(self, plan: FaultPlan) -> None:
        with self._lock:
            if plan.replace:
                self._rules.clear()
                self._chaos = None
            self._rules.extend(_ActiveRule(rule, rule.count) for rule in plan.rules)
            if plan.chaos is not None:
                self._chaos = plan.chaos
                self._rng = random.Random(plan.chaos.seed)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._chaos = None

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def _take(
        self, kinds: tuple[str, ...], method: str | None, path: str | None
    ) -> FaultRule | None:
        for active in self._rules:
            rule = active.rule
            if rule.kind not in kinds:
                continue
            if path is not None and not path.startswith(rule.path_prefix):
                continue
            if method is not None and rule.method and rule.method.upper() != method.upper():
                continue
            active.remaining -= 1
            if active.remaining <= 0:
                self._rules.remove(active)
            return rule
        return None

    def for_request(self, method: str, path: str) -> RequestFault | None:
        """Consume and return the fault to inject into this request, if any."""
        with self._lock:
            rule = self._take(REQUEST_KINDS, method, path)
            if rule is not None:
                self.injected[rule.kind] += 1
                return RequestFault(
                    kind=rule.kind,  # type: ignore[arg-type]
                    status=rule.status,
                    mode=rule.mode,
                    delay_ms=rule.delay_ms,
                    when=rule.when,
                )
            chaos = self._chaos
            if chaos is None or not path.startswith(chaos.path_prefix):
                return None
            if chaos.method and chaos.method.upper() != method.upper():
                return None
            draw = self._rng.random()
            fault: RequestFault | None = None
            if draw < chaos.error_rate:
                fault = RequestFault("error", status=chaos.status, mode=chaos.mode)
            elif draw < chaos.error_rate + chaos.error_after_apply_rate:
                fault = RequestFault("error_after_apply", status=chaos.status, mode=chaos.mode)
            elif draw < chaos.error_rate + chaos.error_after_apply_rate + chaos.delay_rate:
                fault = RequestFault("delay", delay_ms=chaos.delay_ms)
            if fault is not None:
                self.injected[fault.kind] += 1
                self.injected["chaos"] += 1
            return fault

    def for_webhook(self) -> WebhookFaultKind | None:
        """Consume and return the fault to inject into one webhook delivery, if any."""
        with self._lock:
            rule = self._take(WEBHOOK_KINDS, None, None)
            if rule is not None:
                self.injected[rule.kind] += 1
                return rule.kind  # type: ignore[return-value]
            chaos = self._chaos
            if chaos is None:
                return None
            draw = self._rng.random()
            kind: WebhookFaultKind | None = None
            if draw < chaos.webhook_drop_rate:
                kind = "webhook_drop"
            elif draw < chaos.webhook_drop_rate + chaos.webhook_duplicate_rate:
                kind = "webhook_duplicate"
            if kind is not None:
                self.injected[kind] += 1
                self.injected["chaos"] += 1
            return kind

    def reorder_in_progress(self) -> bool:
        """Whether a ``webhook_reorder`` rule still wants to hold back more deliveries."""
        with self._lock:
            return any(a.rule.kind == "webhook_reorder" for a in self._rules)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "faults_injected": dict(self.injected),
                "faults_injected_total": sum(v for k, v in self.injected.items() if k != "chaos"),
                "counters": dict(self.counters),
                "pending_rules": [
                    {**a.rule.model_dump(), "remaining": a.remaining} for a in self._rules
                ],
                "chaos": self._chaos.model_dump() if self._chaos else None,
            }
