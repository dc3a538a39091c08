"""Fixtures for money tests: the provider stub over real HTTP on loopback, a fast-retrying
client, and a small market (an owner's machine with offered time, a buyer)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlmodel import Session

from app.money.provider import PaymentsClient
from models import Booking, BookingKind, BookingState, Machine, Role, User
from payments_stub import create_stub_app, serve_in_thread
from tests.factories import hours_from_now, make_booking, make_machine, make_user, make_window

STUB_KEY = "sk_test_suite"  # the suite's settings carry the same key and secret
STUB_SECRET = "whsec_suite"


@pytest.fixture(scope="session")
def money_stub_url() -> Iterator[str]:
    app = create_stub_app(api_key=STUB_KEY, webhook_secret=STUB_SECRET)
    with serve_in_thread(app) as url:
        yield url


def fast_client(
    base_url: str, *, max_attempts: int = 4, timeout_s: float = 5.0, api_key: str = STUB_KEY
) -> PaymentsClient:
    return PaymentsClient(
        httpx.Client(base_url=base_url, timeout=timeout_s), api_key=api_key,
        max_attempts=max_attempts, backoff_initial_s=0.005, backoff_max_s=0.02, jitter_s=0.005,
    )  # fmt: skip


@pytest.fixture
def provider(money_stub_url: str) -> Iterator[PaymentsClient]:
    httpx.post(
        f"{money_stub_url}/_control/reset", headers={"Authorization": f"Bearer {STUB_KEY}"}
    ).raise_for_status()
    client = fast_client(money_stub_url)
    yield client
    client.close()


def stub_control(url: str, path: str, json: Any = None, method: str = "POST") -> Any:
    r = httpx.request(
        method, f"{url}/_control/{path}", json=json, headers={"Authorization": f"Bearer {STUB_KEY}"}
    )
    r.raise_for_status()
    return r.json()


@dataclass
class Market:
    owner: User
    buyer: User
    machine: Machine


@pytest.fixture
def market(session: Session) -> Market:
    owner = make_user(session, roles=(Role.owner,))
    machine = make_machine(session, owner=owner, hourly_rate_fen=9000, min_booking_minutes=60)
    make_window(session, machine=machine, start=hours_from_now(-2), end=hours_from_now(24 * 20))
    return Market(owner=owner, buyer=make_user(session, roles=(Role.buyer,)), machine=machine)


def make_service_booking(
    session: Session,
    market: Market,
    *,
    price_fen: int = 100_000,
    start_h: float = 0.5,  # soon enough to be started (early_start_minutes)
    hours: float = 3,
) -> Booking:
    start = hours_from_now(start_h)
    return make_booking(
        session, machine=market.machine, org_id=market.buyer.org_id, kind=BookingKind.service,
        state=BookingState.proposed, start=start, end=start + dt.timedelta(hours=hours),
        price_fen=price_fen,
    )  # fmt: skip
