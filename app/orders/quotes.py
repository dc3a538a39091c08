"""Instant quotes: up to three options for an order draft (cheapest, earliest
completion, nearest) from the same matcher, against the market's current free
time. Read-only: nothing is written, nothing is held.

Each option is one small solve of the draft alone over the machines of its
processes (the buyer's own machines excluded): ``cost`` mode for the cheapest,
``makespan`` mode for the earliest, and ``cost`` mode with a prohibitive price per
kilometre for the nearest. Prices are re-stated for all three with the default
transport tariff, so they compare.
"""

from __future__ import annotations

import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from sqlalchemy import and_, or_
from sqlmodel import Session, col, func, select

from app.config import Settings, get_settings
from app.errors import PermissionDenied
from app.machines.sql import json_list_has
from app.matching_runs.adapter import (
    Horizon,
    load_machines,
    machine_spec,
    operation_spec,
    order_spec,
)
from app.orders.service import check_draft
from matching import (
    Assignment,
    MatchProblem,
    ObjectiveMode,
    OrderSpec,
    Weights,
    check_result,
    solve,
)
from matching.domain import capable, run_minutes
from matching.rules import haversine_km, price_fen, transport_fen, transport_minutes
from models import AvailabilityWindow, Machine, Order, Organization, Role, User, utcnow
from models.base import CURRENCY
from models.order import OrderCreate
from models.quote import QuoteOption, QuotePublic, QuoteStep

DRAFT_KEY = "draft"
NEAREST_FEN_PER_KM = 1_000_000  # distance dominates every price


def create_quote(
    *, session: Session, user: User, data: OrderCreate, settings: Settings | None = None
) -> QuotePublic:
    """Quote an order draft. Reads only."""
    t0 = time.perf_counter()
    settings = settings or get_settings()
    if not user.has_role(Role.buyer):
        raise PermissionDenied("only buyer organizations ask for quotes")
    now = utcnow()
    check_draft(session=session, data=data, now=now)
    org = session.get(Organization, user.org_id)
    assert org is not None
    fields = data.model_dump(exclude={"operations"})
    fields.update(
        buyer_org_id=user.org_id,
        due_kind=data.due_kind.value,
        delivery_lat=data.delivery_lat if data.delivery_lat is not None else org.lat,
        delivery_lon=data.delivery_lon if data.delivery_lon is not None else org.lon,
    )
    draft = Order(**fields)  # transient: never added to the session
    horizon = Horizon.from_now(now, settings.match_horizon_days)
    ops = [operation_spec(f"op{i}", op) for i, op in enumerate(data.operations)]
    order = order_spec(key=DRAFT_KEY, order=draft, operations=ops, horizon=horizon, cluster_id=None)
    specs, machines = load_machines(
        session, horizon, process_keys={op.process_key for op in data.operations},
        exclude_owner_org_id=user.org_id,
        keep=lambda rows: shortlist(session, rows, order, horizon, settings.quote_shortlist),
        where=[or_(*(
            and_(col(Machine.process_key) == op.process_key,
                 json_list_has(col(Machine.materials), op.material_key))
            for op in data.operations
        ))],
    )  # fmt: skip
    base = MatchProblem(machines=tuple(specs), orders=(order,), horizon_min=horizon.minutes)
    tariff = base.weights
    problems = {
        "cheapest": base,
        "earliest": replace(base, objective_mode=ObjectiveMode.MAKESPAN),
        "nearest": replace(base, weights=Weights(transport_fen_per_km=NEAREST_FEN_PER_KM)),
    }
    options: dict[tuple[tuple[str, int, int], ...], QuoteOption] = {}
    unavailable: str | None = None
    # three small solves side by side (CP-SAT releases the GIL)
    with ThreadPoolExecutor(max_workers=len(problems)) as pool:
        futures = {
            label: pool.submit(
                solve,
                p,
                time_limit_s=settings.quote_time_limit_s,
                seed=0,
                workers=1,
                deterministic=False,
            )
            for label, p in problems.items()
        }
        results = {label: f.result() for label, f in futures.items()}
    for label, problem in problems.items():
        result = results[label]
        if not result.assignments or check_result(problem, result):
            if result.unassigned and unavailable is None:
                u = result.unassigned[0]
                unavailable = f"{u.reason}: {u.detail}" if u.detail else str(u.reason)
            continue
        by_op = {a.operation_id: a for a in result.assignments}
        placed = [by_op[op.id] for op in ops]
        key = tuple((a.machine_id, a.start_min, a.end_min) for a in placed)
        if key not in options:
            options[key] = _option(label, placed, data, draft, machines, horizon, tariff)
    found = list(options.values())
    _label(found)
    return QuotePublic(
        options=[o for o in found if o.labels],
        unavailable=None if options else unavailable or "no machine can take this order",
        seconds=round(time.perf_counter() - t0, 4),
    )


def shortlist(
    session: Session, rows: list[Machine], order: OrderSpec, horizon: Horizon, per: int
) -> list[Machine]:
    """The machines a quote looks at: per step, of those capable (and near enough), the
    ``per`` cheapest for the step, the ``per`` nearest to the delivery point and the
    ``per`` with the earliest offered window after the release — so that each label's
    best is among them — instead of every machine of the province doing the process."""
    capable_by_op = []
    for op in order.operations:
        caps = [m for m in rows if capable(op, machine_spec(m, "", ()))]
        if order.max_distance_km is not None:
            caps = [m for m in caps if _km(m, order) <= order.max_distance_km]
        capable_by_op.append(caps)
    ids = sorted({m.id for caps in capable_by_op for m in caps if m.id is not None})
    earliest: dict[int, dt.datetime] = {}
    if ids:
        release = horizon.at(order.release_min)
        query = (
            select(AvailabilityWindow.machine_id, func.min(AvailabilityWindow.start_at))
            .where(
                col(AvailabilityWindow.machine_id).in_(ids),
                col(AvailabilityWindow.end_at) > release,
            )
            .group_by(col(AvailabilityWindow.machine_id))
        )
        earliest = dict(session.exec(query).all())
    never = dt.datetime.max.replace(tzinfo=dt.UTC)
    chosen: dict[int, Machine] = {}
    for op, caps in zip(order.operations, capable_by_op, strict=True):
        specs = {m.id: machine_spec(m, "", ()) for m in caps}
        price = {
            i: price_fen(minutes=run_minutes(op, spec), hourly_rate_fen=spec.rate_fen_per_hour)
            for i, spec in specs.items()
        }
        rankings = (
            sorted(caps, key=lambda m: (price[m.id], m.id)),
            sorted(caps, key=lambda m: (_km(m, order), m.id)),
            sorted(caps, key=lambda m: (earliest.get(m.id or 0, never), m.id)),
        )
        for ranked in rankings:
            for m in ranked[:per]:
                assert m.id is not None
                chosen[m.id] = m
    return [chosen[i] for i in sorted(chosen)]


def _km(m: Machine, order: OrderSpec) -> float:
    return haversine_km(m.lat, m.lon, order.delivery_lat, order.delivery_lon)


LABEL_ORDER = {"cheapest": 0, "earliest": 1, "nearest": 2}


def _label(options: list[QuoteOption]) -> None:
    """Each label goes to the option that really is best by it among those found (a
    time-limited solve may find a cheaper plan under another objective than its own);
    ties go to the first found. Options left with no label are not offered."""
    for o in options:
        o.labels = []
    if not options:
        return
    best = {
        "cheapest": min(options, key=lambda o: o.total_fen),
        "earliest": min(options, key=lambda o: o.completion_at),
        "nearest": min(options, key=lambda o: o.max_distance_km),
    }
    for label, option in best.items():
        option.labels.append(label)
    for o in options:
        o.labels.sort(key=LABEL_ORDER.__getitem__)


def _option(
    label: str,
    placed: list[Assignment],
    data: OrderCreate,
    draft: Order,
    machines: dict[str, Machine],
    horizon: Horizon,
    tariff: Weights,
) -> QuoteOption:
    lat, lon = draft.delivery_lat or 0.0, draft.delivery_lon or 0.0
    steps: list[QuoteStep] = []
    for k, a in enumerate(placed):
        m = machines[a.machine_id]
        nxt = machines[placed[k + 1].machine_id] if k + 1 < len(placed) else None
        hop_km = (
            haversine_km(m.lat, m.lon, nxt.lat, nxt.lon)
            if nxt is not None
            else haversine_km(m.lat, m.lon, lat, lon)
        )
        assert m.id is not None
        steps.append(QuoteStep(
            seq=k + 1, process_key=data.operations[k].process_key, machine_id=m.id,
            machine_name=m.name, owner_org_id=m.owner_org_id, cluster_id=m.cluster_id,
            start_at=horizon.at(a.start_min), end_at=horizon.at(a.end_min), price_fen=a.price_fen,
            transport_fen=transport_fen(hop_km, tariff),
            distance_km=round(haversine_km(m.lat, m.lon, lat, lon), 1),
        ))  # fmt: skip
    last = machines[placed[-1].machine_id]
    lag = transport_minutes(haversine_km(last.lat, last.lon, lat, lon), tariff)
    processing = sum(s.price_fen for s in steps)
    transport = sum(s.transport_fen for s in steps)
    return QuoteOption(
        labels=[label], completion_at=steps[-1].end_at,
        delivery_at=steps[-1].end_at + dt.timedelta(minutes=lag), processing_fen=processing,
        transport_fen=transport, total_fen=processing + transport, currency=CURRENCY,
        max_distance_km=max(s.distance_km for s in steps), steps=steps,
    )  # fmt: skip
