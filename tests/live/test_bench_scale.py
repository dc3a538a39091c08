"""``capshare bench scale`` end to end at two tiny sizes on the local PostgreSQL: every
figure of the report is there and sane, the growth is computed, the databases it made are
gone and its servers stopped. Never a speed: the figures are the benchmark's business."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from app.bench.scale import FIGURES, table
from app.cli.bench import bench_app

PG = os.environ.get("TEST_DATABASE_URL", "")
pytestmark = pytest.mark.slow
SIZES = [30, 50]
LATENCIES = [key for key, _ in FIGURES if key.endswith("_ms")]
TERMINAL = ("succeeded", "failed", "cancelled")


def _databases(base: str, prefix: str) -> list[str]:
    if base.startswith("sqlite"):
        return [p.name for p in Path(make_url(base).database or "").parent.glob(f"{prefix}*")]
    engine = create_engine(make_url(base).set(database="postgres"))
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    text("SELECT datname FROM pg_database WHERE datname LIKE :p"),
                    {"p": f"{prefix}%"},
                ).scalars()
            )
    finally:
        engine.dispose()


def test_bench_scale_reports_every_figure_at_two_tiny_sizes(tmp_path: Path) -> None:
    """On the PostgreSQL of TEST_DATABASE_URL (databases of its own), else SQLite files."""
    base = PG if PG.startswith("postgresql") else f"sqlite:///{tmp_path / 'base.db'}"
    prefix = f"capshare_scaletest_{uuid.uuid4().hex[:6]}"
    args = ["scale", "--machines", str(SIZES[0]), str(SIZES[1]),
            "--repeats", "3", "--quotes", "3", "--time-limit", "2", "--json",
            "--database-url", base, "--database-prefix", prefix,
            "--log-dir", str(tmp_path)]  # fmt: skip
    result = CliRunner().invoke(bench_app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)

    assert [r["size"] for r in report["sizes"]] == SIZES
    for size in report["sizes"]:
        missing = [key for key, _ in FIGURES if key not in size]
        assert missing == [], missing
        assert size["machines"] >= size["size"] // 2 and size["open_orders"] > 0
        assert size["seed_s"] > 0
        for key in LATENCIES:
            assert size[key] > 0, key
        assert size["quote_p95_ms"] >= size["quote_p50_ms"]
        for name, lat in size["latency"].items():
            assert lat["n"] >= 3 and lat["p95"] >= lat["p50"] > 0, name
        assert size["run_status"].split(":")[0] in TERMINAL
        assert size["run"]["scope"] == "market" and size["run_wall_s"] > 0
        assert isinstance(size["run_proposals"], int) and size["run_proposals"] >= 0
        assert size["run_peak_mib"] > 50  # a whole capshare process: tens of MiB at least
        assert size["cluster_run_status"] in TERMINAL and size["cluster_run_wall_s"] > 0
        assert size["cluster_run"]["scope"] == "cluster"
        assert isinstance(size["lease_during_run"], bool)
        if size["lease_during_run"]:
            assert size["lease_status"] in (201, 409)
    (step,) = report["growth"]
    assert (step["from"], step["to"]) == tuple(SIZES)
    ratio = report["sizes"][1]["machines"] / report["sizes"][0]["machines"]
    assert step["ratios"]["machines"] == pytest.approx(ratio, abs=0.01)
    assert set(step["ratios"]) >= {"bare_ms", "machines_ms", "quote_p95_ms", "run_wall_s"}

    printed = table(report)
    for _key, label in FIGURES:
        assert label in printed
    assert "30→50" in printed and "×" in printed
    assert _databases(base, prefix) == [], "the benchmark drops the databases it made"
    for size in SIZES:
        assert (tmp_path / f"serve-{size}.log").exists()
