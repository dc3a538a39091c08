"""The time limit bounds the whole solve (model building, bounds and repair included),
also for market-wide problems of multi-operation orders; chained-window bound."""

from __future__ import annotations

import random
import time

import pytest

from matching import check_result, solve
from matching.bound import chain_windows, lp_bound, order_pairs
from matching.compiled import compile_problem
from matching.constraints import SlotVars, slot_entries
from matching.domain import MatchProblem
from matching.engine.common import trivial_bound
from matching.greedy import best_greedy
from matching.objective import evaluate

from .builders import machine, op, order, problem

SITES = [(29.87, 121.55), (30.27, 120.16), (29.30, 120.08), (28.68, 121.42), (30.75, 120.75)]


def chained_market(n_orders: int, n_machines: int, seed: int) -> MatchProblem:
    rng = random.Random(seed)
    procs = ["mill3", "turn", "sheet"]
    machines = []
    for i in range(n_machines):
        free, t = [], rng.randint(0, 300)
        while t < 9000:
            length = rng.randint(300, 1500)
            free.append((t, t + length))
            t += length + rng.randint(60, 600)
        machines.append(
            machine(
                id=f"m{i}",
                owner_id=f"o{i % 7}",
                process=procs[i % 3],
                free=tuple(free),
                rate=rng.randint(3000, 9000),
                site=SITES[i % len(SITES)],
                cluster=f"c{i % len(SITES)}",
            )
        )
    orders = []
    for k in range(n_orders):
        ops = tuple(
            op(id=f"r{k}o{i}", process=procs[(k + i) % 3], minutes=rng.randint(60, 400))
            for i in range(rng.randint(1, 3))
        )
        rel = rng.randint(0, 5000)
        orders.append(
            order(
                id=f"r{k}",
                ops=ops,
                release=rel,
                due=rel + rng.randint(1500, 4000),
                tardiness=rng.randint(5, 50),
                penalty=5_000_000,
                delivery=SITES[k % len(SITES)],
            )
        )
    return problem(machines, orders, horizon=9000)


def test_short_time_limits_still_give_valid_answers() -> None:
    """Whatever the limit, the answer is valid and no worse than the greedy. How closely the
    wall time keeps to the limit depends on the machine: `capshare bench market` prints it
    beside the limit; no unit test times it (CI runs on loaded machines)."""
    p = chained_market(160, 45, seed=11)
    cp = compile_problem(p)
    _n, gsol, _v = best_greedy(cp)
    gobj = evaluate(cp, gsol)
    for det in (True, False):
        for limit in (0.3, 1.5):
            r = solve(p, time_limit_s=limit, deterministic=det)
            assert check_result(p, r) == []
            assert r.objective_fen <= gobj
            assert r.bound_fen <= r.objective_fen


def test_chained_window_bound_is_valid() -> None:
    p = chained_market(40, 15, seed=4)
    cp = compile_problem(p)
    jobs = list(range(len(cp.jobs)))
    jobs = [j for j in jobs if cp.jobs[j].options]
    tight = chain_windows(cp, jobs)
    # every solution of the greedy (which obeys precedence) fits the tightened windows
    _n, gsol, _v = best_greedy(cp)
    for j, (oi, st) in gsol.items():
        o = tight.jobs[j].options[oi]
        assert st >= tight.jobs[j].release and st + o.duration <= o.latest_end
    slots, entries = slot_entries(tight, jobs)
    lb = lp_bound(tight, SlotVars(slots, entries), jobs, same=order_pairs(cp, jobs))
    assert lb is not None
    const = sum(j.penalty for j in cp.jobs if not j.options)
    assert lb + const <= evaluate(cp, gsol)
    r = solve(p, time_limit_s=2.0)
    assert r.bound_fen >= min(r.objective_fen, trivial_bound(cp, jobs) + const)


def test_order_lns_valid_and_never_worse() -> None:
    from matching.engine import Search, components
    from matching.engine.lns import lns_orders
    from matching.validation import check_compiled

    cp = compile_problem(chained_market(60, 20, seed=7))
    _n, gsol, _v = best_greedy(cp)
    out = []
    for _ in range(2):
        sol: dict[int, tuple[int, int]] = {}
        for comp in components(cp):
            part, _stats = lns_orders(
                cp,
                {j: gsol[j] for j in comp if j in gsol},
                comp,
                0.5,
                time.monotonic() + 60,
                Search(seed=0, workers=1, deterministic=True),
            )
            sol.update(part)
        assert check_compiled(cp, sol) == []
        assert evaluate(cp, sol) <= evaluate(cp, gsol)
        out.append(sol)
    assert out[0] == out[1]


def test_a_large_order_component_builds_no_model_and_improves_the_greedy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Above ``chunk_options`` a component of multi-operation orders goes straight to LNS
    over whole orders from the greedy (no interval model, no LP): valid, never worse."""
    from matching import bound
    from matching.engine import Search, components, orders
    from matching.engine.common import ComponentTask, Reporter
    from matching.tuning import SolverTuning
    from matching.validation import check_compiled

    def no_model(*_a: object, **_k: object) -> None:
        raise AssertionError("the interval model was built")

    monkeypatch.setattr(orders, "solve_interval_model", no_model)
    monkeypatch.setattr(bound, "lp_bound", no_model)
    cp = compile_problem(chained_market(60, 20, seed=7))
    _n, gsol, _v = best_greedy(cp)
    tuning = SolverTuning(chunk_options=10)
    comp = max(components(cp), key=len)
    hint = {j: gsol[j] for j in comp if j in gsol}
    task = ComponentTask(
        index=0, jobs=comp, hint=hint, share=0.5, wall=60.0, started=time.monotonic(),
        search=Search(seed=0, workers=1, deterministic=True, tuning=tuning),
        search_rate=1.0, lns_rate=1.0, report=Reporter(None, time.monotonic()),
    )  # fmt: skip
    got = orders.OrderStrategy().run(cp, task)
    assert check_compiled(cp, got.solution) == []
    assert evaluate(cp, got.solution) <= evaluate(cp, hint)
    assert not got.optimal and got.bound == trivial_bound(cp, comp)
