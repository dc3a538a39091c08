"""Benchmark: machine search and the lists over a large market, before and after.

    python -m app.bench.search --machines 500 5000 20000 \\
        --url postgresql+psycopg://postgres@127.0.0.1:5432/test_search

For each size it builds a market with bulk inserts (machines of many owners, kinds,
places and states; offered windows and bookings; a buyer's orders), then times in
process (TestClient, median of ``--repeat``) ``GET /api/v1/machines``, a filtered search
(process + material + near/within), a free-time search, ``/buyer/machines`` and
``GET /api/v1/orders``, each once with the search in SQL (``after``) and once with the
implementation it replaced (``before``: every visible machine loaded, JSON lists and
distance filtered in Python, sorted, then sliced; one operations query per order).
The figures depend on the machine; nothing is asserted. ``--url`` is emptied first.

:func:`search_machines_before` is also the reference the search's test compares with.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import random
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text
from sqlmodel import Session, col, select

from app.machines import service as machines
from app.machines.service import MachineQuery, MachineSort, machine_public
from app.orders import service as orders
from matching.rules import haversine_km
from models import (
    AvailabilityWindow,
    Booking,
    Cluster,
    Machine,
    Material,
    Operation,
    Order,
    Organization,
    Process,
    Role,
    User,
    utcnow,
)
from models.machine import MachinePublic
from models.order import OperationPublic, OrderPublic

CERTIFICATIONS = ("ISO9001", "IATF16949", "AS9100", "ISO13485", "GB/T19001")
NAMES = ("Haas VF-2", "haas UMC", "DMG Mori", "Mazak", "Brother Speedio", "海天", "Zeta", "zeta")
CENTRES = ((29.87, 121.55), (30.27, 120.15), (29.31, 120.08), (28.0, 120.7))


def search_machines_before(
    *, session: Session, user: User, query: MachineQuery
) -> tuple[list[MachinePublic], int]:
    """The search as it was: the SQL prefilter, then JSON lists, the exact distance,
    the sort and the page in Python over every matching machine."""
    # the prefilter of today's search, without the membership and distance clauses
    rows = session.exec(
        select(Machine, Organization.name)
        .join(Organization, col(Organization.id) == Machine.owner_org_id)
        .where(*machines._filters(session, user, query))
    ).all()
    near = query.near_lat is not None and query.near_lon is not None
    results: list[MachinePublic] = []
    for machine, owner_name in rows:
        if query.material and query.material not in machine.materials:
            continue
        if query.certification and query.certification not in machine.certifications:
            continue
        distance = None
        if near:
            assert query.near_lat is not None and query.near_lon is not None
            distance = haversine_km(query.near_lat, query.near_lon, machine.lat, machine.lon)
            if query.within_km is not None and distance > query.within_km:
                continue
        results.append(
            machine_public(machine, viewer=user, owner_name=owner_name, distance_km=distance)
        )
    results.sort(key=_sort_key(query.sort))
    return results[query.offset : query.offset + query.limit], len(results)


def _sort_key(sort: MachineSort) -> Callable[[MachinePublic], Any]:
    keys: dict[MachineSort, Callable[[MachinePublic], Any]] = {
        MachineSort.rate: lambda m: (m.hourly_rate_fen, m.id),
        MachineSort.rate_desc: lambda m: (-m.hourly_rate_fen, m.id),
        MachineSort.distance: lambda m: (
            m.distance_km if m.distance_km is not None else math.inf,
            m.id,
        ),
        MachineSort.newest: lambda m: (-m.created_at.timestamp(), -m.id),
        MachineSort.name: lambda m: (m.name.lower(), m.id),
        MachineSort.tolerance: lambda m: (m.tolerance_mm, m.hourly_rate_fen, m.id),
    }
    return keys[sort]


def orders_public_before(*, session: Session, orders: list[Order]) -> list[OrderPublic]:
    """The orders list as it was: one operations query per order."""
    return [_order_public_alone(session, o) for o in orders]


def _order_public_alone(session: Session, order: Order) -> OrderPublic:
    assert order.id is not None
    ops = orders.list_operations(session=session, order_id=order.id)
    public = [OperationPublic.model_validate(o) for o in ops]
    return OrderPublic.model_validate(order, update={"operations": public})


@dataclass(frozen=True)
class BenchMarket:
    buyer: User  # a buyer org with ``orders`` orders
    owner: User  # the owner of the first org's machines
    operator: User  # operates half of the clusters
    admin: User
    now: dt.datetime


def build_market(
    session: Session, *, machines: int, orders: int = 0, seed: int = 11
) -> BenchMarket:
    """``machines`` machines of ``machines // 25 + 1`` owners, varied in every searched
    column (ties included), bulk inserted; a free window for most of them and a held
    booking inside it for some; a buyer with ``orders`` open orders of 1-3 operations."""
    rng = random.Random(seed)
    now = utcnow().replace(minute=0, second=0, microsecond=0)
    op_org = Organization(name="bench operator", is_operator=True)
    buyer_org = Organization(name="bench buyer", is_buyer=True, lat=30.0, lon=120.0)
    owners = [Organization(name=f"bench owner {i}", is_owner=True, lat=30.0, lon=120.0)
              for i in range(machines // 25 + 1)]  # fmt: skip
    session.add_all([op_org, buyer_org, *owners])
    session.flush()
    clusters = [Cluster(key=f"bench-{i}-{seed}", name_en=f"Bench {i}", name_zh=f"集群{i}", city="X",
                        lat=lat, lon=lon, operator_org_id=op_org.id if i % 2 else None)
                for i, (lat, lon) in enumerate(CENTRES * 2)]  # fmt: skip
    session.add_all(clusters)
    session.flush()
    processes = list(session.exec(select(Process.key)).all())
    materials = list(session.exec(select(Material.key)).all())
    rows = []
    for _ in range(machines):
        lat, lon = rng.choice(CENTRES)
        stamp = now - dt.timedelta(minutes=rng.randint(0, 500))  # ties on purpose
        rows.append({
            "owner_org_id": rng.choice(owners).id, "name": f"{rng.choice(NAMES)} #{rng.randint(1, 300)}",
            "make_model": rng.choice(NAMES), "process_key": rng.choice(processes),
            "materials": sorted(rng.sample(materials, rng.randint(1, 3))),
            "certifications": sorted(rng.sample(CERTIFICATIONS, rng.randint(0, 2))),
            "envelope_x_mm": rng.choice((0, 300, 600, 1000)), "envelope_y_mm": rng.choice((0, 300, 600)),
            "envelope_z_mm": rng.choice((0, 200, 500)), "tolerance_mm": rng.choice((0.005, 0.01, 0.02, 0.05, 0.1)),
            "speed_factor": 1.0, "hourly_rate_fen": rng.randint(40, 200) * 100, "min_booking_minutes": 60,
            "leasable": rng.random() < 0.6, "lat": round(lat + rng.gauss(0, 0.3), 4),
            "lon": round(lon + rng.gauss(0, 0.3), 4),
            "cluster_id": None if rng.random() < 0.1 else rng.choice(clusters).id, "currency": "CNY",
            "status": rng.choices(("active", "down", "retired"), (85, 10, 5))[0],
            "created_at": stamp, "updated_at": stamp,
        })  # fmt: skip
    for i in range(0, len(rows), 5000):
        session.execute(insert(Machine), rows[i : i + 5000])
    ids = list(
        session.exec(
            select(Machine.id).where(col(Machine.owner_org_id).in_([o.id for o in owners]))
        ).all()
    )
    windows, bookings = [], []
    for mid in ids:
        if rng.random() < 0.7:
            windows.append({"machine_id": mid, "start_at": now + dt.timedelta(days=1),
                            "end_at": now + dt.timedelta(days=rng.randint(3, 9))})  # fmt: skip
            if rng.random() < 0.3:
                start = now + dt.timedelta(days=2, hours=rng.randint(0, 6))
                bookings.append({"machine_id": mid, "kind": "lease", "org_id": buyer_org.id,
                                 "state": rng.choice(("confirmed", "proposed", "cancelled")),
                                 "start_at": start, "end_at": start + dt.timedelta(hours=3), "price_fen": 9000,
                                 "currency": "CNY", "reason": "", "created_at": now, "updated_at": now})  # fmt: skip
    for table, batch in ((AvailabilityWindow, windows), (Booking, bookings)):
        for i in range(0, len(batch), 5000):
            session.execute(insert(table), batch[i : i + 5000])
    assert buyer_org.id is not None and op_org.id is not None and owners[0].id is not None
    # bulk, like the demo's loader: the orders are open from the start
    order_rows: list[dict[str, Any]] = [
        {"buyer_org_id": buyer_org.id, "title": f"bench order {i}", "description": "", "status": "open",
         "release_at": now + dt.timedelta(hours=1), "due_at": now + dt.timedelta(days=7), "due_kind": "hard",
         "tardiness_fen_per_hour": 0, "delivery_lat": 30.0, "delivery_lon": 120.0, "delivery_address": "",
         "currency": "CNY", "created_at": now - dt.timedelta(minutes=i), "updated_at": now}
        for i in range(orders)
    ]  # fmt: skip
    if order_rows:
        session.execute(insert(Order), order_rows)
    order_ids = session.exec(select(Order.id).where(Order.buyer_org_id == buyer_org.id)).all()
    steps: list[dict[str, Any]] = [{"order_id": oid, "seq": seq, "process_key": "milling_3axis", "material_key": "aluminium",
              "quantity": 1, "part_x_mm": 0, "part_y_mm": 0, "part_z_mm": 0, "std_duration_min": 120,
              "certifications": [], "notes": ""}
             for oid in order_ids for seq in range(1, rng.randint(1, 3) + 1)]  # fmt: skip
    for i in range(0, len(steps), 5000):
        session.execute(insert(Operation), steps[i : i + 5000])
    users = [User(org_id=org_id, email=f"bench-{name}-{seed}@example.com", full_name=name, password_hash="x",
                  roles=[role.value]) for org_id, name, role in ((buyer_org.id, "buyer", Role.buyer),
                  (owners[0].id, "owner", Role.owner), (op_org.id, "operator", Role.operator),
                  (op_org.id, "admin", Role.admin))]  # fmt: skip
    session.add_all(users)
    session.commit()
    buyer, owner, operator, admin = users
    return BenchMarket(buyer=buyer, owner=owner, operator=operator, admin=admin, now=now)


@contextmanager
def _before() -> Iterator[None]:
    """The replaced implementations, for as long as the block runs."""
    search, lists = machines.search_machines, orders.orders_public
    machines.search_machines = search_machines_before
    orders.orders_public = orders_public_before
    try:
        yield
    finally:
        machines.search_machines, orders.orders_public = search, lists


def _median_ms(call: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times) * 1000, 1)


def _reset(url: str) -> None:
    from app.db import make_engine

    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def run_size(*, url: str, machines_n: int, orders_n: int, repeat: int) -> dict[str, Any]:
    import os

    from fastapi.testclient import TestClient

    from app import db
    from app.config import get_settings
    from app.db import make_engine
    from app.main import create_app
    from app.migrations import upgrade
    from app.security import create_access_token, hash_password

    _reset(url)
    upgrade(url=url)
    engine = make_engine(url)
    with Session(engine) as session:
        t0 = time.perf_counter()
        market = build_market(session, machines=machines_n, orders=orders_n)
        buyer = market.buyer
        buyer.password_hash = hash_password("bench-password")
        session.add(buyer)
        session.commit()
        session.refresh(buyer)
        build_s = time.perf_counter() - t0
    with engine.connect() as conn:  # planner statistics, as autovacuum would keep them
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    engine.dispose()
    os.environ["DATABASE_URL"] = url
    os.environ["CAPSHARE_JOBS_IN_PROCESS"] = "false"  # no periodic jobs (and provider calls)
    get_settings.cache_clear()
    db.get_engine.cache_clear()
    assert buyer.id is not None
    token, _ = create_access_token(settings=get_settings(), user_id=buyer.id)
    api = {"Authorization": f"Bearer {token}"}
    free_from = (market.now + dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    free_to = (market.now + dt.timedelta(days=2, hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    paths = {
        "GET /machines": "/api/v1/machines",
        "filtered search": "/api/v1/machines?process=milling_3axis&material=aluminium"
        "&near_lat=29.87&near_lon=121.55&within_km=40&sort=distance",
        "free-time search": f"/api/v1/machines?free_from={free_from}&free_to={free_to}",
        "/buyer/machines": "/buyer/machines",
        "GET /orders": "/api/v1/orders",
    }
    result: dict[str, Any] = {
        "machines": machines_n,
        "orders": orders_n,
        "build_s": round(build_s, 1),
    }
    with TestClient(create_app()) as client:
        form = client.get("/login").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert csrf is not None
        client.post("/login", data={"email": buyer.email, "password": "bench-password",
                                    "csrf_token": csrf.group(1)})  # fmt: skip
        for name, path in paths.items():
            headers = api if path.startswith("/api") else {}
            for variant in ("before", "after"):
                with _before() if variant == "before" else _nothing():
                    answer = client.get(path, headers=headers)
                    assert answer.status_code == 200, answer.text[:300]
                    result[f"{name} {variant}"] = _median_ms(
                        partial(client.get, path, headers=headers), repeat
                    )
    db.get_engine().dispose()
    return result


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--machines", type=int, nargs="+", default=[500, 5000])
    parser.add_argument("--orders", type=int, default=500, help="open orders of the buyer")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--url", default=None, help="database URL (default: a temporary SQLite)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        results = [run_size(url=args.url or f"sqlite:///{Path(tmp) / f'bench-{n}.db'}", machines_n=n,
                            orders_n=args.orders, repeat=args.repeat) for n in args.machines]  # fmt: skip
    url = args.url or "sqlite"
    names = [k[: -len(" after")] for k in results[0] if k.endswith(" after")]
    print(f"database: {url.split(':')[0]}; median ms of {args.repeat}; before -> after (ratio)")  # noqa: T201
    print(f"{'path':<18}" + "".join(f"{r['machines']:>26,}" for r in results))  # noqa: T201
    for name in names:
        cells = [f"{r[name + ' before']:>9} -> {r[name + ' after']:>6} ({r[name + ' before'] / max(r[name + ' after'], 0.01):.1f}x)"
                 for r in results]  # fmt: skip
        print(f"{name:<18}" + "".join(f"{c:>26}" for c in cells))  # noqa: T201
    print("market build s: " + ", ".join(str(r["build_s"]) for r in results))  # noqa: T201


if __name__ == "__main__":
    main()
