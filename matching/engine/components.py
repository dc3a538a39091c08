"""Decomposition: jobs linked by a shared machine or by an order form a component;
components are solved independently (in threads), unless the objective couples them."""

from __future__ import annotations

from collections import defaultdict

from matching.compiled import CompiledProblem
from matching.engine.common import coupled


def components(cp: CompiledProblem, jobs: list[int] | None = None) -> list[list[int]]:
    """Jobs linked by a shared machine or by an order, as sorted lists."""
    jobs = [j for j in range(len(cp.jobs)) if cp.jobs[j].options] if jobs is None else jobs
    parent = {j: j for j in jobs}

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    by_machine: dict[int, int] = {}
    for j in jobs:
        for o in cp.jobs[j].options:
            other = by_machine.setdefault(o.machine, j)
            if other != j:
                union(j, other)
    for order in cp.orders:
        live = [j for j in order.jobs if j in parent]
        for a, b in zip(live, live[1:], strict=False):
            union(a, b)
    groups: dict[int, list[int]] = defaultdict(list)
    for j in jobs:
        groups[find(j)].append(j)
    return sorted(groups.values(), key=lambda g: g[0])


def decompose(cp: CompiledProblem) -> list[list[int]]:
    """The components to solve: one with every job when the objective couples them."""
    comps = [sorted(j for c in components(cp) for j in c)] if coupled(cp) else components(cp)
    return [c for c in comps if c]
