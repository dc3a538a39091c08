"""Benchmark: the operator dashboard over a large market, read from the raw rows (the
baseline: every figure from windows, bookings and spans) and from the rolled-up history,
in one run. Each market has, per machine, a week of past offered windows (12 hours a
day) with about 50 telemetry spans, 14 days of windows ahead, and bookings (20 per
machine by default) half in the past week and half ahead. Times the dashboard service
and GET /operator through the real app, signed in as the operator of every cluster,
and prints medians; not a test."""

from __future__ import annotations

import datetime as dt
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert, text, update
from sqlmodel import Session, col, select

from app.db import make_engine
from app.migrations import upgrade
from models import (
    AvailabilityWindow,
    Booking,
    Cluster,
    Machine,
    MachineStateSpan,
    Organization,
    Process,
    Role,
    User,
    utcnow,
)

CHUNK = 500  # machines whose rows are generated and inserted at a time


def _windows_and_spans(rng: random.Random, mid: int, now: dt.datetime) -> Iterator[tuple[str, dict[str, Any]]]:  # fmt: skip
    for d in range(14):
        start = now + dt.timedelta(days=d, hours=12)
        yield "w", {"machine_id": mid, "start_at": start, "end_at": start + dt.timedelta(hours=12)}
    # the past week: 12 offered hours a day, and states reported by four machines in five
    past = [(now - dt.timedelta(days=d, hours=-12), now - dt.timedelta(days=d - 1)) for d in range(1, 8)]  # fmt: skip
    for a, b in past:
        yield "w", {"machine_id": mid, "start_at": a, "end_at": b}
    if rng.random() < 0.2:
        return
    t = now - dt.timedelta(days=7)
    while t < now:
        end = min(t + dt.timedelta(minutes=rng.randint(110, 290)), now)
        inside = sum(max(0, int((min(end, b) - max(t, a)).total_seconds())) for a, b in past)
        yield "s", {"machine_id": mid, "state": rng.choice(["running", "running", "idle", "down"]),
                    "start_at": t, "end_at": end, "reports": 1, "offered_s": inside}  # fmt: skip
        t = end


def _bulk(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert rows of one shape: COPY on PostgreSQL (a 20,000-machine market is 1.5 M
    rows), a multi-row INSERT elsewhere."""
    if not rows:
        return
    if session.get_bind().dialect.name != "postgresql":
        session.execute(insert(table), rows)
        return
    columns = list(rows[0])
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor().copy(f"COPY {table.__tablename__} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


def build_market(session: Session, *, machines: int, bookings: int, seed: int = 7) -> User:
    rng = random.Random(seed)
    op_org = Organization(name="bench operator", is_operator=True)
    owner = Organization(name="bench owner", is_owner=True, lat=30.0, lon=120.0)
    session.add_all([op_org, owner])
    session.flush()
    clusters = [Cluster(key=f"bench-{i}", name_en=f"Bench {i}", name_zh=f"集群{i}", city="X", lat=30, lon=120,
                        operator_org_id=op_org.id) for i in range(8)]  # fmt: skip
    session.add_all(clusters)
    session.flush()
    processes = list(session.exec(select(Process.key)).all())
    now = utcnow().replace(minute=0, second=0, microsecond=0)
    session.execute(insert(Machine), [
        {"owner_org_id": owner.id, "name": f"M{i}", "make_model": "bench", "process_key": rng.choice(processes),
         "materials": ["steel"], "certifications": [], "envelope_x_mm": 500, "envelope_y_mm": 400, "envelope_z_mm": 300,
         "tolerance_mm": 0.02, "speed_factor": 1.0, "hourly_rate_fen": 9000, "min_booking_minutes": 60, "leasable": True,
         "lat": 30.0, "lon": 120.0, "cluster_id": clusters[i % 8].id, "currency": "CNY", "status": "active",
         "created_at": now, "updated_at": now}
        for i in range(machines)
    ])  # fmt: skip
    ids = list(session.exec(select(Machine.id)).all())
    per = max(1, bookings // len(ids))
    reporting: list[int] = []
    for i in range(0, len(ids), CHUNK):
        rows: dict[str, list[dict[str, Any]]] = {"w": [], "s": [], "b": []}
        for mid in ids[i : i + CHUNK]:
            assert mid is not None
            for kind, row in _windows_and_spans(rng, mid, now):
                rows[kind].append(row)
            if rows["s"] and rows["s"][-1]["machine_id"] == mid:
                reporting.append(mid)
            for k in range(per):  # slots of 16 hours, so a machine's bookings never overlap
                start = now + dt.timedelta(hours=16 * (k - per // 2) + rng.randint(0, 10))
                state = rng.choice(
                    ["done", "done", "cancelled"]
                    if start < now
                    else ["confirmed", "proposed", "cancelled"]
                )
                rows["b"].append({"machine_id": mid, "kind": "lease", "state": state,
                                  "start_at": start, "end_at": start + dt.timedelta(hours=rng.randint(1, 5)), "org_id": owner.id,
                                  "price_fen": 9000, "currency": "CNY", "reason": "", "created_at": now, "updated_at": now})  # fmt: skip
        _bulk(session, AvailabilityWindow, rows["w"])
        _bulk(session, MachineStateSpan, rows["s"])
        _bulk(session, Booking, rows["b"])
    for i in range(0, len(reporting), 5000):
        session.execute(update(Machine).where(col(Machine.id).in_(reporting[i : i + 5000])).values(
            last_reported_at=now, reported_state="running"))  # fmt: skip
    assert op_org.id is not None  # flushed above
    user = User(org_id=op_org.id, email="bench@op", full_name="bench", password_hash="x",
                roles=[Role.operator.value])  # fmt: skip
    session.add(user)
    session.commit()
    return user


def _median(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _analyze(engine: Any) -> None:
    with engine.connect() as conn:  # planner statistics, as autovacuum (or a DBA) would keep them
        conn.exec_driver_sql("ANALYZE")
        conn.commit()


def run(*, url: str | None, machines: int, bookings: int | None, repeat: int,
        fresh: bool = False) -> dict[str, Any]:  # fmt: skip
    """Build the market, then time the dashboard from the raw rows, roll the history up,
    and time it again: the service alone and GET /operator over the real app."""
    import os
    import re

    from fastapi.testclient import TestClient

    from app import db
    from app.config import get_settings
    from app.dashboard import history
    from app.dashboard.service import operator_dashboard
    from app.main import create_app
    from app.security import hash_password

    bookings = bookings if bookings is not None else 20 * machines
    with tempfile.TemporaryDirectory() as tmp:
        url = url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        engine = make_engine(url)
        if fresh and engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
        upgrade(url=url)
        with Session(engine) as session:
            t0 = time.perf_counter()
            user = build_market(session, machines=machines, bookings=bookings)
            user.password_hash = hash_password("bench-password")
            session.add(user)
            session.commit()
            build_s = time.perf_counter() - t0
            user_id = user.id
            counts = {t: session.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                      for t in ("booking", "availability_window", "machine_state_span")}  # fmt: skip
        _analyze(engine)
        os.environ["DATABASE_URL"] = url
        # no periodic tasks beside the timings (the history rollup among them)
        os.environ["CAPSHARE_JOBS_IN_PROCESS"] = "false"
        get_settings.cache_clear()
        db.get_engine.cache_clear()
        tz = get_settings().display_timezone
        today = utcnow().astimezone(ZoneInfo(tz)).replace(hour=0, minute=0, second=0, microsecond=0)
        start, end = today.astimezone(dt.UTC), (today + dt.timedelta(days=15)).astimezone(dt.UTC)
        result: dict[str, Any] = {"database": url.split(":")[0], "machines": machines, **counts,
                                  "build_s": round(build_s, 1)}  # fmt: skip
        figures: dict[str, Any] = {}

        def service(raw: bool) -> Callable[[], object]:
            def call() -> None:
                with Session(engine) as s:
                    u = s.get(User, user_id)
                    assert u is not None
                    d = operator_dashboard(
                        session=s, user=u, start=start, end=end, tz=tz, history=not raw
                    )
                    figures["raw" if raw else "rolled"] = (round(d.offered_h, 3), round(d.booked_h, 3), d.gmv_fen,
                                                           d.done_bookings, round(d.monitored_offered_h, 3), round(d.running_h, 3))  # fmt: skip

            return call

        with TestClient(create_app()) as client:
            form = client.get("/login").text
            token = re.search(r'name="csrf_token" value="([^"]+)"', form)
            assert token is not None
            client.post("/login", data={"email": "bench@op", "password": "bench-password",
                                        "csrf_token": token.group(1)})  # fmt: skip

            def page() -> None:
                r = client.get("/operator")
                assert r.status_code == 200, r.text[:500]

            result["service_raw_ms"] = round(_median(service(True), repeat) * 1000)
            result["page_raw_ms"] = round(_median(page, repeat) * 1000)  # nothing rolled up yet
            with Session(engine) as s:
                t0 = time.perf_counter()
                report = history.roll_up(
                    session=s, tz=tz, settle_days=get_settings().history_settle_days
                )
                result["rollup_s"] = round(time.perf_counter() - t0, 2)
                result["machine_day_rows"] = report.rows
            _analyze(engine)
            result["service_rolled_ms"] = round(_median(service(False), repeat) * 1000)
            result["page_rolled_ms"] = round(_median(page, repeat) * 1000)
            shown = client.get("/operator").text
        result["speedup_page"] = round(result["page_raw_ms"] / max(1, result["page_rolled_ms"]), 1)
        result["same_figures"] = figures.get("raw") == figures.get("rolled")
        result["figures"] = figures.get("rolled")
        for key in ("booked-hours", "actual-utilization", "networking-rate"):
            found = re.search(rf'id="{key}">([^<]+)<', shown)
            result[key] = found.group(1) if found else None
        db.get_engine().dispose()
        engine.dispose()
    return result
