"""The dashboard's history: the figures read from the rolled-up days are those the raw
rows give, before and after the raw rows are pruned; the rollup follows late changes
within its settle days; retention deletes only spans and windows, and only rolled ones."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import Session, col, func, select

from app import jobs, tasks
from app.config import Settings, get_settings
from app.dashboard import history
from app.dashboard.service import Dashboard, operator_dashboard
from app.dashboard.sql import day_of
from models import (
    HELD_STATES,
    AvailabilityWindow,
    Booking,
    BookingState,
    HistoryRollup,
    Machine,
    MachineDay,
    MachineStateSpan,
    MachineStatus,
    Order,
    OrderStatus,
    Organization,
    Process,
    Role,
    User,
)
from tests.factories import make_booking, make_cluster, make_machine, make_user, make_window

TZ = "Asia/Shanghai"
NOW = dt.datetime(2031, 3, 20, 12, 30, tzinfo=dt.UTC)  # 20:30 in Shanghai: late in the day


def _figures(d: Dashboard) -> dict[str, Any]:
    """Everything the page and the CSV tables show, rounded as far as a page shows."""

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 6)

    return {
        "totals": [d.machines, r(d.offered_h), r(d.booked_h), r(d.proposed_h), d.gmv_fen,
                   d.open_orders, d.matched_orders, d.done_bookings, d.on_time_bookings,
                   d.networked, d.monitored_machines, r(d.monitored_offered_h), r(d.running_h)],
        "by_process": [(p.process, p.machines, r(p.offered_h), r(p.booked_h),
                        r(p.monitored_offered_h), r(p.running_h)) for p in d.by_process],
        "by_day": {p: {k: r(v) for k, v in days.items()} for p, days in d.by_day.items()},
        "heatmap": {p: {k: r(v) for k, v in cs.items()} for p, cs in d.heatmap.items()},
        "idle": [(c, p, r(h)) for c, p, h in d.idle],
    }  # fmt: skip


def _market(session: Session) -> tuple[User, list[Machine]]:
    """Two clusters (one operated), three processes, a retired machine; 12 days of
    windows, bookings in every state (some of orders, on time or late), and telemetry
    spans, some long and some crossing the week's start and day boundaries."""
    rng = random.Random(5)
    operator = make_user(session, roles=(Role.operator,))
    mine = make_cluster(session, operator_org=session.get(Organization, operator.org_id))
    other = make_cluster(session)
    owner, buyer = make_user(session, roles=(Role.owner,)), make_user(session, roles=(Role.buyer,))
    keys = list(session.exec(select(Process.key).order_by(col(Process.key)).limit(3)).all())
    machines = [
        make_machine(session, owner=owner, cluster_id=c.id, process_key=keys[i % len(keys)])
        for i, c in enumerate([mine, mine, mine, mine, other])
    ]
    machines[3].status = MachineStatus.retired
    quiet = make_machine(session, owner=owner, cluster_id=mine.id)  # a window, nothing else
    make_window(
        session, machine=quiet, start=NOW - dt.timedelta(days=4), end=NOW - dt.timedelta(days=3)
    )
    session.add(machines[3])
    orders = []
    for due_h in (-200, -40, 100):
        order = Order(title="o", buyer_org_id=buyer.org_id, release_at=NOW - dt.timedelta(days=20),
                      due_at=NOW + dt.timedelta(hours=due_h), status=OrderStatus.completed)  # fmt: skip
        session.add(order)
        orders.append(order)
    session.add(Order(title="open", buyer_org_id=buyer.org_id, release_at=NOW,
                      due_at=NOW + dt.timedelta(days=3), status=OrderStatus.open))  # fmt: skip
    session.flush()
    for m in machines:
        assert m.id is not None
        for day in range(-12, 4):  # windows at varying local hours, some across midnight
            start = NOW + dt.timedelta(days=day, hours=rng.randint(-14, -6))
            make_window(
                session, machine=m, start=start, end=start + dt.timedelta(hours=rng.randint(4, 16))
            )
        t = NOW - dt.timedelta(days=12)
        for _ in range(12):  # bookings every day or so, in every state
            t += dt.timedelta(hours=rng.randint(14, 30))
            state = rng.choice(list(BookingState))
            of: Order | None = rng.choice([None, *orders])
            make_booking(session, machine=m, org_id=buyer.org_id, state=state, start=t,
                         end=t + dt.timedelta(hours=rng.randint(1, 9), minutes=rng.choice([0, 17])),
                         price_fen=rng.randint(100, 9000), order_id=of.id if of else None)  # fmt: skip
        t = NOW - dt.timedelta(days=11, minutes=7)
        while t < NOW:  # back-to-back spans, a few of them a day long
            end = min(NOW, t + dt.timedelta(minutes=rng.choice([40, 200, 333, 1500])))
            session.add(MachineStateSpan(machine_id=m.id, state=rng.choice(["running", "idle", "down"]),
                                         start_at=t, end_at=end, offered_s=rng.randint(0, int((end - t).total_seconds()))))  # fmt: skip
            t = end
        m.last_reported_at = NOW - dt.timedelta(hours=rng.randint(1, 40))
        session.add(m)
    session.flush()
    return operator, machines


PERIODS = [  # (start, end): the page's period, a past one cut mid-day, one across the rollup
    (dt.datetime(2031, 3, 19, 16, tzinfo=dt.UTC), dt.datetime(2031, 4, 3, 16, tzinfo=dt.UTC)),
    (NOW - dt.timedelta(days=10, hours=5), NOW - dt.timedelta(days=2, hours=3)),
    (NOW - dt.timedelta(days=11), NOW + dt.timedelta(days=3)),
    (dt.datetime(2031, 3, 11, 16, tzinfo=dt.UTC), dt.datetime(2031, 3, 18, 16, tzinfo=dt.UTC)),
]
WHOLE_DAYS = (PERIODS[0], PERIODS[3])  # periods of whole local days


@pytest.mark.parametrize("now", [NOW, NOW - dt.timedelta(hours=16)])  # late, early in a day
def test_rolled_up_figures_equal_the_raw_rows(session: Session, now: dt.datetime) -> None:
    operator, _ = _market(session)
    admin = make_user(session, roles=(Role.admin,))

    def both(user: User, start: dt.datetime, end: dt.datetime, raw: bool) -> dict[str, Any]:
        return _figures(operator_dashboard(session=session, user=user, start=start, end=end,
                                           tz=TZ, now=now, history=not raw))  # fmt: skip

    views = [(u, s, e) for u in (operator, admin) for s, e in PERIODS]
    before = [both(u, s, e, raw=True) for u, s, e in views]
    assert before[0]["totals"][7] > 0 and before[0]["by_day"]  # done bookings, days shown
    report = history.roll_up(session=session, tz=TZ, settle_days=8, now=now)
    assert report.rows > 0 and session.get(HistoryRollup, 1) is not None
    for (u, s, e), raw in zip(views, before, strict=True):
        assert both(u, s, e, raw=False) == raw
    # the raw rows of the rolled-up days go: the figures stay
    pruned = history.prune(session=session, tz=TZ, span_retention_days=8,
                           window_retention_days=8, now=now)  # fmt: skip
    assert pruned.spans > 0 and pruned.windows > 0
    for (u, s, e), raw in zip(views, before, strict=True):
        if (s, e) in WHOLE_DAYS:  # a partial day of the others is read from the raw rows
            assert both(u, s, e, raw=False) == raw


def test_a_late_change_is_rolled_up_again_within_the_settle_days(session: Session) -> None:
    operator, machines = _market(session)
    history.roll_up(session=session, tz=TZ, settle_days=8, now=NOW)
    late = session.exec(
        select(Booking)
        .where(Booking.machine_id == machines[0].id, col(Booking.start_at) < NOW - dt.timedelta(days=2),
               col(Booking.state).not_in(HELD_STATES))
        .order_by(col(Booking.start_at).desc())
    ).first()  # fmt: skip
    assert late is not None
    late.state = BookingState.done  # a booking reported done late
    session.add(late)
    assert machines[0].id is not None
    span = MachineStateSpan(machine_id=machines[0].id, state="running",  # late telemetry
                            start_at=NOW - dt.timedelta(days=3, hours=1), end_at=NOW - dt.timedelta(days=3), offered_s=3600)  # fmt: skip
    session.add(span)
    session.flush()
    start, end = NOW - dt.timedelta(days=6), NOW
    raw = _figures(operator_dashboard(session=session, user=operator, start=start, end=end,
                                      tz=TZ, now=NOW, history=False))  # fmt: skip
    stale = _figures(
        operator_dashboard(session=session, user=operator, start=start, end=end, tz=TZ, now=NOW)
    )
    assert stale != raw  # until the next rollup the days show what they were
    history.roll_up(session=session, tz=TZ, settle_days=8, now=NOW + dt.timedelta(minutes=15))
    again = operator_dashboard(session=session, user=operator, start=start, end=end, tz=TZ, now=NOW)
    assert _figures(again) == raw


def test_the_first_rollup_reaches_back_to_the_oldest_row_and_a_second_changes_nothing(
    session: Session,
) -> None:
    _market(session)
    oldest = session.exec(select(func.min(AvailabilityWindow.start_at))).one()
    assert oldest is not None
    report = history.roll_up(session=session, tz=TZ, settle_days=8, now=NOW)
    assert report.first == day_of(oldest, TZ) and report.last == dt.date(2031, 3, 19)
    rows = session.exec(
        select(MachineDay).order_by(col(MachineDay.day), col(MachineDay.machine_id))
    ).all()
    snapshot = [r.model_dump() for r in rows]
    again = history.roll_up(session=session, tz=TZ, settle_days=8, now=NOW)
    assert (again.first, again.last) == (dt.date(2031, 3, 12), dt.date(2031, 3, 19))
    rows = session.exec(
        select(MachineDay).order_by(col(MachineDay.day), col(MachineDay.machine_id))
    ).all()
    assert [r.model_dump() for r in rows] == snapshot


def test_prune_keeps_bookings_and_everything_not_rolled_up(session: Session) -> None:
    _market(session)
    counts = [session.exec(select(func.count()).select_from(t)).one()
              for t in (MachineStateSpan, AvailabilityWindow, Booking)]  # fmt: skip
    later = NOW + dt.timedelta(days=400)
    report = history.prune(session=session, tz=TZ, span_retention_days=8,
                           window_retention_days=8, now=later)  # fmt: skip
    assert (report.spans, report.windows) == (0, 0)  # nothing was rolled up yet
    history.roll_up(session=session, tz=TZ, settle_days=8, now=NOW)
    report = history.prune(session=session, tz=TZ, span_retention_days=8,
                           window_retention_days=8, now=later)  # fmt: skip
    rolled = history.rolled_through(session, TZ)
    assert rolled == dt.date(2031, 3, 19)
    cut = dt.datetime(2031, 3, 19, 16, tzinfo=dt.UTC)  # the first instant not rolled up
    left = session.exec(select(func.min(MachineStateSpan.end_at))).one()
    assert report.spans > 0 and left is not None and left >= cut
    assert session.exec(select(func.count()).select_from(Booking)).one() == counts[2]
    assert (
        session.exec(select(func.count()).select_from(AvailabilityWindow)).one()
        == counts[1] - report.windows
    )


def test_history_tasks_are_registered_and_run(session: Session) -> None:
    _market(session)
    assert {"history.rollup", "history.prune"} <= set(tasks.registered())
    jobs.history_rollup_task(session)
    assert history.rolled_through(session, get_settings().display_timezone) is not None
    jobs.history_prune_task(session)  # nothing is older than the retention: nothing goes


def test_retention_must_outlive_the_settle_days() -> None:
    with pytest.raises(ValueError, match="span_retention_days"):
        Settings(span_retention_days=8, history_settle_days=8)
    with pytest.raises(ValueError, match="history_settle_days"):
        Settings(history_settle_days=7, telemetry_max_age_days=7)


def test_the_metrics_queue_count_reads_a_partial_index(session: Session) -> None:
    """/metrics counts the waiting jobs at every scrape: an index of the todo rows only,
    not a scan of every job procrastinate kept."""
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("procrastinate's tables exist on PostgreSQL only")
    session.execute(text("SET LOCAL enable_seqscan = off"))
    plan = "\n".join(
        row[0]
        for row in session.execute(
            text(
                "EXPLAIN SELECT queue_name, count(*) FROM procrastinate_jobs "
                "WHERE status = 'todo' GROUP BY queue_name"
            )
        )
    )
    assert "ix_procrastinate_jobs_todo_queue_name" in plan
