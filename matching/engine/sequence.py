"""Exact sequencing inside one free slot: the slot model decides which jobs go into a
slot, this decides their order and start minutes."""

from __future__ import annotations

import itertools

from matching.compiled import CompiledProblem
from matching.objective import placed_cost


def sequence_slot(
    cp: CompiledProblem, s: int, t: int, items: list[tuple[int, int]], exact_up_to: int
) -> tuple[list[tuple[int, int, int]], list[int]]:
    """Order the jobs given to one free slot [s, t), each as early as possible.

    Tries every order for up to ``exact_up_to`` jobs, otherwise several priority orders
    improved by pairwise swaps.  If no order fits, drops the job whose loss is smallest
    and tries again.  Returns ([(job, option, start)], dropped jobs)."""
    items = list(items)
    dropped: list[int] = []
    while items:
        best = _best_sequence(cp, s, t, items, exact_up_to)
        if best is not None:
            return best, dropped
        # drop the job whose removal costs least (penalty minus its cost here)
        k = min(
            range(len(items)),
            key=lambda i: (
                cp.jobs[items[i][0]].penalty - cp.jobs[items[i][0]].options[items[i][1]].cost,
                items[i][0],
            ),
        )
        dropped.append(items.pop(k)[0])
    return [], dropped


def _schedule(
    cp: CompiledProblem, s: int, t: int, seq: list[tuple[int, int]]
) -> tuple[int, list[tuple[int, int, int]]] | None:
    now, total, out = s, 0, []
    for j, o in seq:
        job = cp.jobs[j]
        opt = job.options[o]
        st = max(now, job.release)
        end = st + opt.duration
        if end > t or end > opt.latest_end:
            return None
        total += placed_cost(job, opt, st)
        out.append((j, o, st))
        now = end
    return total, out


def _best_sequence(
    cp: CompiledProblem, s: int, t: int, items: list[tuple[int, int]], exact_up_to: int
) -> list[tuple[int, int, int]] | None:
    best: tuple[int, list[tuple[int, int, int]]] | None = None
    if len(items) <= exact_up_to:
        for perm in itertools.permutations(items):
            got = _schedule(cp, s, t, list(perm))
            if got is not None and (best is None or got[0] < best[0]):
                best = got
        return None if best is None else best[1]

    def key_rel(it: tuple[int, int]) -> tuple[int, int]:
        return (cp.jobs[it[0]].release, it[0])

    def key_due(it: tuple[int, int]) -> tuple[int, int]:
        return (cp.jobs[it[0]].options[it[1]].due, it[0])

    def key_lft(it: tuple[int, int]) -> tuple[int, int]:
        return (cp.jobs[it[0]].options[it[1]].latest_end, it[0])

    starts = [sorted(items, key=key_rel), sorted(items, key=key_due), sorted(items, key=key_lft)]
    for seq in starts:
        got = _schedule(cp, s, t, seq)
        if got is None:
            continue
        cur = (got[0], seq)
        improved = True
        while improved:
            improved = False
            for a in range(len(seq) - 1):
                for b in range(a + 1, len(seq)):
                    trial = list(cur[1])
                    trial[a], trial[b] = trial[b], trial[a]
                    g2 = _schedule(cp, s, t, trial)
                    if g2 is not None and g2[0] < cur[0]:
                        cur = (g2[0], trial)
                        improved = True
        final = _schedule(cp, s, t, cur[1])
        if final is not None and (best is None or final[0] < best[0]):
            best = final
    return None if best is None else best[1]
