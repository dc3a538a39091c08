"""The dashboard benchmark end to end on a tiny SQLite market: it builds, times both
paths and finds the raw rows and the rolled-up history showing the same figures."""

from __future__ import annotations

import pytest

from app import db
from app.bench.dashboard import run
from app.config import get_settings


def test_the_dashboard_benchmark_runs_and_both_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    # run() points the process's settings at its own database: keep that to this test
    monkeypatch.setenv("DATABASE_URL", "sqlite:///unused.db")
    monkeypatch.setenv("CAPSHARE_JOBS_IN_PROCESS", "false")
    try:
        result = run(url=None, machines=12, bookings=60, repeat=1)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        db.get_engine.cache_clear()
    assert result["machines"] == 12 and result["booking"] == 60
    assert result["availability_window"] > 0 and result["machine_state_span"] > 0
    assert result["same_figures"] is True and result["machine_day_rows"] > 0
    timings = {k: v for k, v in result.items() if k.endswith("_ms")}
    assert timings and all(v >= 0 for v in timings.values())
