from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from app.config import get_settings
from app.main import create_app


def _job_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "capshare-periodic"]


def test_the_in_process_runner_starts_and_stops_the_periodic_tasks_with_the_app(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("CAPSHARE_JOBS_IN_PROCESS", "true")
    monkeypatch.setenv("CAPSHARE_TASK_RUNNER", "threads")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/jobs.db")
    get_settings.cache_clear()
    from app import db

    db.get_engine.cache_clear()
    try:
        with TestClient(create_app()):
            assert len(_job_threads()) == 1
        assert _job_threads() == []
    finally:
        get_settings.cache_clear()
        db.get_engine.cache_clear()


def test_a_fleets_api_replica_runs_no_background_work(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("CAPSHARE_JOBS_IN_PROCESS", "false")
    monkeypatch.setenv("CAPSHARE_TASK_RUNNER", "procrastinate")
    get_settings.cache_clear()
    try:
        with TestClient(create_app()):
            names = {t.name for t in threading.enumerate()}
            assert not names & {"capshare-periodic", "capshare-worker"}
    finally:
        get_settings.cache_clear()
