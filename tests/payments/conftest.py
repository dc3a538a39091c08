"""Fixtures: the provider stub served over real HTTP, a fast-retrying client, a receiver.

The stub runs once per session on a free loopback port (``serve_in_thread`` binds the
socket first and waits for one health request, no sleep loop) and is reset before each
test through its control API.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from app.money.provider import PaymentsClient
from payments_stub import create_stub_app, serve_in_thread

API_KEY = "sk_test_capshare_payments"
WEBHOOK_SECRET = "whsec_test_capshare_payments"


@dataclass
class Stub:
    """The running stub: its URL plus helpers over its control API."""

    url: str
    http: httpx.Client  # authenticated raw client, for wire-level assertions

    def faults(self, *rules: dict[str, Any], chaos: dict[str, Any] | None = None) -> None:
        plan: dict[str, Any] = {"rules": list(rules)}
        if chaos is not None:
            plan["chaos"] = chaos
        self.http.post("/_control/faults", json=plan).raise_for_status()

    def stats(self) -> dict[str, Any]:
        response = self.http.get("/_control/stats")
        response.raise_for_status()
        return dict(response.json())

    def injected(self, kind: str) -> int:
        return int(self.stats()["faults_injected"].get(kind, 0))

    def requests(self) -> int:
        return int(self.stats()["counters"].get("requests", 0))

    def post(self, path: str, json: Any, key: str | None) -> httpx.Response:
        headers = {"Idempotency-Key": key} if key else {}
        return self.http.post(path, json=json, headers=headers)

    def deliveries(self, event_id: str | None = None) -> list[dict[str, Any]]:
        params = {"event_id": event_id} if event_id else {}
        return list(self.http.get("/_control/webhook_deliveries", params=params).json()["data"])

    def wait_webhooks_idle(self) -> None:
        response = self.http.post("/_control/webhooks/wait_idle", params={"timeout_s": 5})
        assert response.json()["idle"] is True


@pytest.fixture(scope="session")
def stub_url() -> Iterator[str]:
    app = create_stub_app(
        api_key=API_KEY,
        webhook_secret=WEBHOOK_SECRET,
        webhook_max_attempts=4,
        webhook_backoff_base_s=0.05,
        webhook_backoff_max_s=0.2,
        webhook_timeout_s=2.0,
    )
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture
def stub(stub_url: str) -> Iterator[Stub]:
    with httpx.Client(
        base_url=stub_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
    ) as http:
        http.post("/_control/reset").raise_for_status()
        yield Stub(url=stub_url, http=http)


def make_client(base_url: str, *, timeout_s: float = 5.0, max_attempts: int = 4) -> PaymentsClient:
    http = httpx.Client(base_url=base_url, timeout=timeout_s)
    return PaymentsClient(
        http,
        api_key=API_KEY,
        max_attempts=max_attempts,
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
        jitter_s=0.01,
    )


@pytest.fixture
def payments(stub: Stub) -> Iterator[PaymentsClient]:
    client = make_client(stub.url)
    yield client
    client.close()


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A loopback webhook receiver; ``fail_next`` answers 500 that many times first."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    fail_next: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout_s: float = 5.0) -> list[Received]:
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.received) >= count, timeout_s)
            assert ok, f"expected {count} webhook deliveries, got {len(self.received)}"
            return list(self.received)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.cond:
                failing = state.fail_next > 0
                if failing:
                    state.fail_next -= 1
                else:
                    state.received.append(Received(dict(self.headers.items()), body))
                    state.cond.notify_all()
            self.send_response(500 if failing else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/webhooks/payments"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)
