"""Test database and clients.

The schema comes from the real Alembic migrations, once per run, on SQLite (a file
under the pytest temp dir) or on PostgreSQL when TEST_DATABASE_URL is set. Each
test runs inside a transaction that is rolled back: services' commits become
savepoint releases.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fastapi.routing
import jinja2
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, text
from sqlmodel import Session

from app import tasks
from app.config import Settings, get_settings
from app.db import current_request_session, get_session, make_engine
from app.main import create_app
from app.migrations import upgrade

TEST_SECRET = "test-secret-key-not-for-production-0123456789"

# Apps built by tests (and servers they start) run no periodic jobs of their own:
# tests drive app.jobs explicitly.
os.environ.setdefault("CAPSHARE_JOBS_IN_PROCESS", "false")
# Deferred tasks wait for the test to run them (``run_tasks``): side effects happen when the
# test says, in the test's own session. Servers that tests start choose their own runner.
os.environ.setdefault("CAPSHARE_TASK_RUNNER", "manual")
os.environ.setdefault("CAPSHARE_PAYMENTS_INLINE", "false")  # payments.drive: a test's own client


def test_database_url(tmp_root: Path) -> str:
    return os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{tmp_root / 'capshare-test.db'}"


def reset_postgres(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))


def pytest_report_header(config: pytest.Config) -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    return f"capshare test database: {'PostgreSQL ' + url if url else 'SQLite (file)'}"


@pytest.fixture(scope="session")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("capshare")


@pytest.fixture(scope="session")
def db_url(tmp_root: Path) -> str:
    return test_database_url(tmp_root)


@pytest.fixture(scope="session")
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    if engine.dialect.name == "postgresql":
        reset_postgres(engine)
    with engine.begin() as conn:
        upgrade(connection=conn)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        environment="test",
        database_url=db_url,
        secret_key=SecretStr(TEST_SECRET),
        payments_api_key=SecretStr("sk_test_suite"),
        payments_webhook_secret=SecretStr("whsec_suite"),
        payments_inline=False,  # payments stay pending unless a test drives them
        task_runner="manual",
        attachment_dir=tmp_path / "attachments",
        attachment_max_bytes=64 * 1024,
    )


@pytest.fixture(autouse=True)
def _no_tasks_left_over() -> Iterator[None]:
    tasks.forget_waiting()
    yield
    tasks.forget_waiting()


@pytest.fixture
def run_tasks(session: Session) -> Callable[[], int]:
    """``run_tasks()`` runs the tasks the test's commands deferred (and those they defer),
    in the test's session; returns how many ran."""
    return lambda: tasks.run_ready(session)


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    conn = engine.connect()
    trans = conn.begin()
    session = Session(bind=conn, join_transaction_mode="create_savepoint")
    try:
        yield session
    finally:
        session.close()
        trans.rollback()
        conn.close()


def request_session(session: Session) -> Callable[[], Session]:
    """The app's session in tests: the test's own. What the test wrote before the request
    is committed first (a savepoint released), so that a request starts, as in
    production, with no transaction of its own open."""

    def begin_request() -> Session:
        if session.in_transaction():
            session.commit()
        return session

    return begin_request


@pytest.fixture
def held_while_rendering(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every template rendered and every API response serialized in the test while the
    request's session was in a transaction (at the start: a connection held meanwhile; at the end:
    a lazy load that went back to the database). The ``client`` fixture fails a test that
    leaves any."""
    held: list[str] = []
    render = jinja2.Template.render

    def in_transaction() -> bool:
        current = current_request_session()  # None: a request that uses no database
        return current is not None and current.in_transaction()

    def checked_render(self: jinja2.Template, *args: Any, **kwargs: Any) -> str:
        before = in_transaction()
        html = render(self, *args, **kwargs)
        if before or in_transaction():
            held.append(
                f"template {self.name} (in a transaction {'before' if before else 'after'})"
            )
        return html

    serialize = fastapi.routing.serialize_response

    async def checked_serialize(**kwargs: Any) -> Any:
        before = in_transaction()
        content = await serialize(**kwargs)
        if before or in_transaction():
            ctx = kwargs.get("endpoint_ctx") or {}
            held.append(
                f"response of {ctx.get('function', '?')} (in a transaction {'before' if before else 'after'})"
            )
        return content

    monkeypatch.setattr(jinja2.Template, "render", checked_render)
    monkeypatch.setattr(fastapi.routing, "serialize_response", checked_serialize)
    return held


@pytest.fixture
def client(
    session: Session, settings: Settings, held_while_rendering: list[str]
) -> Iterator[TestClient]:
    app = create_app()
    app.dependency_overrides[get_session] = request_session(session)
    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app) as c:
        yield c
    assert not held_while_rendering, "rendered in a transaction: " + "; ".join(held_while_rendering)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[dt.datetime], None]:
    """``clock(t)`` moves the booking commands' clock to ``t`` (UTC), e.g. to the start of a
    booking that may only be started then."""
    from app.bookings import flows

    def travel(to: dt.datetime) -> None:
        monkeypatch.setattr(flows, "utcnow", lambda: to)

    return travel
