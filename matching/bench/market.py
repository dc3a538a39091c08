"""capshare-market-v1: reader, solution writer, baselines and runner."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from matching.bench.common import load_json, peak_rss_mb, reset_peak_rss
from matching.compiled import CompiledProblem, Job, Option, single_job_orders
from matching.domain import MatchProblem, ObjectiveMode, Reason
from matching.engine import solve, solve_compiled
from matching.greedy import best_greedy, greedy, priority_orders
from matching.objective import breakdown
from matching.tuning import SolverTuning

FORMAT = "capshare-market-v1"
Solution = dict[int, tuple[int, int]]


def market_problem(inst: dict[str, Any]) -> CompiledProblem:
    """Build the compiled problem straight from the instance (minutes and fen)."""
    if inst.get("format") != FORMAT:
        raise ValueError(f"instance format is {inst.get('format')!r}, expected {FORMAT!r}")
    machines = inst["machines"]
    jobs: list[Job] = []
    for i, jb in enumerate(inst["jobs"]):
        opts = tuple(
            Option(
                machine=o["machine"],
                duration=o["duration_min"],
                cost=o["cost_fen"],
                latest_end=o["latest_end_min"],
                due=o["due_min"],
                price=o["cost_fen"],
            )
            for o in jb["options"]
        )
        jobs.append(
            Job(
                key=str(jb["id"]),
                order=i,
                release=jb["release_min"],
                tardiness_per_min=jb["tardiness_fen_per_min"],
                penalty=jb["unassigned_penalty_fen"],
                options=opts,
                reason=None if opts else Reason.NO_ELIGIBLE_MACHINE,
            )
        )
    return CompiledProblem(
        name=inst["name"],
        machine_keys=tuple(str(m["id"]) for m in machines),
        free=tuple(tuple((int(s), int(e)) for s, e in m["free"]) for m in machines),
        jobs=tuple(jobs),
        orders=single_job_orders(jobs),
        mode=ObjectiveMode.COST,
    )


def nominal_durations(cp: CompiledProblem, *, max_rounds: int = 30) -> list[float]:
    """Each job's processing time on a machine of average speed (its "nominal" time).

    The instances give only per-option durations; they are fitted as nominal(job) /
    speed(machine), additively in logs, by alternating means (a two-way fit over the
    job × machine table, which converges in a few rounds). Jobs without options get 0."""
    logs = [[(o.machine, math.log(max(1, o.duration))) for o in job.options] for job in cp.jobs]
    nominal = [sum(d for _, d in opts) / len(opts) if opts else 0.0 for opts in logs]
    speed = [0.0] * len(cp.machine_keys)
    for _ in range(max_rounds):
        acc, cnt = [0.0] * len(speed), [0] * len(speed)
        for j, opts in enumerate(logs):
            for m, d in opts:
                acc[m] += nominal[j] - d
                cnt[m] += 1
        speed = [a / c if c else 0.0 for a, c in zip(acc, cnt, strict=True)]
        used = [v for v, c in zip(speed, cnt, strict=True) if c]
        mean = sum(used) / len(used) if used else 0.0
        speed = [v - mean for v in speed]
        change = 0.0
        for j, opts in enumerate(logs):
            if opts:
                new = sum(d + speed[m] for m, d in opts) / len(opts)
                change = max(change, abs(new - nominal[j]))
                nominal[j] = new
        if change < 1e-9:
            break
    return [math.exp(v) if opts else 0.0 for v, opts in zip(nominal, logs, strict=True)]


def reference_orders(cp: CompiledProblem) -> dict[str, list[int]]:
    """The job orders of the benchmark README's "best greedy": due date, fewest options
    (ties by due date), and longest nominal processing time first."""
    engine = priority_orders(cp)
    nominal = nominal_durations(cp)
    work = {oi: sum(nominal[j] for j in cp.orders[oi].jobs) for oi in engine["edd"]}
    due_rank = {oi: k for k, oi in enumerate(engine["edd"])}
    return {
        "edd": engine["edd"],
        "fewest_options": engine["fewest_options"],
        "longest_nominal": sorted(work, key=lambda oi: (-work[oi], due_rank[oi])),
    }


def solution_json(cp: CompiledProblem, sol: Solution) -> dict[str, Any]:
    rows = []
    for j in sorted(sol):
        oi, st = sol[j]
        rows.append(
            {
                "job": int(cp.jobs[j].key),
                "machine": int(cp.machine_keys[cp.jobs[j].options[oi].machine]),
                "start_min": int(st),
            }
        )
    return {"instance": cp.name, "assignments": rows}


def _row(
    cp: CompiledProblem, method: str, sol: Solution, bound: int | None, seconds: float
) -> dict[str, Any]:
    b = breakdown(cp, sol)
    tard_min = 0
    for j, (oi, st) in sol.items():
        opt = cp.jobs[j].options[oi]
        tard_min += max(0, st + opt.duration - opt.due)
    return {
        "instance": cp.name,
        "method": method,
        "objective": b["total"],
        "placed": len(sol),
        "tardiness_min": tard_min,
        "bound": bound,
        "seconds": round(seconds, 2),
        "peak_rss_mb": peak_rss_mb(),
    }


def run_market(
    path: str | Path,
    *,
    time_limit_s: float,
    seed: int = 0,
    workers: int = 2,
    solutions_dir: str | Path | None = None,
    progress: Any = None,
    deterministic: bool = True,
    tuning: SolverTuning | None = None,
) -> list[dict[str, Any]]:
    """Side by side on one instance: greedy EDD; the best greedy as the benchmark's README
    defines it (the best of three orders, see ``reference_orders``); the engine's own
    best greedy, its warm start (more orders); and the engine."""
    reset_peak_rss()
    inst = load_json(path)
    cp = market_problem(inst)
    rows = []
    t = time.monotonic()
    edd = greedy(cp, priority_orders(cp)["edd"])
    rows.append(_row(cp, "greedy-edd", edd, None, time.monotonic() - t))
    t = time.monotonic()
    _name, best, _vals = best_greedy(cp, orders=reference_orders(cp))
    rows.append(_row(cp, "greedy-best", best, None, time.monotonic() - t))
    t = time.monotonic()
    _name, hint, _vals = best_greedy(cp)  # the engine's own warm start: more orders
    rows.append(_row(cp, "greedy-engine", hint, None, time.monotonic() - t))
    t = time.monotonic()
    res = solve_compiled(
        cp,
        time_limit_s=time_limit_s,
        seed=seed,
        workers=workers,
        progress=progress,
        deterministic=deterministic,
        tuning=tuning,
    )
    sol = res.solution
    rows.append(_row(cp, "capshare", sol, res.bound, time.monotonic() - t))
    if solutions_dir is not None:
        out = Path(solutions_dir)
        out.mkdir(parents=True, exist_ok=True)
        for method, s in (
            ("greedy-edd", edd),
            ("greedy-best", best),
            ("greedy-engine", hint),
            ("capshare", sol),
        ):
            (out / f"{cp.name}.{method}.json").write_text(json.dumps(solution_json(cp, s)))
    return rows


def run_problem(
    problem: MatchProblem,
    name: str,
    *,
    time_limit_s: float,
    seed: int = 0,
    workers: int = 2,
    progress: Any = None,
    tuning: SolverTuning | None = None,
) -> list[dict[str, Any]]:
    """``matching.solve`` on a domain problem (compile counted in the limit), beside the
    best greedy of the same compiled problem: compile, solve and total seconds, peak
    memory, placed and cost of both."""
    reset_peak_rss()
    t = time.monotonic()
    res = solve(problem, time_limit_s=time_limit_s, seed=seed, workers=workers,
                progress=progress, tuning=tuning)  # fmt: skip
    total = time.monotonic() - t
    compile_s = float(res.stats.get("compile_s", 0.0))  # type: ignore[arg-type]
    greedy_obj = int(res.stats.get("greedy_objective", 0))  # type: ignore[call-overload]
    greedy_placed = int(res.stats.get("greedy_placed", 0))  # type: ignore[call-overload]
    row = {
        "instance": name,
        "method": "capshare",
        "objective": res.objective_fen,
        "placed": len(res.assignments),
        "greedy_objective": greedy_obj,
        "greedy_placed": greedy_placed,
        "vs_greedy_pct": round(100 * (res.objective_fen - greedy_obj) / max(1, greedy_obj), 2),
        "gap_pct": round(100 * res.gap, 1),
        "compile_s": round(compile_s, 2),
        "solve_s": round(total - compile_s, 2),
        "total_s": round(total, 2),
        "peak_rss_mb": peak_rss_mb(),
        "options_dropped": res.stats.get("options_dropped", 0),
    }
    return [row]
