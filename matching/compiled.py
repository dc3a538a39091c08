"""The compiled (solver-facing) form of a matching problem.

Every operation becomes a :class:`Job` with a list of :class:`Option` s, one per
eligible machine, each with an explicit duration, a time-independent cost, a hard latest
end and a due time.  Both :func:`compile_problem` (from :mod:`matching.domain`) and the
benchmark readers produce this form, and the engine only ever sees it.

Jobs of one order form a chain (precedence, with a transport lag between the two
machines' sites) and are placed all-or-nothing.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

from matching.domain import (
    Interval,
    MachineSpec,
    MatchProblem,
    ObjectiveMode,
    OperationSpec,
    Reason,
    Weights,
)
from matching.rules import (
    EARTH_RADIUS_KM,
    SAME_SITE_KM,
    haversine_km,
    transport_fen,
    transport_minutes,
)

NO_DUE = 1 << 40  # "never tardy"


@dataclass(frozen=True, slots=True)
class Option:
    machine: int  # index into CompiledProblem.machine_keys
    duration: int
    cost: int  # objective cost, independent of the start time
    latest_end: int  # hard
    due: int  # tardy when ending after this
    price: int = 0  # processing price (budget, reporting); benchmarks: = cost
    transport: int = 0  # part of cost that is transport to the delivery point


@dataclass(frozen=True, slots=True)
class Job:
    key: str
    order: int  # index into CompiledProblem.orders
    release: int
    tardiness_per_min: int
    penalty: int
    options: tuple[Option, ...]
    # why the job has no options (set when ``options`` is empty)
    reason: Reason | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Order:
    key: str
    jobs: tuple[int, ...]  # in sequence
    budget: int | None = None  # cap on the sum of option prices


@dataclass(frozen=True, slots=True)
class Site:
    lat: float
    lon: float
    cluster: str


@dataclass(slots=True)
class CompiledProblem:
    name: str
    machine_keys: tuple[str, ...]
    free: tuple[tuple[Interval, ...], ...]
    jobs: tuple[Job, ...]
    orders: tuple[Order, ...]
    mode: ObjectiveMode = ObjectiveMode.COST
    owners: tuple[str, ...] = ()  # per machine; only needed for the spread term
    owner_spread_fen: int = 0
    sites: tuple[Site, ...] | None = None  # per machine; None = one site, no transport
    weights: Weights = field(default_factory=Weights)
    options_dropped: int = 0  # candidates compile left out (``max_options``)
    _hop_cache: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    _by_cost: dict[int, tuple[Job, tuple[int, ...]]] = field(default_factory=dict)

    def options_by_cost(self, j: int) -> tuple[int, ...]:
        """Job ``j``'s option indices by (cost, index), computed once per job."""
        job = self.jobs[j]
        got = self._by_cost.get(j)
        if got is None or got[0] is not job:
            opts = job.options
            got = (job, tuple(sorted(range(len(opts)), key=lambda k: (opts[k].cost, k))))
            self._by_cost[j] = got
        return got[1]

    def hop(self, ma: int, mb: int) -> tuple[int, int]:
        """(lag minutes, cost) of moving an order's goods from machine ma to machine mb."""
        if self.sites is None or ma == mb:
            return (0, 0)
        key = (ma, mb)
        got = self._hop_cache.get(key)
        if got is None:
            a, b = self.sites[ma], self.sites[mb]
            km = haversine_km(a.lat, a.lon, b.lat, b.lon)
            cost = 0
            if self.mode is ObjectiveMode.COST:
                cost = transport_fen(km, self.weights)
                if a.cluster != b.cluster:
                    cost += self.weights.cross_cluster_fen
            got = (transport_minutes(km, self.weights), cost)
            self._hop_cache[key] = got
        return got

    @property
    def has_chains(self) -> bool:
        return any(len(o.jobs) > 1 for o in self.orders)


def single_job_orders(jobs: list[Job]) -> tuple[Order, ...]:
    return tuple(Order(key=j.key, jobs=(i,)) for i, j in enumerate(jobs))


def _fits_somewhere(free: tuple[Interval, ...], release: int, dur: int, latest_end: int) -> bool:
    return any(max(s, release) + dur <= min(e, latest_end) for s, e in free)


class TooLarge(ValueError):
    """The problem would not fit the memory allowed (``SolverTuning.max_model_mb``): the
    caller turns it into a failed run with this message (e.g. match per cluster)."""


class _Bucket:
    """The machines of one (process, material) in one cluster, cheapest first, with
    their bounding box: the distance from a point to the box bounds the distance to
    every machine in it (the spatial part of the index)."""

    __slots__ = ("cluster", "machines", "lat", "lon", "cos_min")

    def __init__(self, cluster: str, ms: list[int], machines: tuple[MachineSpec, ...]) -> None:
        self.cluster, self.machines = cluster, ms
        lats = [machines[mi].lat for mi in ms]
        lons = [machines[mi].lon for mi in ms]
        self.lat = (min(lats), max(lats))
        self.lon = (min(lons), max(lons))
        self.cos_min = min(math.cos(math.radians(x)) for x in self.lat)

    def km_floor(self, lat: float, lon: float) -> float:
        """At most the haversine distance from (lat, lon) to any machine of the bucket."""
        dlat = max(0.0, self.lat[0] - lat, lat - self.lat[1])
        dlon = max(0.0, self.lon[0] - lon, lon - self.lon[1])
        if dlon > 180 or self.cos_min < 0:
            dlon = 0.0
        a = (
            math.sin(math.radians(dlat) / 2) ** 2
            + math.cos(math.radians(lat))
            * max(0.0, self.cos_min)
            * math.sin(math.radians(dlon) / 2) ** 2
        )
        return max(0.0, 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a))) * (1 - 1e-9) - 1e-6)


class _Index:
    """Candidate machines by (process, material), so that an operation is checked only
    against the machines that do its process in its material (``capable`` holds for
    none of the others).  Each list is sorted by price per standard minute (rate /
    speed), so that the cheapest options come first and a scan can stop once even the
    lower bound of a price is above what it looks for; ``fastest`` is the same lists
    by speed, for the shortest duration."""

    def __init__(self, machines: tuple[MachineSpec, ...]) -> None:
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        local: dict[tuple[str, str, str], list[int]] = defaultdict(list)
        for mi, m in enumerate(machines):
            for mat in m.materials:
                groups[(m.process, mat)].append(mi)
                local[(m.process, mat, m.cluster)].append(mi)
        self.key = [m.rate_fen_per_hour / m.speed_factor for m in machines]

        def by_price(ms: list[int]) -> list[int]:
            return sorted(ms, key=lambda mi: (self.key[mi], mi))

        self.cheapest = {k: by_price(v) for k, v in groups.items()}
        self.buckets: dict[tuple[str, str], list[_Bucket]] = defaultdict(list)
        for (process, mat, cluster), ms in sorted(local.items()):
            self.buckets[(process, mat)].append(_Bucket(cluster, by_price(ms), machines))
        self.fastest = {
            k: sorted(v, key=lambda mi: (-machines[mi].speed_factor, mi)) for k, v in groups.items()
        }
        self._caps = [_Caps(m) for m in machines]
        self._by_sig: dict[tuple[object, ...], _Capable] = {}

    def capable(self, op: OperationSpec) -> _Capable:
        """The machines ``capable`` holds for (the op's process and material, envelope,
        tolerance, certifications), per bucket and in both orders; operations of one
        signature share it (machines of a process come in few envelope sizes)."""
        part = _Part(op)
        sig = (op.process, op.material, part.envelope, part.tolerance, part.certifications)
        got = self._by_sig.get(sig)
        if got is None:
            gk = (op.process, op.material)
            caps = self._caps
            ok = {mi for mi in self.cheapest.get(gk, ()) if part.capable(caps[mi])}
            got = _Capable(
                [(b, [mi for mi in b.machines if mi in ok]) for b in self.buckets.get(gk, ())],
                [mi for mi in self.cheapest.get(gk, ()) if mi in ok],
                [mi for mi in self.fastest.get(gk, ()) if mi in ok],
            )
            self._by_sig[sig] = got
        return got


class _Capable:
    """The capable machines of one operation signature: per bucket (cheapest first),
    and all of them cheapest first and fastest first."""

    __slots__ = ("buckets", "cheapest", "fastest")

    def __init__(
        self, buckets: list[tuple[_Bucket, list[int]]], cheapest: list[int], fastest: list[int]
    ) -> None:
        self.buckets, self.cheapest, self.fastest = buckets, cheapest, fastest


class _Free:
    """A machine's free intervals, for "does [release, latest_end) hold ``dur`` minutes
    inside one of them" (``_fits_somewhere``) by bisection when they are sorted and
    disjoint, as the app gives them."""

    __slots__ = ("free", "starts", "ends", "plain")

    def __init__(self, free: tuple[Interval, ...]) -> None:
        self.free = free
        ordered = sorted(free)
        self.plain = all(a[1] <= b[0] for a, b in zip(ordered, ordered[1:], strict=False))
        self.starts = [s for s, _ in ordered]
        self.ends = [e for _, e in ordered]

    def fits(self, release: int, dur: int, latest_end: int) -> bool:
        if not self.plain:
            return _fits_somewhere(self.free, release, dur, latest_end)
        starts, ends = self.starts, self.ends
        k = bisect.bisect_left(ends, release + dur)
        while k < len(starts):
            end = min(ends[k], latest_end)
            if max(starts[k], release) + dur <= end:
                return True
            if starts[k] + dur > latest_end:
                return False
            k += 1
        return False


@dataclass(frozen=True, slots=True)
class _Caps:
    """What ``capable`` checks of a machine besides process and material, precomputed."""

    envelope: tuple[int, ...]  # sorted; () = not applicable
    tolerance: float
    certifications: frozenset[str]

    def __init__(self, m: MachineSpec) -> None:
        object.__setattr__(
            self, "envelope", tuple(sorted(m.envelope_mm)) if any(m.envelope_mm) else ()
        )
        object.__setattr__(self, "tolerance", m.tolerance_mm)
        object.__setattr__(self, "certifications", m.certifications)


class _Part:
    """An operation's side of ``capable`` (process and material come from the index)."""

    __slots__ = ("envelope", "tolerance", "certifications")

    def __init__(self, op: OperationSpec) -> None:
        self.envelope = tuple(sorted(op.envelope_mm)) if any(op.envelope_mm) else ()
        self.tolerance = op.tolerance_mm
        self.certifications = op.certifications

    def capable(self, m: _Caps) -> bool:
        """``domain.capable(op, machine)`` for a machine of the op's process and material."""
        if self.envelope and m.envelope:
            for p, q in zip(self.envelope, m.envelope, strict=True):
                if p and q and p > q:
                    return False
        if self.tolerance > 0 and m.tolerance > self.tolerance + 1e-12:
            return False
        return self.certifications <= m.certifications


def _price_floor(std: int, key: float) -> float:
    """A lower bound of ``price_fen(run_minutes(op, m), m.rate)`` from rate / speed."""
    return std * key / 60 - 1.0


def estimate_options(problem: MatchProblem, max_options: int | None) -> int:
    """Options the compiled problem holds at most: per operation its candidates (the
    machines of its process and material), or ``max_options`` (+ the local ones) when
    fewer; computed before anything is built."""
    sizes: dict[tuple[str, str], int] = defaultdict(int)
    for m in problem.machines:
        for mat in m.materials:
            sizes[(m.process, mat)] += 1
    cap = None if max_options is None else 2 * max_options
    total = 0
    for order in problem.orders:
        for op in order.operations:
            n = sizes.get((op.process, op.material), 0)
            total += n if cap is None else min(n, cap)
    return total


# bytes per compiled option and per free interval (Option, its tuple slot, the engine's
# per-option state); measured with tracemalloc on generated markets, with margin
OPTION_BYTES = 600
INTERVAL_BYTES = 300


def estimate_mb(problem: MatchProblem, max_options: int | None) -> float:
    """Memory the compiled problem and the engine's state about it need, in MiB."""
    intervals = sum(len(m.free) for m in problem.machines)
    options = estimate_options(problem, max_options)
    return (options * OPTION_BYTES + intervals * INTERVAL_BYTES) / 2**20


def compile_problem(
    problem: MatchProblem,
    *,
    max_options: int | None = None,
    local_options: int = 0,
    max_mb: float | None = None,
) -> CompiledProblem:
    """Eligibility, durations, prices, transport and time windows of every operation.

    Operations without any feasible option keep a :class:`Reason` (checked in this
    order: capability, distance, budget, free time, exclusion: the reason is the last
    check that left no machine).  A machine in the operation's ``excluded_machines`` is
    never an option; when every machine that passes the other checks is excluded, the
    reason is :attr:`Reason.DECLINED`.  When one operation of an order has no option,
    the whole order has none (all-or-nothing).

    Candidates come from an index by process and material (:class:`_Index`).  With
    ``max_options`` (cost mode) an operation keeps its ``max_options`` cheapest options
    (by cost, then machine) plus the ``local_options`` cheapest in the order's own
    cluster, so that an order has near machines for consecutive steps; eligibility and
    reasons do not depend on it (an operation only loses options when it keeps at least
    ``max_options``).  ``max_mb``: raise :class:`TooLarge` before building anything when
    :func:`estimate_mb` is above it.
    """
    if max_mb is not None:
        need = estimate_mb(problem, max_options)
        if need > max_mb:
            raise TooLarge(
                f"the problem needs about {need:,.0f} MiB to match"
                f" ({estimate_options(problem, max_options):,} options, {len(problem.machines):,}"
                f" machines), above the limit of {max_mb:,.0f} MiB: match a smaller scope"
                " (one cluster) or raise the limit"
            )
    w = problem.weights
    mode = problem.objective_mode
    machines = problem.machines
    cost_mode = mode is ObjectiveMode.COST
    k_max = max_options if cost_mode else None
    idx = _Index(machines)
    free = [_Free(m.free) for m in machines]
    rad = [math.radians(m.lat) for m in machines]
    cos = [math.cos(r) for r in rad]
    lon_of = [m.lon for m in machines]
    speed = [m.speed_factor for m in machines]
    min_book = [max(m.min_booking_min, 1) for m in machines]
    rate = [m.rate_fen_per_hour for m in machines]
    machine_ids = [m.id for m in machines]
    unrel = [
        round(w.unreliability_fen * (1.0 - m.on_time_rate)) if cost_mode else 0 for m in machines
    ]
    floor_unrel = min(0, min(unrel, default=0))
    sites = tuple(Site(m.lat, m.lon, m.cluster) for m in machines)
    key = idx.key
    # per machine what the scan reads of it, in one tuple (unpacked at once)
    machine_row = [
        (key[mi], mi, m.speed_factor, max(m.min_booking_min, 1), m.rate_fen_per_hour, rad[mi],
         cos[mi], m.lon, unrel[mi], free[mi].starts, free[mi].ends, free[mi].plain)
        for mi, m in enumerate(machines)
    ]  # fmt: skip
    rows_cache: dict[int, tuple[list[int], list[tuple[Any, ...]]]] = {}

    def rows_of(group: list[int]) -> list[tuple[Any, ...]]:
        got = rows_cache.get(id(group))
        if got is None:  # the group list is kept alive by the index (and by ``got``)
            got = rows_cache[id(group)] = (group, [machine_row[mi] for mi in group])
        return got[1]

    horizon = problem.horizon_min
    per_km = w.transport_fen_per_km
    t_fixed, t_speed = w.transport_fixed_min, w.transport_speed_kmh
    two_r = 2 * EARTH_RADIUS_KM
    sin, asin, sqrt, radians, ceil = math.sin, math.asin, math.sqrt, math.radians, math.ceil
    heappush, heappushpop = heapq.heappush, heapq.heappushpop
    bisect_left = bisect.bisect_left
    jobs: list[Job] = []
    orders: list[Order] = []
    dropped = 0

    def run_of(std: int, mi: int) -> int:
        # matching.domain.run_minutes(op, machines[mi])
        run = ceil(std / speed[mi] - 1e-9)
        return run if run > min_book[mi] else min_book[mi]

    for oi, order in enumerate(problem.orders):
        nops = len(order.operations)
        dlat, dlon = order.delivery_lat, order.delivery_lon
        p_del = radians(dlat)
        c_del = math.cos(p_del)
        kms: dict[int, float] = {}

        def km_to(
            mi: int,
            kms: dict[int, float] = kms,
            p_del: float = p_del,
            c_del: float = c_del,
            dlon: float = dlon,
        ) -> float:
            # matching.rules.haversine_km(m.lat, m.lon, dlat, dlon), the same arithmetic
            got = kms.get(mi)
            if got is None:
                dp, dl = p_del - rad[mi], radians(dlon - lon_of[mi])
                a = sin(dp / 2) ** 2 + cos[mi] * c_del * sin(dl / 2) ** 2
                got = two_r * asin(min(1.0, sqrt(a)))
                kms[mi] = got
            return got

        max_km = order.max_distance_km
        # haversine >= the latitude difference alone: machines beyond it need no haversine
        max_dp = math.inf if max_km is None else max_km / EARTH_RADIUS_KM + 1e-9
        capables = [idx.capable(op) for op in order.operations]
        # minimum duration and price of each op over its usable machines (capable, not
        # excluded), for release propagation and the budget left for the other ops
        min_dur: list[int] = []
        min_price: list[int] = []
        for op, cap in zip(order.operations, capables, strict=True):
            if nops == 1:
                min_dur.append(0)
                min_price.append(0)
                continue
            std = op.std_duration_min
            excl = op.excluded_machines
            best_d: int | None = None
            for mi in cap.fastest:
                if best_d is not None and max(1, ceil(std / speed[mi] - 1e-9)) >= best_d:
                    break
                if machine_ids[mi] not in excl:
                    run = run_of(std, mi)
                    if best_d is None or run < best_d:
                        best_d = run
            min_dur.append(best_d or 0)
            best_p: int | None = None
            for mi in cap.cheapest:
                if best_p is not None and _price_floor(std, key[mi]) > best_p:
                    break
                if machine_ids[mi] not in excl:
                    p = -(-run_of(std, mi) * rate[mi] // 60)
                    if best_p is None or p < best_p:
                        best_p = p
            min_price.append(best_p or 0)
        per_op: list[list[Option]] = []
        reasons: list[tuple[Reason, str] | None] = []
        release = order.release_min
        hard = order.hard_due
        for k, op in enumerate(order.operations):
            last = k == nops - 1
            tail = sum(min_dur[k + 1 :])
            others = sum(min_price) - min_price[k]
            std = op.std_duration_min
            budget = order.budget_fen
            excl = op.excluded_machines
            need_km = hard or last  # the lag to the delivery point matters
            bill_km = cost_mode and last  # the transport to it is part of the cost
            hard_end = order.due_min - tail
            soft_due = order.due_min if last and not hard else None

            # one scan, cheapest first: capability, distance, budget, free time, exclusion
            n_cap = n_near = n_cheap = n_fit = 0
            # (-cost, -machine, (machine, duration, cost, latest end, due, price, transport)):
            # the K best; an Option is built only for those kept
            heap: list[tuple[int, int, tuple[int, int, int, int, int, int, int]]] = []
            budget_out = False  # every machine left is over budget: only count the rest
            per_min = 60 / std if std > 0 else math.inf  # rate / speed per fen of price
            budget_key = math.inf if budget is None else (budget - others + 1) * per_min
            budget_left = math.inf if budget is None else budget - others
            # buckets (clusters) nearest first, with what at least a hop to them costs
            buckets = []
            for b, ms in capables[k].buckets:
                km = b.km_floor(dlat, dlon)
                extra = 0
                if bill_km:
                    extra = transport_fen(km, w)
                    if order.cluster is not None and b.cluster != order.cluster:
                        extra += w.cross_cluster_fen
                buckets.append((extra, b.cluster != order.cluster, km, b, ms))
            buckets.sort(key=lambda t: (t[0], t[1], t[3].cluster))
            worst = math.inf  # cost of the K-th best kept, once there are K
            local: list[tuple[int, int, int, int, int, int, int]] = []
            far: list[list[int]] = []
            k_cap = math.inf if k_max is None else k_max
            full = False
            for extra, elsewhere, km_min, _b, group in buckets:
                if max_km is not None and km_min > max_km:
                    far.append(group)  # counted for the reason below, only if needed
                    continue
                cross = 0
                if bill_km and order.cluster is not None and elsewhere:
                    cross = w.cross_cluster_fen
                # stop at this rate / speed: every later machine of the bucket costs more
                # than the K kept
                stop_key = (worst + 1 - floor_unrel - extra) * per_min
                own = not elsewhere and k_max is not None
                for pos, (kk, mi, sp, mb, rt, rd, cs, ln, ur, starts, ends, plain) in enumerate(
                    rows_of(group)
                ):
                    if kk > stop_key:
                        dropped += len(group) - pos
                        break
                    budget_out = kk > budget_key
                    if budget_out and n_near:
                        break  # every one left is over budget: nothing left to count
                    n_cap += 1
                    km = -1.0
                    if max_km is not None:
                        if abs(p_del - rd) > max_dp:
                            continue
                        km = km_to(mi)
                        if km > max_km:
                            continue
                    n_near += 1
                    if budget_out:
                        continue
                    dur = ceil(std / sp - 1e-9)
                    if dur < mb:
                        dur = mb
                    price = -(-dur * rt // 60)
                    if price > budget_left:
                        continue  # over budget
                    n_cheap += 1
                    mine = own and len(local) < local_options
                    if full and not mine and price + ur + extra > worst:
                        dropped += 1  # within budget, dearer than the K kept
                        continue
                    cost = price + ur if cost_mode else 0
                    tr = 0
                    lag_del = 0
                    if need_km:
                        if km < 0:  # matching.rules.haversine_km, the same arithmetic
                            dp = p_del - rd
                            a = sin(dp / 2) ** 2 + cs * c_del * sin(radians(dlon - ln) / 2) ** 2
                            km = two_r * asin(min(1.0, sqrt(a)))
                        if km >= SAME_SITE_KM:
                            lag_del = t_fixed + ceil(km / t_speed * 60 - 1e-9)
                        if bill_km:
                            tr = round(km * per_km)
                            cost += tr + cross
                    if full and not mine:
                        top = heap[0]
                        if cost > -top[0] or (cost == -top[0] and mi > -top[1]):
                            dropped += 1
                            continue  # costs more than the K kept: its free time does not matter
                    latest_end = hard_end - lag_del if hard else horizon
                    # _Free.fits, inline: the first piece that ends late enough, onwards
                    if plain:
                        fit = False
                        i = bisect_left(ends, release + dur)
                        n_pieces = len(starts)
                        while i < n_pieces:
                            s0 = starts[i]
                            e0 = ends[i]
                            if (s0 if s0 > release else release) + dur <= (
                                e0 if e0 < latest_end else latest_end
                            ):
                                fit = True
                                break
                            if s0 + dur > latest_end:
                                break
                            i += 1
                        if not fit:
                            continue
                    elif not free[mi].fits(release, dur, latest_end):
                        continue
                    n_fit += 1
                    if excl and machine_ids[mi] in excl:
                        continue
                    due = NO_DUE if soft_due is None else soft_due - lag_del
                    data = (mi, dur, cost, latest_end, due, price, tr)
                    if mine:
                        local.append(data)  # the cheapest of the order's own cluster
                    if full:
                        top = heap[0]
                        if cost < -top[0] or (cost == -top[0] and mi < -top[1]):
                            heappushpop(heap, (-cost, -mi, data))
                        dropped += 1
                    else:
                        heappush(heap, (-cost, -mi, data))
                        if len(heap) >= k_cap:
                            full = True
                    if full:
                        worst = -heap[0][0]
                        stop_key = (worst + 1 - floor_unrel - extra) * per_min
            if not n_near:
                for group in far:  # every capable machine is counted for TOO_FAR's detail
                    n_cap += len(group)
            chosen = {-item[1]: Option(*item[2]) for item in heap}
            for data in local:
                if data[0] not in chosen:
                    chosen[data[0]] = Option(*data)
            opts = [chosen[mi] for mi in sorted(chosen)]
            reason: tuple[Reason, str] | None = None
            if not n_cap:
                reason = (
                    Reason.NO_ELIGIBLE_MACHINE,
                    f"no machine does {op.process} in {op.material} with this envelope,"
                    " tolerance and certifications",
                )
            elif not n_near:
                reason = (
                    Reason.TOO_FAR,
                    f"{n_cap} capable machine(s), all beyond {order.max_distance_km} km",
                )
            elif not n_cheap:
                reason = (
                    Reason.OVER_BUDGET,
                    f"cheapest capable machine exceeds the budget of {order.budget_fen} fen",
                )
            elif not n_fit:
                reason = (
                    Reason.NO_FREE_INTERVAL,
                    "no free interval of a capable machine fits between release and due",
                )
            elif not opts:
                reason = (
                    Reason.DECLINED,
                    f"{n_fit} otherwise eligible machine(s); every one's owner"
                    " declined or let the proposal lapse",
                )
            per_op.append(opts)
            reasons.append(reason)
            release += min_dur[k]
        failing = next((r for r in reasons if r is not None), None)
        ids = []
        rel = order.release_min
        for k, op in enumerate(order.operations):
            last = k == nops - 1
            tard = order.tardiness_fen_per_min if last and not order.hard_due else 0
            if mode is ObjectiveMode.MAKESPAN:
                tard = 0
            if failing is not None:
                r, d = reasons[k] or (failing[0], "another operation of the order: " + failing[1])
                job = Job(op.id, oi, rel, tard, order.unassigned_penalty_fen, (), r, d)
            else:
                job = Job(op.id, oi, rel, tard, order.unassigned_penalty_fen, tuple(per_op[k]))
            ids.append(len(jobs))
            jobs.append(job)
            rel += min_dur[k]
        budget = order.budget_fen if nops > 1 else None
        orders.append(Order(order.id, tuple(ids), budget))
    return CompiledProblem(
        name="match",
        machine_keys=tuple(m.id for m in machines),
        free=tuple(tuple(sorted(m.free)) for m in machines),
        jobs=tuple(jobs),
        orders=tuple(orders),
        mode=mode,
        owners=tuple(m.owner_id for m in machines),
        owner_spread_fen=w.owner_spread_fen if mode is ObjectiveMode.COST else 0,
        sites=sites,
        weights=w,
        options_dropped=dropped,
    )


def limit_options(
    cp: CompiledProblem, keep: int | None
) -> tuple[CompiledProblem, dict[int, list[int]]]:
    """``cp`` with at most ``keep`` options per job, its cheapest (by cost, then machine;
    in their original order), for problems built without :func:`compile_problem`
    (benchmark readers), and per pruned job the original index of each option kept.
    The same problem when no job has more."""
    if keep is None or all(len(j.options) <= keep for j in cp.jobs):
        return cp, {}
    jobs = []
    kept: dict[int, list[int]] = {}
    dropped = 0
    for j, job in enumerate(cp.jobs):
        if len(job.options) > keep:
            dropped += len(job.options) - keep
            best = heapq.nsmallest(
                keep,
                range(len(job.options)),
                key=lambda k: (job.options[k].cost, job.options[k].machine),
            )
            kept[j] = sorted(best)
            job = replace(job, options=tuple(job.options[k] for k in kept[j]))
        jobs.append(job)
    small = replace(
        cp,
        jobs=tuple(jobs),
        options_dropped=cp.options_dropped + dropped,
        _hop_cache={},
        _by_cost={},
    )
    return small, kept
