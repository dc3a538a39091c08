"""The indexed compile step finds the same options and reasons as checking every
operation against every machine; bounded options keep the reasons and the cheapest."""

from __future__ import annotations

import random

import pytest

from matching.compiled import TooLarge, compile_problem, limit_options
from matching.domain import MachineSpec, MatchProblem, OperationSpec, OrderSpec, Weights
from tests.matching.reference_compile import compile_problem as reference_compile

SITES = {"ningbo": (29.87, 121.55), "hangzhou": (30.27, 120.16), "wenzhou": (28.0, 120.67)}
PROCESSES = ["mill", "lathe", "print"]
MATERIALS = ["al", "steel", "abs"]
CERTS = ["ISO9001", "AS9100"]


def _free(rng: random.Random) -> tuple[tuple[int, int], ...]:
    out, t = [], rng.randrange(0, 600)
    while t < 6000:
        length = rng.randrange(60, 1500)
        out.append((t, t + length))
        t += length + rng.randrange(30, 900)
    return tuple(out)


def random_problem(seed: int, n_machines: int = 60, n_orders: int = 50) -> MatchProblem:
    rng = random.Random(seed)
    machines = []
    for i in range(n_machines):
        cluster = rng.choice(list(SITES))
        lat, lon = SITES[cluster]
        machines.append(
            MachineSpec(
                id=f"m{i}",
                owner_id=f"o{i % 7}",
                cluster=cluster,
                family="f",
                process=rng.choice(PROCESSES),
                materials=frozenset(rng.sample(MATERIALS, rng.randint(1, 3))),
                free=_free(rng),
                rate_fen_per_hour=rng.randrange(3000, 30000, 100),
                envelope_mm=rng.choice([(0, 0, 0), (500, 400, 300), (200, 200, 200)]),
                tolerance_mm=rng.choice([0.0, 0.01, 0.05]),
                certifications=frozenset(rng.sample(CERTS, rng.randint(0, 2))),
                speed_factor=rng.choice([0.8, 1.0, 1.25]),
                min_booking_min=rng.choice([0, 60, 120]),
                lat=lat + rng.uniform(-0.1, 0.1),
                lon=lon + rng.uniform(-0.1, 0.1),
                on_time_rate=rng.choice([1.0, 0.9]),
            )
        )
    orders = []
    for k in range(n_orders):
        cluster = rng.choice(list(SITES))
        lat, lon = SITES[cluster]
        ops = []
        for s in range(rng.choice([1, 1, 2, 3])):
            ops.append(
                OperationSpec(
                    id=f"op{k}.{s}",
                    process=rng.choice(PROCESSES),
                    material=rng.choice(MATERIALS),
                    std_duration_min=rng.choice([30, 60, 120, 400]),
                    envelope_mm=rng.choice([(0, 0, 0), (300, 100, 100), (450, 350, 250)]),
                    tolerance_mm=rng.choice([0.0, 0.02]),
                    certifications=frozenset(rng.sample(CERTS, rng.choice([0, 0, 1]))),
                    excluded_machines=frozenset(
                        f"m{rng.randrange(n_machines)}" for _ in range(rng.choice([0, 0, 3, 30]))
                    ),
                )
            )
        release = rng.randrange(0, 4000)
        orders.append(
            OrderSpec(
                id=f"o{k}",
                buyer_id="b",
                operations=tuple(ops),
                release_min=release,
                due_min=release + rng.randrange(100, 3000),
                hard_due=rng.random() < 0.5,
                tardiness_fen_per_min=rng.randrange(0, 50),
                unassigned_penalty_fen=1_000_000,
                budget_fen=rng.choice([None, 2000, 20000, 100000]),
                max_distance_km=rng.choice([None, None, 30.0, 200.0]),
                delivery_lat=lat + rng.uniform(-0.2, 0.2),
                delivery_lon=lon + rng.uniform(-0.2, 0.2),
                cluster=rng.choice([cluster, None]),
            )
        )
    weights = Weights(cross_cluster_fen=rng.choice([0, 500]), unreliability_fen=300)
    return MatchProblem(tuple(machines), tuple(orders), horizon_min=7000, weights=weights)


@pytest.mark.parametrize("seed", range(12))
def test_indexed_compile_is_the_reference(seed: int) -> None:
    problem = random_problem(seed)
    new, old = compile_problem(problem), reference_compile(problem)
    assert new.jobs == old.jobs
    assert new.orders == old.orders and new.free == old.free
    reasons = {j.reason for j in old.jobs}
    assert len(reasons) >= 3  # the generated problems exercise several reasons


@pytest.mark.parametrize("seed", range(8))
def test_bounded_options_keep_reasons_and_the_cheapest(seed: int) -> None:
    problem = random_problem(seed, n_machines=120)
    full = compile_problem(problem)
    small = compile_problem(problem, max_options=3, local_options=1)
    assert small.options_dropped > 0
    for a, b in zip(full.jobs, small.jobs, strict=True):
        assert (a.reason, a.detail) == (b.reason, b.detail)
        assert set(b.options) <= set(a.options)
        assert bool(a.options) == bool(b.options)
        if a.options:
            assert len(b.options) <= 4
            assert min(o.cost for o in a.options) == min(o.cost for o in b.options)
            if len(a.options) > 4:
                assert len(b.options) >= 3


def test_limit_options_maps_back_to_the_cheapest() -> None:
    cp = compile_problem(random_problem(3, n_machines=120))
    small, kept = limit_options(cp, 2)
    assert kept
    for j, idx in kept.items():
        assert [cp.jobs[j].options[k] for k in idx] == list(small.jobs[j].options)
        cheapest = sorted(cp.jobs[j].options, key=lambda o: (o.cost, o.machine))[:2]
        assert set(small.jobs[j].options) == set(cheapest)


def test_a_problem_above_the_memory_limit_is_refused() -> None:
    problem = random_problem(1)
    with pytest.raises(TooLarge, match="MiB"):
        compile_problem(problem, max_mb=0.001)
    assert compile_problem(problem, max_mb=100).jobs
