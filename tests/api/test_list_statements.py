"""No list runs a query per row: each list endpoint and list page sends as many SQL
statements with 40 rows of each kind as with 5."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient
from sqlmodel import Session

from app.config import Settings
from models import BookingKind, BookingState, MatchRun, MatchRunStatus, utcnow
from tests.factories import auth, hours_from_now, make_booking, make_machine, make_window
from tests.factories_matching import Market, make_market, make_order
from tests.frontend.test_pages import sign_in
from tests.statements import statements

JSON = [
    ("buyer", "/api/v1/machines"),
    ("buyer", "/api/v1/machines?sort=distance&near_lat=29.9&near_lon=121.8&material=steel"),
    ("buyer", "/api/v1/orders"),
    ("buyer", "/api/v1/bookings"),
    ("owner", "/api/v1/bookings"),
    ("owner", "/api/v1/machines?sort=name"),
    ("owner", "/api/v1/proposals"),
    ("operator", "/api/v1/match-runs"),
    ("operator", "/api/v1/machines"),
]
PAGES = [
    ("buyer", "/buyer/orders"),
    ("buyer", "/buyer/machines"),
    ("buyer", "/buyer/leases"),
    ("owner", "/owner/machines"),
    ("owner", "/owner/proposals"),
    ("owner", "/owner/earnings"),
    ("operator", "/operator/match-runs"),
]


def _add_rows(session: Session, market: Market, rows: int) -> None:
    """``rows`` more machines, open orders (two steps each), leases, proposals and match
    runs, all seen by the market's buyer, owner and operator."""
    assert market.cluster.id is not None
    for _ in range(rows):
        machine = make_machine(session, owner=market.owner, cluster_id=market.cluster.id)
        order = make_order(session, buyer=market.buyer, operations=[{}, {"std_duration_min": 60}])
        start = hours_from_now(3)
        hour = dt.timedelta(hours=1)
        make_booking(session, machine=machine, org_id=market.buyer.org_id, start=start,
                     end=start + hour, kind=BookingKind.lease)  # fmt: skip
        make_booking(session, machine=machine, org_id=market.buyer.org_id, start=start + 2 * hour,
                     end=start + 3 * hour, kind=BookingKind.service, state=BookingState.proposed,
                     order_id=order.id)  # fmt: skip
        make_window(session, machine=machine, start=hours_from_now(60), end=hours_from_now(70))
        now = utcnow()
        session.add(MatchRun(scope="cluster", cluster_id=market.cluster.id, status=MatchRunStatus.succeeded,
                             horizon_start=now, horizon_end=now, time_limit_s=1.0, started_at=now,
                             finished_at=now))  # fmt: skip
    session.flush()


def _count(client: TestClient, session: Session, path: str, headers: dict[str, str]) -> int:
    client.get(path, headers=headers)  # warm: caches, the session user
    # the requests share the test's session: expire its objects, so that a row a request
    # reads by id is read from the database, as a request's own session would (expired,
    # not expunged: the requests commit the test's set-up, and a detached expired row
    # could not be read again)
    session.expire_all()
    with statements(session.get_bind().engine) as sent:
        answer = client.get(path, headers=headers)
    assert answer.status_code == 200, answer.text[:300]
    return len(sent)


def _counts(
    client: TestClient, session: Session, settings: Settings, market: Market
) -> dict[str, int]:
    users = {"buyer": market.buyer, "owner": market.owner, "operator": market.operator}
    counts = {}
    for who, path in JSON:
        counts[f"{who} {path}"] = _count(client, session, path, auth(settings, users[who]))
    for who, path in PAGES:
        client.cookies.clear()
        sign_in(client, users[who].email)
        counts[f"{who} {path}"] = _count(client, session, path, {})
    return counts


def test_statements_do_not_grow_with_the_rows(
    client: TestClient, session: Session, settings: Settings
) -> None:
    market = make_market(session, machines=0)
    _add_rows(session, market, 5)
    few = _counts(client, session, settings, market)
    _add_rows(session, market, 35)
    many = _counts(client, session, settings, market)
    grown = {path: (few[path], n) for path, n in many.items() if n != few[path]}
    assert grown == {}, f"statements per request, 5 rows vs 40: {grown}"
    assert all(n > 0 for n in few.values())  # the counter sees the requests' statements
