"""Generalized assignment (OR-Library / Yagiura formats) through the engine.

Agents become machines free over one interval [0, capacity); a job's option on agent i
has duration a[i][j] (its resource use) and cost c[i][j]; leaving a job out costs more
than any assignment, so every job is placed when that is possible.  With
``maximize`` the costs become (cmax - c) and the objective is mapped back.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matching.bench.common import find_upward
from matching.compiled import NO_DUE, CompiledProblem, Job, Option, single_job_orders
from matching.domain import ObjectiveMode
from matching.engine import solve_compiled


@dataclass(frozen=True)
class GapInstance:
    name: str
    cost: list[list[int]]  # [agent][job]
    use: list[list[int]]
    capacity: list[int]


def parse_gap(text: str, stem: str) -> list[GapInstance]:
    """All problems of one file.  A file either starts with the problem count P
    (OR-Library) or holds one problem (Yagiura); the token count tells which."""
    toks = [int(t) for t in text.split()]

    def one(pos: int) -> tuple[int, int, int]:
        m, n = toks[pos], toks[pos + 1]
        return m, n, pos + 2 + 2 * m * n + m

    single = False
    if len(toks) >= 2:
        m, n, end = one(0)
        single = end == len(toks)
    probs: list[GapInstance] = []
    if single:
        starts, names = [0], [stem]
    else:
        count, pos, starts = toks[0], 1, []
        for _ in range(count):
            starts.append(pos)
            pos = one(pos)[2]
        if pos != len(toks):
            raise ValueError(f"{len(toks) - pos} unused tokens in GAP file")
        names = [f"{stem}-{p}" for p in range(count)]
    for pos, name in zip(starts, names, strict=True):
        m, n = toks[pos], toks[pos + 1]
        q = pos + 2
        cost = [toks[q + i * n : q + (i + 1) * n] for i in range(m)]
        q += m * n
        use = [toks[q + i * n : q + (i + 1) * n] for i in range(m)]
        q += m * n
        probs.append(GapInstance(name, cost, use, toks[q : q + m]))
    return probs


def gap_problem(g: GapInstance, maximize: bool = False) -> tuple[CompiledProblem, int]:
    """(compiled problem, offset): for maximize, profit = offset - engine objective."""
    m, n = len(g.cost), len(g.cost[0])
    cmax = max(max(r) for r in g.cost)
    coef = [[(cmax - c) if maximize else c for c in row] for row in g.cost]
    big = sum(max(coef[i][j] for i in range(m)) for j in range(n)) + 1
    jobs = []
    for j in range(n):
        opts = tuple(
            Option(
                machine=i,
                duration=g.use[i][j],
                cost=coef[i][j],
                latest_end=g.capacity[i],
                due=NO_DUE,
                price=coef[i][j],
            )
            for i in range(m)
            if g.use[i][j] <= g.capacity[i]
        )
        jobs.append(
            Job(key=str(j), order=j, release=0, tardiness_per_min=0, penalty=big, options=opts)
        )
    cp = CompiledProblem(
        name=g.name,
        machine_keys=tuple(str(i) for i in range(m)),
        free=tuple(((0, b),) for b in g.capacity),
        jobs=tuple(jobs),
        orders=single_job_orders(jobs),
        mode=ObjectiveMode.COST,
    )
    return cp, n * cmax if maximize else 0


def _bks_names(g: GapInstance, stem: str) -> list[str]:
    m, n = len(g.cost), len(g.cost[0])
    names = [f"cattrysse1994/{g.name}", f"yagiura2004/{stem}"]
    if len(stem) == 4 and stem.startswith("gap") and stem[3].isalpha():
        names.append(f"chu1997/{stem[3]}{m:02d}{n}")
    return names


def best_known(g: GapInstance, stem: str, bks: Path | None) -> int | None:
    if bks is None:
        return None
    with bks.open(newline="") as f:
        rows = {r["Path"]: r for r in csv.DictReader(f)}
    for key in _bks_names(g, stem):
        r = rows.get(key)
        if r is not None:
            val = r.get("Best known solution value") or r.get("Optimum")
            return int(val) if val else None
    return None


def run_gap(
    path: str | Path,
    *,
    time_limit_s: float,
    seed: int = 0,
    workers: int = 2,
    maximize: bool = False,
    bks: str | Path | None = None,
    deterministic: bool = True,
) -> list[dict[str, Any]]:
    """One row per problem in the file; the time limit applies to each problem.
    Best-known values (``bks_fontanf.csv``) are in the minimisation sense only."""
    path = Path(path)
    bks_path = Path(bks) if bks else find_upward(path, "bks_fontanf.csv")
    rows = []
    for g in parse_gap(path.read_text(), path.stem):
        cp, offset = gap_problem(g, maximize)
        t = time.monotonic()
        res = solve_compiled(
            cp, time_limit_s=time_limit_s, seed=seed, workers=workers, deterministic=deterministic
        )
        seconds = time.monotonic() - t
        obj, bound = res.objective, res.bound
        complete = len(res.solution) == len(cp.jobs)
        # "incomplete": no assignment of every job found in the time (not a proof that none exists)
        status = ("optimal" if bound >= obj else "feasible") if complete else "incomplete"
        if maximize:
            obj, bound = offset - obj, offset - bound  # bound becomes an upper bound
        rows.append(
            {
                "instance": g.name,
                "objective": obj if complete else None,
                "bound": bound,
                "best_known": None if maximize else best_known(g, path.stem, bks_path),
                "seconds": round(seconds, 2),
                "status": status,
            }
        )
    return rows
