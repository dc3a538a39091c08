"""Connections are used only while needed: none is held in a transaction while a page
renders, an API response is serialized or the payment provider answers.

The app here runs on real sessions of the test engine (as in production, not the test's
rolled-back session); what a test commits it deletes again."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import fastapi.routing
import httpx
import jinja2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool
from sqlmodel import Session, delete
from starlette.types import Message, Receive, Scope, Send

from app import jobs
from app.config import Settings, get_settings
from app.db import get_session, make_engine
from app.main import create_app
from app.money.provider import PaymentsClient
from models import Organization, User
from tests.factories import auth, make_user
from tests.money_fixtures import STUB_KEY, Market, make_service_booking, market, money_stub_url  # noqa: F401

IDLE_IN_TRANSACTION = text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND state = 'idle in transaction' AND pid <> pg_backend_pid() AND pid <> ALL(:mine)"
)


class Held:
    """What the database looked like at each moment a test asked: the engine's pool
    connections checked out and, on PostgreSQL, the connections idle in a transaction
    (seen from a connection of its own, outside the pool)."""

    def __init__(self, engine: Engine, *, except_pids: tuple[int, ...] = ()) -> None:
        self.engine = engine
        self.except_pids = list(except_pids)
        self.seen: list[tuple[str, int, int]] = []  # (moment, checked out, idle in transaction)
        self._watcher: Engine | None = None
        if engine.dialect.name == "postgresql":
            url = engine.url.render_as_string(hide_password=False)
            self._watcher = create_engine(url, poolclass=NullPool)

    def look(self, moment: str) -> None:
        idle = 0
        if self._watcher is not None:
            with self._watcher.connect() as conn:
                idle = int(
                    conn.execute(IDLE_IN_TRANSACTION, {"mine": self.except_pids}).scalar_one()
                )
        self.seen.append((moment, self.engine.pool.checkedout(), idle))  # type: ignore[attr-defined]

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.dispose()


@pytest.fixture
def app_engine(engine: Engine, db_url: str) -> Iterator[Engine]:
    """An engine of the app's own (on the migrated test database): its pool counts only
    the app's connections."""
    own = make_engine(db_url, pool_size=4, max_overflow=0)
    yield own
    own.dispose()


@pytest.fixture
def committed_user(app_engine: Engine) -> Iterator[User]:
    with Session(app_engine) as s:
        user = make_user(s)
        s.commit()
        s.refresh(user)
        s.expunge(user)
    yield user
    with Session(app_engine) as s:
        s.exec(delete(User).where(User.id == user.id))  # type: ignore[arg-type]
        s.exec(delete(Organization).where(Organization.id == user.org_id))  # type: ignore[arg-type]
        s.commit()


def own_session(engine: Engine) -> Callable[[], Iterator[Session]]:
    """``app.db.get_session`` on ``engine``: one session per request, as in production."""

    def get() -> Iterator[Session]:
        with Session(engine) as session:
            try:
                yield session
            except Exception:
                session.rollback()
                raise

    return get


@pytest.fixture
def real_client(app_engine: Engine, settings: Settings) -> Iterator[TestClient]:
    """The app with production's sessions: one per request on its own engine."""
    app = create_app()
    app.dependency_overrides[get_session] = own_session(app_engine)
    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app) as c:
        yield c


@pytest.fixture
def held(app_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Held]:
    """Looks at the database each time a template renders or a response is serialized."""
    watch = Held(app_engine)
    render = jinja2.Template.render
    serialize = fastapi.routing.serialize_response

    def looking_render(self: jinja2.Template, *args: Any, **kwargs: Any) -> str:
        watch.look(f"template {self.name}")
        return render(self, *args, **kwargs)

    async def looking_serialize(**kwargs: Any) -> Any:
        watch.look("serialization")
        return await serialize(**kwargs)

    monkeypatch.setattr(jinja2.Template, "render", looking_render)
    monkeypatch.setattr(fastapi.routing, "serialize_response", looking_serialize)
    yield watch
    watch.close()


def csrf(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m is not None
    return m.group(1)


class TestRendering:
    def test_a_page_that_read_the_database_renders_with_no_connection_held(
        self, real_client: TestClient, held: Held
    ) -> None:
        page = real_client.get("/login")
        r = real_client.post(
            "/login",
            data={"email": "nobody@example.com", "password": "x", "csrf_token": csrf(page.text)},
        )
        assert r.status_code == 401  # the login read the users, then rendered the form again
        assert held.seen[-1] == ("template public/login.html", 0, 0)

    def test_an_api_response_is_serialized_with_no_connection_held(
        self, real_client: TestClient, held: Held, committed_user: User, settings: Settings
    ) -> None:
        r = real_client.get("/api/v1/processes", headers=auth(settings, committed_user))
        assert r.status_code == 200 and r.json()  # the token's user and the catalogue read
        assert held.seen == [("serialization", 0, 0)]

    def test_the_connection_is_back_in_the_pool_before_the_response_is_sent(
        self, app_engine: Engine, settings: Settings, committed_user: User
    ) -> None:
        app = create_app()
        app.dependency_overrides[get_session] = own_session(app_engine)
        app.dependency_overrides[get_settings] = lambda: settings
        at_start: list[int] = []

        async def sending(scope: Scope, receive: Receive, send: Send) -> None:
            async def watched(message: Message) -> None:
                if message["type"] == "http.response.start":
                    at_start.append(app_engine.pool.checkedout())  # type: ignore[attr-defined]
                await send(message)

            await app(scope, receive, watched)

        with TestClient(sending) as c:
            page = c.get("/login")
            c.post("/login", data={"email": "x@example.com", "password": "x",
                                   "csrf_token": csrf(page.text)})  # fmt: skip
            c.get("/api/v1/processes", headers=auth(settings, committed_user))
        assert at_start == [0, 0, 0]


class Blocking(httpx.BaseTransport):
    """Sends to the stub, calling ``on_request`` first (which records, or waits)."""

    def __init__(self, on_request: Callable[[], None]) -> None:
        self._inner = httpx.HTTPTransport()
        self._on_request = on_request

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._on_request()
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def recording_client(url: str, on_request: Callable[[], None]) -> PaymentsClient:
    http = httpx.Client(base_url=url, timeout=5.0, transport=Blocking(on_request))
    return PaymentsClient(http, api_key=STUB_KEY, max_attempts=1)


class TestProviderCalls:
    def test_the_payment_tasks_call_the_provider_outside_any_transaction(
        self,
        session: Session,
        market: Market,
        money_stub_url: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Authorization, capture, the owner's connected account and the payout: each call
        of payments.drive finds its session out of any transaction."""
        from app.bookings import delivery
        from app.bookings import flows as booking_flows

        in_transaction: list[bool] = []
        payments = recording_client(
            money_stub_url, lambda: in_transaction.append(session.in_transaction())
        )
        monkeypatch.setattr(jobs, "get_payments_client", lambda _settings: payments)
        booking = make_service_booking(session, market, price_fen=100_000)
        assert booking.id is not None
        session.commit()  # the market, as committed before the task runs
        booking_flows.transition_booking(
            session=session, user=market.owner, booking_id=booking.id, action="accept"
        )
        jobs.drive_booking_payments(session, booking.id)  # the authorization
        for action in ("start", "complete"):
            booking_flows.transition_booking(
                session=session, user=market.owner, booking_id=booking.id, action=action
            )
        delivery.accept_delivery(session=session, user=market.buyer, booking_id=booking.id)
        jobs.drive_booking_payments(session, booking.id)  # the capture, then the payout
        jobs.reconcile_task(session)
        payments.close()
        assert len(in_transaction) >= 5
        assert not any(in_transaction)

    def test_no_connection_idles_in_a_transaction_while_the_provider_answers(
        self, app_engine: Engine, money_stub_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """PostgreSQL's own view: while the reconciliation's first call waits, no
        connection of the test database is idle in a transaction."""
        if app_engine.dialect.name != "postgresql":
            pytest.skip("pg_stat_activity is PostgreSQL's")
        watch = Held(app_engine)
        arrived, release = threading.Event(), threading.Event()

        def first_waits() -> None:
            if not arrived.is_set():
                arrived.set()
                release.wait(10)

        payments = recording_client(money_stub_url, first_waits)
        monkeypatch.setattr(jobs, "get_payments_client", lambda _settings: payments)

        def reconcile() -> None:
            with Session(app_engine) as task_session:
                jobs.reconcile_task(task_session)

        worker = threading.Thread(target=reconcile)
        worker.start()
        try:
            assert arrived.wait(10)
            watch.look("provider call")
        finally:
            release.set()
            worker.join(30)
            watch.close()
            payments.close()
            with app_engine.begin() as conn:  # the events the reconciliation committed
                conn.execute(text("DELETE FROM payment_event"))
        assert watch.seen == [("provider call", 0, 0)]
