"""A real capshare server (uvicorn in a subprocess, on loopback) over its own
database with real commits: the SQLite file or a fresh PostgreSQL database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.config import REPO_ROOT
from app.migrations import upgrade
from tests.conftest import TEST_SECRET


@dataclass(frozen=True)
class LiveServer:
    base_url: str
    database_url: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_database_url(tmp_path: Path) -> Iterator[str]:
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        yield f"sqlite:///{tmp_path / 'live.db'}"
        return
    name = f"capshare_live_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(base).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def start_server(
    args: list[str], env_extra: dict[str, str], port: int, log: Path, timeout_s: float = 60
) -> subprocess.Popen[bytes]:
    env = {**os.environ, **env_extra}
    with log.open("wb") as out:  # the child keeps its own handle
        proc = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(
        f"server did not answer in {timeout_s} s:\n{log.read_text(errors='replace')}"
    )


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 180) -> None:
    """Poll ``check`` until it holds (work another process does); fail naming ``what``.
    The deadline is generous: it bounds a hang, it does not measure speed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _serve(
    database_url: str, tmp_path: Path, port: int, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    upgrade(url=database_url)
    return start_server(
        [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        {"DATABASE_URL": database_url, "CAPSHARE_ENVIRONMENT": "test",
         "CAPSHARE_SECRET_KEY": TEST_SECRET, "CAPSHARE_PAYMENTS_API_KEY": STUB_KEY,
         "CAPSHARE_PAYMENTS_WEBHOOK_SECRET": STUB_WEBHOOK_SECRET, "CAPSHARE_PAYMENTS_INLINE": "false",
         "CAPSHARE_TASK_RUNNER": "threads", "CAPSHARE_ATTACHMENT_DIR": str(tmp_path / "files"),
         # waits for a connection bounded by the test's own timeouts, not the machine's speed
         "CAPSHARE_DB_POOL_TIMEOUT_S": "60", "CAPSHARE_REQUEST_TIMEOUT_S": "300", **env},
        port, tmp_path / "server.log",
    )  # fmt: skip


STUB_KEY = "sk_live_test_x"
STUB_WEBHOOK_SECRET = "whsec_live_test_x"


@pytest.fixture
def live_server(live_database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    port = free_port()
    proc = _serve(live_database_url, tmp_path, port, {})
    try:
        yield LiveServer(base_url=f"http://127.0.0.1:{port}", database_url=live_database_url)
    finally:
        stop_server(proc)


@pytest.fixture
def live_server_with_payments(live_database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """A capshare server that drives its payments (tasks on its own threads) against the stub
    (itself on loopback, sending its webhooks back to the server)."""
    from payments_stub import create_stub_app, serve_in_thread

    port = free_port()
    stub = create_stub_app(
        api_key=STUB_KEY, webhook_secret=STUB_WEBHOOK_SECRET,
        webhook_url=f"http://127.0.0.1:{port}/api/v1/webhooks/payments",
    )  # fmt: skip
    with serve_in_thread(stub) as stub_url:
        proc = _serve(live_database_url, tmp_path, port,
                      {"CAPSHARE_PAYMENTS_INLINE": "true", "CAPSHARE_PAYMENTS_BASE_URL": stub_url})  # fmt: skip
        try:
            yield LiveServer(base_url=f"http://127.0.0.1:{port}", database_url=live_database_url)
        finally:
            stop_server(proc)
