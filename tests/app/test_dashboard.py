from __future__ import annotations

import datetime as dt

import pytest
from sqlmodel import Session

from app.dashboard import operator_dashboard
from app.errors import PermissionDenied
from models import Booking, Organization, Role
from tests.factories import make_cluster, make_machine, make_user, make_window


def test_hours_utilization_and_days_in_shanghai_time(session: Session) -> None:
    operator = make_user(session, roles=(Role.operator,))
    cluster = make_cluster(session, operator_org=session.get(Organization, operator.org_id))
    other = make_cluster(session)
    owner, buyer = make_user(session, roles=(Role.owner,)), make_user(session, roles=(Role.buyer,))
    mine = make_machine(session, owner=owner, cluster_id=cluster.id)
    theirs = make_machine(session, owner=owner, cluster_id=other.id)
    start = dt.datetime(2031, 3, 3, 16, 0, tzinfo=dt.UTC)  # Tuesday 00:00 in Shanghai
    for machine in (mine, theirs):
        make_window(session, machine=machine, start=start, end=start + dt.timedelta(hours=10))
    b_start = start
    for state, hours in (("confirmed", 2), ("done", 1), ("proposed", 3), ("cancelled", 4)):
        session.add(Booking(machine_id=mine.id, kind="lease", state=state, start_at=b_start,
                            end_at=b_start + dt.timedelta(hours=hours), org_id=buyer.org_id, price_fen=1000 * hours))  # fmt: skip
        b_start += dt.timedelta(hours=hours)
    session.flush()
    d = operator_dashboard(session=session, user=operator, start=start - dt.timedelta(days=1), end=start + dt.timedelta(days=2))
    assert d.machines == 1  # the other cluster's machine is not counted
    assert (round(d.offered_h, 3), round(d.booked_h, 3), round(d.proposed_h, 3)) == (10.0, 3.0, 3.0)
    assert round(d.utilization, 3) == 0.3 and d.gmv_fen == 3000
    assert list(d.by_day["milling_3axis"]) == ["2031-03-04"]  # the local day, not 2031-03-03 (UTC)
    with pytest.raises(PermissionDenied):
        operator_dashboard(session=session, user=buyer, start=start, end=start + dt.timedelta(days=1))
