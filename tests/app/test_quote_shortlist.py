"""A quote looks at a shortlist of machines, not at the whole province: per step the
cheapest, the nearest and the earliest capable ones."""

from __future__ import annotations

from sqlmodel import Session

from app.matching_runs.adapter import Horizon, operation_spec, order_spec
from app.orders.quotes import shortlist
from models import Machine, Order, Role, utcnow
from models.order import OperationCreate
from tests.factories import hours_from_now, make_machine, make_user, make_window


def test_the_shortlist_keeps_the_best_by_each_measure(session: Session) -> None:
    owner = make_user(session, roles=(Role.owner,))
    plain: list[Machine] = []
    for i in range(12):  # ordinary mills, 20-31 km from the delivery point, windows in 2 days
        m = make_machine(session, owner=owner, hourly_rate_fen=20000 + i, lat=30.1 + i * 0.01)
        make_window(session, machine=m, start=hours_from_now(48), end=hours_from_now(90))
        plain.append(m)
    cheap = make_machine(session, owner=owner, hourly_rate_fen=5000, lat=30.4)
    near = make_machine(session, owner=owner, hourly_rate_fen=30000, lat=29.9)
    early = make_machine(session, owner=owner, hourly_rate_fen=30000, lat=30.3)
    titanium = make_machine(
        session, owner=owner, hourly_rate_fen=100, lat=29.9, materials=["titanium"]
    )
    for m in (cheap, near, titanium):
        make_window(session, machine=m, start=hours_from_now(48), end=hours_from_now(90))
    make_window(session, machine=early, start=hours_from_now(2), end=hours_from_now(90))
    session.flush()
    horizon = Horizon.from_now(utcnow(), 14)
    op = OperationCreate(
        process_key="milling_3axis", material_key="aluminium", std_duration_min=120
    )
    draft = Order(buyer_org_id=1, title="t", release_at=hours_from_now(1), due_at=hours_from_now(100),
                  delivery_lat=29.9, delivery_lon=121.84)  # fmt: skip
    order = order_spec(key="d", order=draft, operations=[operation_spec("op0", op)], horizon=horizon,
                       cluster_id=None)  # fmt: skip
    rows = [*plain, cheap, near, early, titanium]

    got = {m.id for m in shortlist(session, rows, order, horizon, per=1)}
    assert got == {cheap.id, near.id, early.id}  # and never the mill that takes no aluminium
    wider = {m.id for m in shortlist(session, rows, order, horizon, per=3)}
    assert got < wider and titanium.id not in wider and len(wider) <= 9
    everyone = {m.id for m in shortlist(session, rows, order, horizon, per=100)}
    assert everyone == {m.id for m in rows} - {titanium.id}
