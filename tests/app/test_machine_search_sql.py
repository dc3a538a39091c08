"""The search in SQL answers exactly what the search in Python answered (the
implementation it replaced, kept in app/bench/search.py), for every filter, sort and
page, on a generated market of varied machines."""

from __future__ import annotations

import datetime as dt
import itertools
import random
import re
from typing import Any

import pytest
from sqlmodel import Session, select

from app.bench.search import BenchMarket, build_market, search_machines_before
from app.errors import InvalidInput
from app.machines.service import MachineQuery, MachineSort, search_machines
from models import Machine, Material, Process, User
from models.machine import MachineStatus


@pytest.fixture
def market(session: Session) -> BenchMarket:
    return build_market(session, machines=300, seed=5)


def _same(session: Session, user: User, query: MachineQuery) -> int:
    got, total = search_machines(session=session, user=user, query=query)
    want, want_total = search_machines_before(session=session, user=user, query=query)
    assert total == want_total, query
    assert [m.model_dump() for m in got] == [m.model_dump() for m in want], query
    return total


def _random_query(rng: random.Random, session: Session, now: dt.datetime) -> MachineQuery:
    processes = list(session.exec(select(Process.key)).all())
    families = sorted(set(session.exec(select(Process.family)).all()))
    materials = list(session.exec(select(Material.key)).all())
    machines = list(session.exec(select(Machine)).all())
    pick: dict[str, Any] = {}
    if rng.random() < 0.3:
        pick["process_key"] = rng.choice(processes)
    if rng.random() < 0.15:
        pick["family"] = rng.choice(families)
    if rng.random() < 0.4:
        pick["material"] = rng.choice(materials)
    if rng.random() < 0.3:
        pick["certification"] = rng.choice(("ISO9001", "AS9100", "GB/T19001", "none"))
    if rng.random() < 0.2:
        pick["part_x_mm"], pick["part_y_mm"] = rng.choice((100, 400, 800)), rng.choice((0, 350))
        pick["part_z_mm"] = rng.choice((0, 250))
    if rng.random() < 0.2:
        pick["tolerance_mm"] = rng.choice((0.005, 0.02, 0.05))
    if rng.random() < 0.2:
        pick["cluster_id"] = rng.choice(machines).cluster_id
    if rng.random() < 0.15:
        pick["owner_org_id"] = rng.choice(machines).owner_org_id
    if rng.random() < 0.2:
        pick["leasable"] = rng.random() < 0.5
    if rng.random() < 0.2:
        pick["status"] = rng.choice(list(MachineStatus))
    if rng.random() < 0.15:
        pick["q"] = rng.choice(("haas", "ZETA", "#1", "海天", "mori"))
    sort = rng.choice(list(MachineSort))
    if sort == MachineSort.distance or rng.random() < 0.4:
        pick["near_lat"] = rng.choice((29.87, 30.27, 28.0)) + rng.uniform(-0.2, 0.2)
        pick["near_lon"] = rng.choice((121.55, 120.15, 120.7)) + rng.uniform(-0.2, 0.2)
        if rng.random() < 0.6:
            pick["within_km"] = rng.choice((5.0, 20.0, 45.5, 150.0))
    if rng.random() < 0.2:
        start = now + dt.timedelta(days=2, hours=rng.randint(-30, 10))
        pick["free_from"], pick["free_to"] = start, start + dt.timedelta(hours=rng.randint(1, 5))
    return MachineQuery(
        sort=sort, limit=rng.choice((1, 7, 50)), offset=rng.choice((0, 0, 3, 40)), **pick
    )


def test_every_sort_and_page_of_the_whole_market(session: Session, market: BenchMarket) -> None:
    for user, sort, offset in itertools.product(
        (market.buyer, market.owner, market.operator, market.admin), MachineSort, (0, 25, 250)
    ):
        total = _same(
            session,
            user,
            MachineQuery(sort=sort, offset=offset, limit=25, near_lat=29.9, near_lon=121.6),
        )
        assert total > 0


def test_random_filter_combinations(session: Session, market: BenchMarket) -> None:
    rng = random.Random(20)
    users = (market.buyer, market.owner, market.operator, market.admin)
    found = 0
    for _ in range(160):
        found += _same(session, rng.choice(users), _random_query(rng, session, market.now)) > 0
    assert found > 40  # the filters do not all come back empty


def test_json_lists_match_members_not_text(session: Session, market: BenchMarket) -> None:
    """ "steel" is not a member of ["stainless_steel"]: no LIKE on the JSON text."""
    members = {m for row in session.exec(select(Machine.materials)).all() for m in row}
    for material in sorted(members)[:6]:
        got, total = search_machines(
            session=session, user=market.admin, query=MachineQuery(material=material, limit=500)
        )
        assert total == len(got) > 0
        assert all(material in m.materials for m in got)
    _, none = search_machines(
        session=session, user=market.admin, query=MachineQuery(material='"', limit=1)
    )
    assert none == 0


def test_within_keeps_the_exact_distance(session: Session, market: BenchMarket) -> None:
    query = MachineQuery(near_lat=29.87, near_lon=121.55, within_km=30, sort=MachineSort.distance,
                         limit=1000)  # fmt: skip
    got, total = search_machines(session=session, user=market.admin, query=query)
    assert total == len(got) > 0
    distances = [m.distance_km for m in got]
    assert all(d is not None and d <= 30 for d in distances)
    assert distances == sorted(distances)  # type: ignore[type-var]


def test_bad_combinations_are_refused(session: Session, market: BenchMarket) -> None:
    with pytest.raises(InvalidInput, match="near_lat"):
        search_machines(session=session, user=market.buyer,
                        query=MachineQuery(sort=MachineSort.distance))  # fmt: skip


def test_the_benchmark_prints_before_and_after_for_each_path(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from app import db
    from app.bench import search as bench
    from app.config import get_settings
    from app.machines import service

    monkeypatch.setenv("DATABASE_URL", "sqlite:///unused.db")  # restored after the test
    monkeypatch.setenv("CAPSHARE_JOBS_IN_PROCESS", "false")
    try:
        bench.main(["--machines", "30", "--orders", "3", "--repeat", "1"])
    finally:
        get_settings.cache_clear()
        db.get_engine.cache_clear()
    out = capsys.readouterr().out
    for path in ("GET /machines", "filtered search", "free-time search", "/buyer/machines"):
        assert re.search(rf"^{re.escape(path)} +[\d.]+ -> +[\d.]+ \([\d.]+x\)$", out, re.M), out
    assert service.search_machines is search_machines  # the old path is put back
