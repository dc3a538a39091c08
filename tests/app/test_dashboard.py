from __future__ import annotations

import datetime as dt

import pytest
from sqlmodel import Session

from app.dashboard.service import operator_dashboard
from app.errors import PermissionDenied
from models import BookingState, Organization, Role
from tests.factories import make_booking, make_cluster, make_machine, make_user, make_window


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
    for state, hours in (
        (BookingState.confirmed, 2),
        (BookingState.done, 1),
        (BookingState.proposed, 3),
        (BookingState.cancelled, 4),
    ):
        make_booking(session, machine=mine, org_id=buyer.org_id, state=state, start=b_start,
                     end=b_start + dt.timedelta(hours=hours), price_fen=1000 * hours)  # fmt: skip
        b_start += dt.timedelta(hours=hours)
    d = operator_dashboard(
        session=session,
        user=operator,
        start=start - dt.timedelta(days=1),
        end=start + dt.timedelta(days=2),
    )
    assert d.machines == 1  # the other cluster's machine is not counted
    assert (round(d.offered_h, 3), round(d.booked_h, 3), round(d.proposed_h, 3)) == (10.0, 3.0, 3.0)
    assert round(d.utilization, 3) == 0.3 and d.gmv_fen == 3000
    assert list(d.by_day["milling_3axis"]) == ["2031-03-04"]  # the local day, not 2031-03-03 (UTC)
    with pytest.raises(PermissionDenied):
        operator_dashboard(
            session=session, user=buyer, start=start, end=start + dt.timedelta(days=1)
        )


def test_networking_rate_and_actual_utilization_from_telemetry(session: Session) -> None:
    from models import MachineStateSpan

    operator = make_user(session, roles=(Role.operator,))
    cluster = make_cluster(session, operator_org=session.get(Organization, operator.org_id))
    owner = make_user(session, roles=(Role.owner,))
    networked = make_machine(session, owner=owner, cluster_id=cluster.id)
    silent = make_machine(session, owner=owner, cluster_id=cluster.id)
    long_runner = make_machine(session, owner=owner, cluster_id=cluster.id)
    elsewhere = make_machine(session, owner=owner, cluster_id=make_cluster(session).id)
    now = dt.datetime(2031, 3, 10, 12, 0, tzinfo=dt.UTC)

    def h(hours: float) -> dt.datetime:
        return now + dt.timedelta(hours=hours)

    for machine in (networked, silent, elsewhere):
        make_window(session, machine=machine, start=h(-50), end=h(-40))  # 10 offered hours each
        make_window(
            session, machine=machine, start=h(-200), end=h(-160)
        )  # 40 h, of which 8 in the last week
    make_window(
        session, machine=long_runner, start=h(-230), end=h(-150)
    )  # 80 h, of which 18 in the week
    for spanned, state, start, end, offered_h in (
        (networked, "running", h(-48), h(-44), 4),  # 4 h inside the first window
        (networked, "idle", h(-44), h(-41), 3),
        (networked, "running", h(-41), h(-30), 1),  # 1 h inside, 10 h outside offered time
        (
            networked,
            "running",
            h(-172),
            h(-166),
            6,
        ),  # 6 h inside the old window, 2 of them in the week
        (
            long_runner,
            "running",
            h(-240),
            h(-144),
            80,
        ),  # one long span: 18 of its offered hours in the week
        (elsewhere, "running", h(-50), h(-40), 10),  # another operator's cluster
    ):
        assert spanned.id is not None
        session.add(
            MachineStateSpan(
                machine_id=spanned.id,
                state=state,
                start_at=start,
                end_at=end,
                offered_s=offered_h * 3600,
            )
        )
    networked.last_reported_at, networked.reported_state = h(-30), "running"
    long_runner.last_reported_at, long_runner.reported_state = h(-144), "running"
    elsewhere.last_reported_at = h(-1)
    session.add_all([networked, long_runner, elsewhere])
    session.flush()
    d = operator_dashboard(session=session, user=operator, start=now, end=h(24 * 14), now=now)
    # in the week [now - 168 h, now) the machines reported during 4 + 3 + 1 + 2 + 18 offered hours (the silent
    # machine's 18 offered hours are unknown, not idle) and ran in 4 + 1 + 2 + 18 of them
    assert (
        d.monitored_machines == 2
        and round(d.monitored_offered_h, 3) == 28.0
        and round(d.running_h, 3) == 25.0
    )
    assert d.actual_utilization is not None and round(d.actual_utilization, 4) == round(25 / 28, 4)
    assert (d.machines, d.networked, d.networking_rate) == (
        3,
        0,
        0.0,
    )  # the last reports are 30 h and more old
    networked.last_reported_at = h(-2)
    session.add(networked)
    session.flush()
    d = operator_dashboard(session=session, user=operator, start=now, end=h(24 * 14), now=now)
    assert d.networked == 1 and round(d.networking_rate, 4) == round(1 / 3, 4)
    row = next(r for r in d.by_process if r.process == networked.process_key)
    assert row.actual_utilization is not None and round(row.actual_utilization, 4) == round(
        25 / 28, 4
    )
