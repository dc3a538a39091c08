"""A market run solved cluster by cluster, then across clusters (app/matching_runs/partition.py)."""

from __future__ import annotations

from sqlmodel import Session, select

from app.config import Settings
from app.matching_runs.partition import _subtract, leftover_problem, parts_by_cluster
from app.matching_runs.service import run_matching
from matching import (
    Assignment,
    MachineSpec,
    MatchProblem,
    MatchResult,
    OperationSpec,
    OrderSpec,
    Reason,
    SolveStatus,
    Unassigned,
)
from models import Booking, Role
from tests.factories import hours_from_now, make_cluster, make_machine, make_user, make_window
from tests.factories_matching import make_order

NINGBO, HANGZHOU = (29.9, 121.84), (30.27, 120.15)


def test_free_time_less_what_was_taken() -> None:
    assert _subtract(((0, 100), (200, 300)), [(10, 20), (90, 210)]) == (
        (0, 10),
        (20, 90),
        (210, 300),
    )
    assert _subtract(((0, 100),), [(0, 100)]) == ()
    assert _subtract(((0, 100),), [(150, 160)]) == ((0, 100),)


def _machine(key: str, cluster: str, process: str = "milling_3axis") -> MachineSpec:
    return MachineSpec(
        id=key, owner_id="o", cluster=cluster, family="cnc", process=process,
        materials=frozenset({"steel"}), free=((0, 1000),), rate_fen_per_hour=6000,
    )  # fmt: skip


def _order(key: str, cluster: str) -> OrderSpec:
    op = OperationSpec(
        id=f"{key}.1", process="milling_3axis", material="steel", std_duration_min=60
    )
    return OrderSpec(id=key, buyer_id="b", operations=(op,), release_min=0, due_min=1000,
                     cluster=cluster)  # fmt: skip


def test_parts_and_leftovers() -> None:
    problem = MatchProblem(
        machines=(_machine("m1", "1"), _machine("m2", "2")),
        orders=(_order("a", "1"), _order("b", "2"), _order("c", "2")),
        horizon_min=1000,
    )
    parts = dict(parts_by_cluster(problem))
    assert {c: [o.id for o in p.orders] for c, p in parts.items()} == {"1": ["a"], "2": ["b", "c"]}
    assert [m.id for m in parts["2"].machines] == ["m2"]
    placed = MatchResult(
        SolveStatus.FEASIBLE, (Assignment("b.1", "b", "m2", 0, 60, 60),),
        (Unassigned("c.1", "c", Reason.NO_FREE_INTERVAL),), 0, 0, 0.0, 0.0,
    )  # fmt: skip
    rest = leftover_problem(problem, [placed])
    assert [o.id for o in rest.orders] == ["c"]  # only what no part placed
    free = {m.id: m.free for m in rest.machines}
    assert free == {"m1": ((0, 1000),), "m2": ((60, 1000),)}  # less what the parts took


def _two_clusters(session: Session) -> tuple[int, int, int]:
    """Ningbo mills; Hangzhou mills and the only lathe. Returns (ningbo, hangzhou, lathe)."""
    owner = make_user(session, roles=(Role.owner,))
    ningbo, hangzhou = (
        make_cluster(session, lat=NINGBO[0], lon=NINGBO[1]),
        make_cluster(session, lat=HANGZHOU[0], lon=HANGZHOU[1]),
    )
    for cluster, (lat, lon) in ((ningbo, NINGBO), (hangzhou, HANGZHOU)):
        for rate in (9000, 12000):
            m = make_machine(session, owner=owner, cluster_id=cluster.id, hourly_rate_fen=rate,
                             lat=lat, lon=lon)  # fmt: skip
            make_window(session, machine=m, start=hours_from_now(2), end=hours_from_now(60))
    lathe = make_machine(session, owner=owner, cluster_id=hangzhou.id, process_key="turning",
                         lat=HANGZHOU[0], lon=HANGZHOU[1])  # fmt: skip
    make_window(session, machine=lathe, start=hours_from_now(2), end=hours_from_now(60))
    assert ningbo.id and hangzhou.id and lathe.id
    return ningbo.id, hangzhou.id, lathe.id


def test_a_split_run_places_what_only_another_cluster_can_do(
    session: Session, settings: Settings
) -> None:
    _, _, lathe = _two_clusters(session)
    buyer = make_user(session, roles=(Role.buyer,))
    mill = make_order(session, buyer=buyer)  # delivered in Ningbo
    turn = make_order(
        session, buyer=buyer, operations=[{"process_key": "turning", "material_key": "steel"}]
    )
    far = make_order(session, buyer=buyer, delivery_lat=HANGZHOU[0], delivery_lon=HANGZHOU[1])
    session.commit()
    results = {}
    for split in (False, True):
        run = run_matching(
            session=session, user=None, cluster_id=None, time_limit_s=2,
            settings=settings.model_copy(update={"match_split_machines": 0 if split else 10_000}),
        )  # fmt: skip
        assert run.status == "succeeded", run.error
        placed = {
            (b.order_id, b.machine_id, b.start_at)
            for b in session.exec(select(Booking).where(Booking.state == "proposed")).all()
        }
        results[split] = (run, placed)
    whole, split_run = results[False][0], results[True][0]
    assert split_run.proposals == whole.proposals == 3 and split_run.unmatched == 0
    assert results[True][1] == results[False][1]  # the same answer on a market this plain
    assert any(o == turn.id and m == lathe for o, m, _ in results[True][1])  # across the border
    assert {o for o, _, _ in results[True][1]} == {mill.id, turn.id, far.id}
    # the split objective is the market's (the cross pass's cost replaced its penalty) ...
    assert split_run.objective_fen == whole.objective_fen
    # ... but no part's bound is the market's: none is reported
    assert split_run.bound_fen is None and split_run.gap is None and whole.bound_fen is not None
    # the greedy baseline is recorded beside the answer, through the same passes
    assert whole.greedy_placed == 3 and split_run.greedy_placed == 3
