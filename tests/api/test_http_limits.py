"""The HTTP guards: settings, body cap, pool saturation, 5xx bodies and keep-alive,
timeout, request id, metrics, readiness (app/middleware.py, app/main.py,
api/routes/health.py). Where the wire matters (a body never sent, a connection kept
open) a real uvicorn serves the app on a thread and a raw socket talks to it."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlmodel import Session

from api.deps import get_current_user
from app.config import MULTIPART_OVERHEAD_BYTES, REPO_ROOT, Settings, get_settings
from app.db import get_engine, get_session, make_engine
from app.logs import JsonFormatter
from app.main import create_app
from models import Role, User
from payments_stub import serve_in_thread

DEAD_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/capshare"  # nothing listens on 1

EnvSettings = Callable[..., Settings]


@pytest.fixture
def env_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[EnvSettings]:
    """``env_settings(max_body_bytes="...")``: set CAPSHARE_* variables and re-read the
    settings, as a process started with them would (create_app reads them)."""

    def apply(**values: str) -> Settings:
        for name, value in values.items():
            monkeypatch.setenv(f"CAPSHARE_{name.upper()}", value)
        get_settings.cache_clear()
        return get_settings()

    yield apply
    get_settings.cache_clear()


def fake_user() -> User:
    return User(id=1, org_id=1, email="u@example.com", full_name="U", password_hash="x",
                roles=[Role.buyer.value])  # fmt: skip


def session_on(engine: Engine) -> Callable[[], Iterator[Session]]:
    def get() -> Iterator[Session]:
        with Session(engine) as session:
            yield session

    return get


@contextmanager
def served(app: FastAPI) -> Iterator[tuple[str, int]]:
    """The app behind a real uvicorn on a thread: (host, port)."""
    with serve_in_thread(app) as url:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        yield parts.hostname, parts.port


def connect(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=20)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body. A server that never answers
    makes recv time out, which fails the test."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {buf!r}")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body[:length]


def get(sock: socket.socket, path: str) -> tuple[int, dict[str, str], bytes]:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: capshare\r\n\r\n".encode())
    return read_response(sock)


def saturated(reason: str) -> float:
    value = REGISTRY.get_sample_value("capshare_db_pool_saturated_total", {"reason": reason})
    return value or 0.0


class TestSettings:
    def test_the_pool_and_limits_come_from_the_environment(
        self, env_settings: EnvSettings, tmp_path: Path
    ) -> None:
        s = env_settings(db_pool_size="3", db_pool_overflow="2", db_pool_timeout_s="0.5",
                         max_body_bytes=str(30 * 1024 * 1024), request_timeout_s="12")  # fmt: skip
        assert (s.db_pool_size, s.db_pool_overflow, s.db_pool_timeout_s) == (3, 2, 0.5)
        assert (s.max_body_bytes, s.request_timeout_s) == (30 * 1024 * 1024, 12.0)
        engine = make_engine(f"sqlite:///{tmp_path / 'pool.db'}")
        assert engine.pool.size() == 3  # type: ignore[attr-defined]
        assert engine.pool.timeout() == 0.5  # type: ignore[attr-defined]
        engine.dispose()

    def test_the_body_cap_must_hold_an_attachment_and_its_multipart_envelope(self) -> None:
        needed = 1_000_000 + MULTIPART_OVERHEAD_BYTES
        with pytest.raises(ValidationError, match="max_body_bytes"):
            Settings(attachment_max_bytes=1_000_000, max_body_bytes=needed - 1)
        assert (
            Settings(attachment_max_bytes=1_000_000, max_body_bytes=needed).max_body_bytes == needed
        )

    def test_the_request_timeout_must_exceed_the_pool_timeout(self) -> None:
        with pytest.raises(ValidationError, match="request_timeout_s"):
            Settings(db_pool_timeout_s=5, request_timeout_s=5)

    @pytest.mark.parametrize(
        ("name", "value"),
        [("db_pool_size", 0), ("db_pool_overflow", -1), ("db_pool_timeout_s", 0),
         ("max_body_bytes", 0), ("request_timeout_s", 0)],
    )  # fmt: skip
    def test_out_of_range_values_are_refused(self, name: str, value: int) -> None:
        with pytest.raises(ValidationError, match=name):
            Settings.model_validate({name: value})


class TestBodyLimit:
    CAP = 1024 + MULTIPART_OVERHEAD_BYTES

    @pytest.fixture
    def address(self, env_settings: EnvSettings) -> Iterator[tuple[str, int]]:
        env_settings(attachment_max_bytes="1024", max_body_bytes=str(self.CAP))
        app = create_app()
        app.dependency_overrides[get_session] = session_on(make_engine(DEAD_DATABASE))
        with served(app) as address:
            yield address

    def test_a_declared_length_over_the_cap_is_refused_before_the_body_and_before_auth(
        self, address: tuple[str, int]
    ) -> None:
        with connect(address) as sock:
            # anonymous, and not one byte of the declared gigabyte is sent
            sock.sendall(b"POST /api/v1/orders/1/attachments HTTP/1.1\r\nHost: capshare\r\n"
                         b"Content-Type: multipart/form-data; boundary=x\r\n"
                         b"Content-Length: 1000000000\r\n\r\n")  # fmt: skip
            status, headers, body = read_response(sock)
        assert status == 413
        assert headers["content-type"] == "application/json"
        assert json.loads(body)["error"] == "ContentTooLarge"

    def test_a_chunked_body_is_counted_as_it_arrives(self, address: tuple[str, int]) -> None:
        with connect(address) as sock:
            sock.sendall(b"POST /api/v1/auth/token HTTP/1.1\r\nHost: capshare\r\n"
                         b"Content-Type: application/x-www-form-urlencoded\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
            chunk = b"a" * 16384
            for _ in range(self.CAP // len(chunk) + 2):  # over the cap, and no last chunk
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            status, _, body = read_response(sock)
        assert status == 413
        assert json.loads(body)["error"] == "ContentTooLarge"

    def test_a_chunked_body_under_the_cap_reaches_the_handler(
        self, address: tuple[str, int]
    ) -> None:
        form = b"username=nobody%40example.com&password=x"
        with connect(address) as sock:
            sock.sendall(b"POST /api/v1/auth/token HTTP/1.1\r\nHost: capshare\r\n"
                         b"Content-Type: application/x-www-form-urlencoded\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n"
                         b"%x\r\n%s\r\n0\r\n\r\n" % (len(form), form))  # fmt: skip
            status, headers, _ = read_response(sock)
        # the handler ran: it reached the (dead) database and said so
        assert status == 503 and headers["retry-after"] == "1"


class TestPoolSaturation:
    def test_an_exhausted_pool_answers_503_fast_and_recovers(
        self, engine: Engine, db_url: str
    ) -> None:
        tiny = make_engine(db_url, pool_size=1, max_overflow=0, pool_timeout=0.2)
        app = create_app()
        app.dependency_overrides[get_session] = session_on(tiny)
        app.dependency_overrides[get_current_user] = fake_user
        before = saturated("pool_timeout")
        with TestClient(app) as client:
            held = tiny.connect()  # the pool's only connection
            try:
                r = client.get("/api/v1/processes")
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"] == "1"
                assert r.json()["error"] == "ServiceUnavailable" and r.json()["detail"]
                assert client.get("/api/v1/health").json() == {"status": "ok"}
            finally:
                held.close()
            r = client.get("/api/v1/processes")
            assert r.status_code == 200 and r.json(), r.text
        assert saturated("pool_timeout") == before + 1
        tiny.dispose()

    def test_a_database_that_refuses_connections_answers_503(self) -> None:
        app = create_app()
        app.dependency_overrides[get_session] = session_on(make_engine(DEAD_DATABASE))
        app.dependency_overrides[get_current_user] = fake_user
        before = saturated("connect")
        with TestClient(app) as client:
            r = client.get("/api/v1/processes")
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"] == "ServiceUnavailable"
        assert saturated("connect") == before + 1

    def test_the_web_pages_show_their_error_page(self) -> None:
        app = create_app()

        @app.get("/boom-page", include_in_schema=False)
        def boom() -> None:
            raise RuntimeError("boom")

        with TestClient(app) as client:
            r = client.get("/boom-page")
        assert r.status_code == 500
        assert r.headers["content-type"].startswith("text/html")


class TestKeepAlive:
    def test_a_500_and_a_503_keep_the_connection_open(self, db_url: str, engine: Engine) -> None:
        tiny = make_engine(db_url, pool_size=1, max_overflow=0, pool_timeout=0.2)
        app = create_app()
        app.dependency_overrides[get_session] = session_on(tiny)
        app.dependency_overrides[get_current_user] = fake_user

        @app.get("/api/v1/boom")
        def boom() -> None:
            raise RuntimeError("an unexpected failure")

        held = tiny.connect()
        try:
            with served(app) as address, connect(address) as sock:
                status, headers, body = get(sock, "/api/v1/boom")
                assert status == 500 and headers["content-type"] == "application/json"
                assert json.loads(body) == {"error": "InternalError",
                                            "detail": "an unexpected error occurred", "field": None}  # fmt: skip
                assert headers.get("connection") != "close"
                status, headers, body = get(sock, "/api/v1/processes")  # the same socket
                assert status == 503 and headers["retry-after"] == "1"
                assert json.loads(body)["error"] == "ServiceUnavailable"
                held.close()
                status, _, _ = get(sock, "/api/v1/processes")  # and again
                assert status == 200
        finally:
            held.close()
            tiny.dispose()


class TestTimeout:
    def test_a_slow_handler_answers_504_and_still_ends_cleanly(
        self, env_settings: EnvSettings
    ) -> None:
        env_settings(db_pool_timeout_s="0.1", request_timeout_s="0.3")
        release, finished, closed = threading.Event(), threading.Event(), threading.Event()
        app = create_app()

        def tracked_session() -> Iterator[None]:
            try:
                yield None
            finally:
                closed.set()

        from fastapi import Depends

        @app.get("/api/v1/slow")
        def slow(_session: None = Depends(tracked_session)) -> dict[str, str]:
            release.wait(30)  # held until the test has its 504: no race on speed
            finished.set()
            return {"late": "answer"}

        with served(app) as (host, port):
            r = httpx.get(f"http://{host}:{port}/api/v1/slow", timeout=20)
            assert r.status_code == 504
            assert r.json()["error"] == "Timeout"
            assert not finished.is_set()  # the 504 came while the handler was still running
            release.set()
            assert finished.wait(10) and closed.wait(10)  # it ran on, its teardown ran
            assert httpx.get(f"http://{host}:{port}/api/v1/health", timeout=20).status_code == 200


class TestRequestId:
    @pytest.fixture
    def lines(self) -> Iterator[list[dict[str, object]]]:
        captured: list[dict[str, object]] = []

        class Capture(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                captured.append(json.loads(self.format(record)))

        handler = Capture()
        handler.setFormatter(JsonFormatter())
        logger = logging.getLogger("capshare")
        logger.addHandler(handler)
        old_level = logger.level
        logger.setLevel(logging.INFO)
        yield captured
        logger.removeHandler(handler)
        logger.setLevel(old_level)

    def test_a_sane_id_is_echoed_and_in_every_line_of_the_request(
        self, lines: list[dict[str, object]]
    ) -> None:
        app = create_app()

        @app.get("/api/v1/noisy")
        def noisy() -> dict[str, str]:  # a sync handler: it logs from a worker thread
            logging.getLogger("capshare.test").info("inside the handler")
            return {}

        with TestClient(app) as client:
            r = client.get("/api/v1/noisy", headers={"X-Request-ID": "edge-7f3a.2:1"})
        assert r.headers["x-request-id"] == "edge-7f3a.2:1"
        inside = [x for x in lines if x["message"] == "inside the handler"]
        access = [x for x in lines if x["logger"] == "capshare.access"]
        assert inside and inside[0]["request_id"] == "edge-7f3a.2:1"
        assert len(access) == 1
        line = access[0]
        assert line["request_id"] == "edge-7f3a.2:1"
        assert (line["method"], line["path"], line["status"]) == ("GET", "/api/v1/noisy", 200)
        assert isinstance(line["duration_ms"], float)
        assert {"time", "level", "logger", "message"} <= line.keys()

    @pytest.mark.parametrize("sent", ["x" * 129, "has space", "<script>", "-leading-dash"])
    def test_an_insane_id_is_replaced(self, client: TestClient, sent: str) -> None:
        got = client.get("/api/v1/health", headers={"X-Request-ID": sent}).headers["x-request-id"]
        assert got != sent and len(got) == 32 and int(got, 16) >= 0

    def test_without_one_an_id_is_made_per_request(self, client: TestClient) -> None:
        ids = {client.get("/api/v1/health").headers["x-request-id"] for _ in range(3)}
        assert len(ids) == 3


class TestMetrics:
    def test_latency_is_labelled_by_route_template(self, client: TestClient) -> None:
        client.get("/api/v1/machines/424242")  # anonymous: 401, but routed
        r = client.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        text = r.text
        assert ('capshare_http_request_duration_seconds_bucket{le="0.005",method="GET",'
                'route="/api/v1/machines/{machine_id}",status="401"}') in text  # fmt: skip
        assert "424242" not in text
        assert "capshare_http_requests_in_flight" in text
        for name in ("capshare_match_run_duration_seconds", "capshare_match_runs_total",
                     "capshare_job_failures_total", "capshare_queue_depth",
                     "capshare_payment_failures_total", "capshare_db_pool_saturated_total"):  # fmt: skip
            assert f"# TYPE {name}" in text

    def test_an_unmatched_path_is_one_label(self, client: TestClient) -> None:
        client.get("/no/such/page/123")
        assert 'route="unmatched",status="404"' in client.get("/metrics").text

    def test_worker_processes_add_up_in_multiprocess_mode(self, tmp_path: Path) -> None:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
        count = "from app.metrics import MATCH_RUNS; MATCH_RUNS.labels(outcome='ok').inc()"
        for _ in range(2):  # two processes, one count each
            subprocess.run([sys.executable, "-c", count], env=env, cwd=REPO_ROOT, check=True)
        show = "from app.metrics import render; print(render()[0].decode())"
        out = subprocess.run([sys.executable, "-c", show], env=env, cwd=REPO_ROOT, check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
        assert 'capshare_match_runs_total{outcome="ok"} 2.0' in out


class TestHealthAndReady:
    def test_health_never_touches_the_database(self) -> None:
        app = create_app()

        def no_database() -> Engine:
            raise AssertionError("health touched the database")

        app.dependency_overrides[get_engine] = no_database
        app.dependency_overrides[get_session] = no_database
        with TestClient(app) as client:
            assert client.get("/api/v1/health").json() == {"status": "ok"}

    def test_ready_when_the_database_answers(self, engine: Engine) -> None:
        app = create_app()
        app.dependency_overrides[get_engine] = lambda: engine
        with TestClient(app) as client:
            r = client.get("/api/v1/ready")
        assert r.status_code == 200
        assert r.json() == {"status": "ready", "checks": {"database": "ok", "queue": "ok"}}

    def test_not_ready_names_what_failed(self) -> None:
        dead = make_engine(DEAD_DATABASE)
        app = create_app()
        app.dependency_overrides[get_engine] = lambda: dead
        with TestClient(app) as client:
            r = client.get("/api/v1/ready")
        assert r.status_code == 503
        assert r.json()["error"] == "NotReady" and "database" in r.json()["detail"]
        assert r.json()["checks"] == {"database": "OperationalError", "queue": "ok"}  # in-process
        dead.dispose()

    def test_not_ready_when_procrastinates_jobs_cannot_be_read(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CAPSHARE_TASK_RUNNER", "procrastinate")
        get_settings.cache_clear()
        dead = make_engine(DEAD_DATABASE)
        app = create_app()
        app.dependency_overrides[get_engine] = lambda: dead
        try:
            with TestClient(app) as client:
                r = client.get("/api/v1/ready")
        finally:
            get_settings.cache_clear()
            dead.dispose()
        assert r.status_code == 503
        assert r.json()["checks"] == {"database": "OperationalError", "queue": "OperationalError"}


def test_serve_logs_one_json_object_per_line() -> None:
    """The logging config `capshare serve` gives uvicorn writes JSON lines."""
    code = ("import logging, logging.config; from app.logs import LOGGING_CONFIG; "
            "logging.config.dictConfig(LOGGING_CONFIG); "
            "logging.getLogger('capshare.x').warning('hello %s', 'there')")  # fmt: skip
    err = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True,
                         capture_output=True, text=True).stderr  # fmt: skip
    line = json.loads(err.strip())
    assert (line["level"], line["logger"], line["message"]) == (
        "WARNING",
        "capshare.x",
        "hello there",
    )
