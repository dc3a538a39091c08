"""Benchmark: the operator dashboard page over a large market (default 10,000
machines and 200,000 bookings), GET /operator through the real app, timed several
times. Prints the median and the slowest run; not a test."""

from __future__ import annotations

import datetime as dt
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert, update
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
    windows, rows = [], []
    for mid in ids:
        for d in range(14):
            start = now + dt.timedelta(days=d, hours=12)
            windows.append(
                {"machine_id": mid, "start_at": start, "end_at": start + dt.timedelta(hours=12)}
            )
    # the past week: 12 offered hours a day, and states reported by four machines in five
    spans: list[dict[str, Any]] = []
    for mid in ids:
        past = [
            (now - dt.timedelta(days=d, hours=-12), now - dt.timedelta(days=d - 1))
            for d in range(1, 8)
        ]
        windows += [{"machine_id": mid, "start_at": a, "end_at": b} for a, b in past]
        if rng.random() < 0.2:
            continue
        t = now - dt.timedelta(days=7)
        while t < now:
            end = min(t + dt.timedelta(hours=rng.randint(2, 6)), now)
            inside = sum(max(0, int((min(end, b) - max(t, a)).total_seconds())) for a, b in past)
            spans.append({"machine_id": mid, "state": rng.choice(["running", "running", "idle", "down"]),
                          "start_at": t, "end_at": end, "reports": 1, "offered_s": inside})  # fmt: skip
            t = end
    for i in range(0, len(windows), 20000):
        session.execute(insert(AvailabilityWindow), windows[i : i + 20000])
    for i in range(0, len(spans), 20000):
        session.execute(insert(MachineStateSpan), spans[i : i + 20000])
    session.execute(update(Machine).where(col(Machine.id).in_({s["machine_id"] for s in spans})).values(
        last_reported_at=now, reported_state="running"))  # fmt: skip
    per = max(1, bookings // len(ids))
    for mid in ids:
        for k in range(per):
            # one slot of 16 hours each, so a machine's bookings never overlap
            start = now + dt.timedelta(hours=16 * k + rng.randint(0, 10))
            rows.append({"machine_id": mid, "kind": "lease", "state": rng.choice(["confirmed", "done", "proposed", "cancelled"]),
                         "start_at": start, "end_at": start + dt.timedelta(hours=rng.randint(1, 5)), "org_id": owner.id,
                         "price_fen": 9000, "currency": "CNY", "reason": "", "created_at": now, "updated_at": now})  # fmt: skip
    for i in range(0, len(rows), 20000):
        session.execute(insert(Booking), rows[i : i + 20000])
    assert op_org.id is not None  # flushed above
    user = User(
        org_id=op_org.id,
        email="bench@op",
        full_name="bench",
        password_hash="x",
        roles=[Role.operator.value],
    )
    session.add(user)
    session.commit()
    return user


def run(*, url: str | None, machines: int, bookings: int, repeat: int) -> dict[str, Any]:
    """Build the market, then time GET /operator (queries and page) over HTTP
    through the real app, signed in as the cluster operator."""
    import os
    import re

    from fastapi.testclient import TestClient

    from app import db
    from app.config import get_settings
    from app.main import create_app
    from app.security import hash_password

    with tempfile.TemporaryDirectory() as tmp:
        url = url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url=url)
        engine = make_engine(url)
        with Session(engine) as session:
            t0 = time.perf_counter()
            user = build_market(session, machines=machines, bookings=bookings)
            user.password_hash = hash_password("bench-password")
            session.add(user)
            session.commit()
            build_s = time.perf_counter() - t0
        with (
            engine.connect() as conn
        ):  # planner statistics, as autovacuum (or a DBA) would keep them
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
        engine.dispose()
        os.environ["DATABASE_URL"] = url
        get_settings.cache_clear()
        db.get_engine.cache_clear()
        times: list[float] = []
        with TestClient(create_app()) as client:
            form = client.get("/login").text
            token = re.search(r'name="csrf_token" value="([^"]+)"', form)
            assert token is not None
            client.post(
                "/login",
                data={
                    "email": "bench@op",
                    "password": "bench-password",
                    "csrf_token": token.group(1),
                },
            )
            for _ in range(repeat):
                t0 = time.perf_counter()
                page = client.get("/operator")
                times.append(time.perf_counter() - t0)
                assert page.status_code == 200, page.text[:500]
            booked = re.search(r'id="booked-hours">([^<]+)<', page.text)
            actual = re.search(r'id="actual-utilization">([^<]+)<', page.text)
            networked = re.search(r'id="networking-rate">([^<]+)<', page.text)
        db.get_engine().dispose()
    return {"database": url.split(":")[0], "machines": machines, "bookings": bookings, "build_s": round(build_s, 1),
            "median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3), "runs": repeat,
            "booked_hours_shown": booked.group(1) if booked else None,
            "actual_utilization_shown": actual.group(1) if actual else None,
            "networking_rate_shown": networked.group(1) if networked else None, "html_kb": len(page.text) // 1024}  # fmt: skip
