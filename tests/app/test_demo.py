from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlmodel import Session, SQLModel, col, func, select

from app.db import make_engine
from app.demo.seed import seed_demo
from app.migrations import upgrade
from models import (
    AvailabilityRule,
    Booking,
    Cluster,
    Machine,
    Operation,
    Order,
    Organization,
    Process,
)


def test_demo_market_meets_the_brief(session: Session) -> None:
    counts = seed_demo(session, today=dt.date(2030, 3, 4))
    assert counts.clusters >= 8 and counts.owner_orgs >= 60 and counts.buyer_orgs >= 40
    assert counts.machines >= 400 and counts.orders >= 600 and counts.leases > 0
    assert counts.operator_orgs == counts.clusters and counts.rules > 0

    def n(model: type[SQLModel]) -> int:
        return session.exec(select(func.count()).select_from(model)).one()

    assert n(Machine) == counts.machines and n(Order) == counts.orders
    # every cluster has an operator, the three families all have machines
    assert (
        session.exec(
            select(func.count()).select_from(Cluster).where(col(Cluster.operator_org_id).is_(None))
        ).one()
        == 0
    )
    families = set(
        session.exec(
            select(Process.family).join(Machine, col(Machine.process_key) == Process.key)
        ).all()
    )
    assert {"cnc", "garment", "additive"} <= families
    multi = session.exec(select(Operation.order_id).where(Operation.seq == 2)).all()
    assert len(multi) == counts.multi_step_orders > 50
    # leases lie inside one offered window of their machine and never overlap one another
    from models import AvailabilityWindow

    leases = session.exec(
        select(Booking).order_by(col(Booking.machine_id), col(Booking.start_at))
    ).all()
    for b in leases:
        assert b.start_at < b.end_at and b.price_fen > 0
        inside = session.exec(select(AvailabilityWindow.id).where(
            AvailabilityWindow.machine_id == b.machine_id, col(AvailabilityWindow.start_at) <= b.start_at,
            col(AvailabilityWindow.end_at) >= b.end_at)).first()  # fmt: skip
        assert inside is not None, b
    for a, b in zip(leases, leases[1:], strict=False):
        assert a.machine_id != b.machine_id or a.end_at <= b.start_at
    assert n(AvailabilityRule) == counts.rules
    beilun = session.exec(select(Cluster).where(Cluster.key == "ningbo-beilun")).one()
    assert (round(beilun.lat, 1), round(beilun.lon, 1)) == (29.9, 121.8)
    assert n(Organization) == 1 + counts.operator_orgs + counts.owner_orgs + counts.buyer_orgs


def _fingerprint(tmp: Path, name: str) -> list[tuple[str, int, str]]:
    url = f"sqlite:///{tmp / name}"
    upgrade(url=url)
    engine = make_engine(url)
    with Session(engine) as s:
        seed_demo(s, today=dt.date(2030, 3, 4))
        rows = s.exec(
            select(Machine.name, Machine.hourly_rate_fen, Machine.process_key).order_by(
                col(Machine.id)
            )
        ).all()
    engine.dispose()
    return [(name, rate, process) for name, rate, process in rows]


def test_demo_market_is_deterministic(tmp_path: Path) -> None:
    assert _fingerprint(tmp_path, "a.db") == _fingerprint(tmp_path, "b.db")


def _seed_statements(tmp: Path, name: str, owners: int, orders: int) -> tuple[int, int]:
    """(statements the seed sent, machines it made) for a market of that size."""
    from sqlalchemy import event

    url = f"sqlite:///{tmp / name}"
    upgrade(url=url)
    engine = make_engine(url)
    sent: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: sent.append(a[2]))
    with Session(engine) as s:
        counts = seed_demo(
            s, owners=owners, buyers=owners // 2, orders=orders, today=dt.date(2030, 3, 4)
        )
    engine.dispose()
    return len(sent), counts.machines


def test_seeding_writes_in_bulk_whatever_the_size(tmp_path: Path) -> None:
    # a province-sized market is seeded by the same statements as a small one: the
    # number of round trips does not grow with the market (rows go in executemany / COPY)
    small, small_machines = _seed_statements(tmp_path, "s.db", owners=12, orders=40)
    large, large_machines = _seed_statements(tmp_path, "l.db", owners=60, orders=400)
    assert large_machines > 4 * small_machines
    assert large == small
