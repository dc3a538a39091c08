"""The engine's answer on the compiled form, and its translation to a
:class:`matching.domain.MatchResult`."""

from __future__ import annotations

from dataclasses import dataclass

from matching.compiled import CompiledProblem
from matching.domain import Assignment, MatchResult, Reason, SolveStatus, Unassigned
from matching.engine.common import Solution


@dataclass(frozen=True, slots=True)
class EngineResult:
    """What :func:`matching.engine.solve_compiled` found.  ``objective`` is the value of
    ``solution``; ``bound`` a proven lower bound (at most ``objective``); ``proven`` that
    every component was solved to proven optimality and the bound meets the objective;
    ``winner`` is ``"engine"``, or ``"greedy"`` when the best greedy order was not
    beaten; ``greedy`` holds the objective of every greedy priority order."""

    solution: Solution
    objective: int
    bound: int
    proven: bool
    winner: str
    greedy_objective: int
    greedy_order: str
    greedy: dict[str, int]
    components: int
    terms: dict[str, int]  # the objective split into its terms (objective.breakdown)
    greedy_placed: int = 0  # jobs the best greedy order placed

    def stats(self) -> dict[str, object]:
        """The figures as the plain dict ``MatchResult.stats`` carries."""
        return {
            "greedy": dict(self.greedy),
            "components": self.components,
            "winner": self.winner,
            "objective": self.objective,
            "bound": self.bound,
            "greedy_objective": self.greedy_objective,
            "greedy_placed": self.greedy_placed,
            "greedy_order": self.greedy_order,
            "terms": dict(self.terms),
            "proven": self.proven,
        }


def to_match_result(cp: CompiledProblem, result: EngineResult, seconds: float) -> MatchResult:
    """Assignments per placed job (in order sequence, with the transport to the next
    site), and every other job unassigned with its reason."""
    sol = result.solution
    assignments = []
    for order in cp.orders:
        for k, j in enumerate(order.jobs):
            if j not in sol:
                continue
            job = cp.jobs[j]
            oi, st = sol[j]
            opt = job.options[oi]
            end = st + opt.duration
            if k + 1 < len(order.jobs) and order.jobs[k + 1] in sol:
                nxt = cp.jobs[order.jobs[k + 1]]
                transport = cp.hop(opt.machine, nxt.options[sol[order.jobs[k + 1]][0]].machine)[1]
            else:
                transport = opt.transport
            tard = job.tardiness_per_min * max(0, end - opt.due)
            assignments.append(
                Assignment(
                    job.key,
                    order.key,
                    cp.machine_keys[opt.machine],
                    st,
                    end,
                    opt.price,
                    transport,
                    tard,
                )
            )
    unassigned = []
    for j, job in enumerate(cp.jobs):
        if j in sol:
            continue
        okey = cp.orders[job.order].key
        if job.reason is not None:
            unassigned.append(Unassigned(job.key, okey, job.reason, job.detail))
        else:
            unassigned.append(
                Unassigned(
                    job.key,
                    okey,
                    Reason.DISPLACED,
                    f"{len(job.options)} feasible option(s); the capacity "
                    "went to better-valued work",
                )
            )
    obj, bound = result.objective, result.bound
    gap = 0.0 if obj <= 0 else max(0.0, (obj - bound) / obj)
    status = SolveStatus.OPTIMAL if bound >= obj else SolveStatus.FEASIBLE
    return MatchResult(
        status, tuple(assignments), tuple(unassigned), obj, bound, gap, seconds, result.stats()
    )
