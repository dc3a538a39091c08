"""The image's commands without a container: ``infra/docker/entrypoint.sh`` run as a
subprocess, with this venv's ``capshare`` first on PATH as the image has it, over a
temporary SQLite database. Each server is polled with a generous deadline, never timed,
so these stay in the normal suite."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_SECRET
from tests.infra.deploy_files import (
    DOCKERFILE,
    ENTRYPOINT,
    K8S,
    healthcheck_command,
    yaml_documents,
)
from tests.live.conftest import free_port, stop_server

DEADLINE_S = 120.0

# the ``server`` fixture: start ROLE on PORT, return once HEALTH answers 200
ServerFactory = Callable[[str, int, str], "subprocess.Popen[bytes]"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment a container gets: capshare's settings only from here."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CAPSHARE_") and k not in ("DATABASE_URL", "PORT", "WEB_CONCURRENCY")
    }
    return {
        **clean,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOST": "127.0.0.1",  # the image listens on every interface; a test on loopback only
        "DATABASE_URL": f"sqlite:///{tmp_path / 'capshare.db'}",
        "CAPSHARE_ENVIRONMENT": "test",
        "CAPSHARE_SECRET_KEY": TEST_SECRET,
        "CAPSHARE_PAYMENTS_API_KEY": "sk_entrypoint_test",
        "CAPSHARE_PAYMENTS_WEBHOOK_SECRET": "whsec_entrypoint_test",
        "CAPSHARE_JOBS_IN_PROCESS": "false",
        "CAPSHARE_ATTACHMENT_DIR": str(tmp_path / "attachments"),
    }


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ENTRYPOINT), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


@pytest.fixture
def server(env: dict[str, str], tmp_path: Path) -> Iterator[ServerFactory]:
    started: list[subprocess.Popen[bytes]] = []

    def start(role: str, port: int, health: str) -> subprocess.Popen[bytes]:
        log = tmp_path / f"{role}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(ENTRYPOINT), role],
                env={**env, "PORT": str(port)},
                cwd=tmp_path,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append(proc)
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"{role} exited early ({proc.returncode}):\n{log.read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}{health}", timeout=2).status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        pytest.fail(f"{role} did not answer {health} in {DEADLINE_S} s:\n{log.read_text()}")

    yield start
    for proc in started:
        if proc.poll() is None:
            stop_server(proc)


def _tables(database: Path) -> set[str]:
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {str(name) for (name,) in rows}


def test_migrate_brings_a_fresh_database_to_head(env: dict[str, str], tmp_path: Path) -> None:
    done = run(["migrate"], env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "database at head" in done.stdout
    assert "alembic_version" in _tables(tmp_path / "capshare.db")
    check = run(["capshare", "db", "check"], env, tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "models and migrations agree" in check.stdout


def test_worker_runs_a_round_after_migrate(env: dict[str, str], tmp_path: Path) -> None:
    assert run(["migrate"], env, tmp_path).returncode == 0
    offline = {**env, "CAPSHARE_PAYMENTS_INLINE": "false"}  # no provider here to reconcile with
    done = run(["worker", "--once"], offline, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "proposals.expire: ok" in done.stdout and "match_runs.sweep: ok" in done.stdout
    # the worker pods' probe command (a worker serves no HTTP), as the kubelet runs it
    [worker] = yaml_documents(K8S / "worker-deployment.yaml")
    [container] = worker["spec"]["template"]["spec"]["containers"]
    for probe in ("readinessProbe", "livenessProbe"):
        command = container[probe]["exec"]["command"]
        checked = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, timeout=60)
        assert checked.returncode == 0, checked.stderr
    failing = subprocess.run(
        command,
        env={**env, "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"},
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert failing.returncode != 0, "the probe fails when the database is out of reach"


def test_api_serves_and_leaves_the_schema_alone(
    server: ServerFactory, env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    proc = server("api", port, "/api/v1/health")
    # the entrypoint exec'd capshare: signals from the container runtime reach the server
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
    assert any(part.endswith(b"capshare") for part in cmdline), cmdline
    # the image's HEALTHCHECK command, as the runtime would run it
    check = subprocess.run(
        healthcheck_command(DOCKERFILE.read_text()),
        env={**env, "PORT": str(port)},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    stop_server(proc)
    assert "alembic_version" not in _tables(tmp_path / "capshare.db"), "api must not migrate"


def test_payments_stub_serves_its_health(server: ServerFactory) -> None:
    port = free_port()
    server("payments-stub", port, "/_control/health")
    assert httpx.get(f"http://127.0.0.1:{port}/_control/health", timeout=10).status_code == 200


def test_any_other_command_runs_as_given(env: dict[str, str], tmp_path: Path) -> None:
    done = run(
        [sys.executable, "-c", "import sys; print(sys.argv[1:])", "two words", "x"], env, tmp_path
    )
    assert done.returncode == 0 and done.stdout.strip() == "['two words', 'x']"
    assert run(["sh", "-c", "exit 3"], env, tmp_path).returncode == 3
