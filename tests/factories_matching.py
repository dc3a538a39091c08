"""Builders for matching tests: a small market of one cluster."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from models import Cluster, Machine, Operation, Order, OrderStatus, Role, User
from tests.factories import (
    hours_from_now,
    make_cluster,
    make_machine,
    make_org,
    make_user,
    make_window,
)


def make_order(
    session: Session,
    *,
    buyer: User,
    operations: list[dict[str, Any]] | None = None,
    release: dt.datetime | None = None,
    due: dt.datetime | None = None,
    status: OrderStatus = OrderStatus.open,
    **overrides: Any,
) -> Order:
    values: dict[str, Any] = dict(
        buyer_org_id=buyer.org_id, title="brackets", release_at=release or hours_from_now(1),
        due_at=due or hours_from_now(72), status=status.value, delivery_lat=29.9, delivery_lon=121.84,
    )  # fmt: skip
    values.update(overrides)
    order = Order(**values)
    session.add(order)
    session.flush()
    for seq, op in enumerate(operations or [{}], start=1):
        spec: dict[str, Any] = dict(
            process_key="milling_3axis", material_key="aluminium", std_duration_min=120
        )
        spec.update(op)
        session.add(Operation(order_id=order.id, seq=seq, **spec))  # type: ignore[arg-type]
    session.flush()
    return order


@dataclass
class Market:
    cluster: Cluster
    operator: User
    owner: User
    buyer: User
    machines: list[Machine]


def make_market(
    session: Session, *, machines: int = 2, rates: tuple[int, ...] = (9000, 12000)
) -> Market:
    """One cluster with its operator; an owner with ``machines`` 3-axis mills offered
    from 2 h to 50 h from now; a buyer."""
    op_org = make_org(session, operator=True)
    operator = make_user(session, org=op_org, roles=(Role.operator,))
    cluster = make_cluster(session, operator_org=op_org)
    owner = make_user(session, roles=(Role.owner,))
    rows = []
    for i in range(machines):
        m = make_machine(
            session, owner=owner, cluster_id=cluster.id, hourly_rate_fen=rates[i % len(rates)]
        )
        make_window(session, machine=m, start=hours_from_now(2), end=hours_from_now(50))
        rows.append(m)
    buyer = make_user(session, roles=(Role.buyer,))
    return Market(cluster, operator, owner, buyer, rows)
