"""Flexible job shop (Mastrolilli / Brandimarte text format) through the engine.

Jobs become orders, operations become chained jobs whose options give the eligible
machines with machine-dependent durations; every machine is free over one interval
[0, H) with H the sum of the longest option of every operation; the objective mode is
makespan and leaving an operation out costs more than any makespan, so all are placed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from matching.bench.common import find_upward
from matching.compiled import NO_DUE, CompiledProblem, Job, Option, Order
from matching.domain import ObjectiveMode
from matching.engine import solve_compiled


def parse_fjsp(text: str) -> tuple[int, list[list[list[tuple[int, int]]]]]:
    """(n_machines, jobs -> ops -> [(machine 0-based, duration)]).  The header's third
    field (average flexibility) is ignored."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ValueError("empty FJSP file")
    head = lines[0].split()
    n_jobs, n_machines = int(head[0]), int(head[1])
    toks = [int(t) for ln in lines[1:] for t in ln.split()]
    pos = 0
    jobs: list[list[list[tuple[int, int]]]] = []
    for _ in range(n_jobs):
        n_ops = toks[pos]
        pos += 1
        ops = []
        for _ in range(n_ops):
            k = toks[pos]
            pos += 1
            opts = []
            for _ in range(k):
                m, d = toks[pos], toks[pos + 1]
                pos += 2
                if not 1 <= m <= n_machines:
                    raise ValueError(f"machine {m} out of range 1..{n_machines}")
                opts.append((m - 1, d))
            ops.append(opts)
        jobs.append(ops)
    if pos != len(toks):
        raise ValueError(f"{len(toks) - pos} unused tokens after the last job")
    return n_machines, jobs


def fjsp_problem(text: str, name: str = "fjsp") -> CompiledProblem:
    n_machines, fjobs = parse_fjsp(text)
    horizon = sum(max(d for _m, d in op) for ops in fjobs for op in ops) + 1
    jobs: list[Job] = []
    orders: list[Order] = []
    for ji, ops in enumerate(fjobs):
        idx = []
        for oi, op in enumerate(ops):
            opts = tuple(
                Option(machine=m, duration=d, cost=0, latest_end=horizon, due=NO_DUE) for m, d in op
            )
            idx.append(len(jobs))
            jobs.append(
                Job(
                    key=f"{ji + 1}.{oi + 1}",
                    order=ji,
                    release=0,
                    tardiness_per_min=0,
                    penalty=horizon + 1,
                    options=opts,
                )
            )
        orders.append(Order(key=str(ji + 1), jobs=tuple(idx)))
    return CompiledProblem(
        name=name,
        machine_keys=tuple(str(m + 1) for m in range(n_machines)),
        free=tuple(((0, horizon),) for _ in range(n_machines)),
        jobs=tuple(jobs),
        orders=tuple(orders),
        mode=ObjectiveMode.MAKESPAN,
    )


def _instance_key(path: Path) -> list[str]:
    stem = path.stem
    keys = [stem, stem.lower()]
    low = stem.lower()
    if low.startswith("brandimartemk"):
        keys.append(f"mk{int(low[len('brandimartemk') :]):02d}")
    parent = path.parent.name.lower()
    if parent in {"edata", "rdata", "vdata", "sdata"}:
        keys.insert(0, f"{low}_{parent}")
    return keys


def best_known(path: Path, bks: Path | None) -> tuple[str, int | None, int | None]:
    """(instance name, best-known upper bound, best-known lower bound)."""
    keys = _instance_key(path)
    bks = bks if bks is not None else find_upward(path, "bks_scheduleopt.json")
    if bks is None:
        return keys[0], None, None
    table = {e["instance"]: e for e in json.loads(bks.read_text())}
    for k in keys:
        if k in table:
            return k, table[k].get("upper_bound"), table[k].get("lower_bound")
    return keys[0], None, None


def run_fjsp(
    path: str | Path,
    *,
    time_limit_s: float,
    seed: int = 0,
    workers: int = 2,
    bks: str | Path | None = None,
    deterministic: bool = True,
) -> dict[str, Any]:
    path = Path(path)
    name, ub, _lb = best_known(path, Path(bks) if bks else None)
    cp = fjsp_problem(path.read_text(), name)
    t = time.monotonic()
    res = solve_compiled(
        cp, time_limit_s=time_limit_s, seed=seed, workers=workers, deterministic=deterministic
    )
    seconds = time.monotonic() - t
    obj, bound = res.objective, res.bound
    if len(res.solution) < len(cp.jobs):
        status = "incomplete"
    else:
        status = "optimal" if bound >= obj else "feasible"
    return {
        "instance": name,
        "objective": obj,
        "bound": bound,
        "best_known": ub,
        "seconds": round(seconds, 2),
        "status": status,
    }
