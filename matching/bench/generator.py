"""Seeded generator of realistic capshare markets in the capshare-market-v1 format.

Machines of several process families stand in the cities of one region (Zhejiang),
publish idle windows of 6 to 96 hours over a 14-day horizon with some bookings already
inside, and differ in speed, hourly rate, size class and materials.  Jobs ask for a
family, a material and a size class, with a release, a due date (some hard deadlines),
a budget and a per-minute tardiness price; total demand is about ``load`` times the
eligible free hours.  Options are built exactly as the matcher would: duration from the
speed factor, price from the rate, transport cost and time by distance to the customer.
"""

from __future__ import annotations

import gzip
import json
import math
import random
from pathlib import Path
from typing import Any

from matching.domain import MachineSpec, MatchProblem, OperationSpec, OrderSpec, Weights
from matching.rules import haversine_km, price_fen, transport_fen, transport_minutes

# the generated market's transport: the matcher's default tariff (150 fen/km, 30 min plus
# the driving time at 60 km/h)
TARIFF = Weights()

HORIZON = 14 * 24 * 60
CITIES = [  # name, lat, lon
    ("Ningbo", 29.87, 121.55),
    ("Hangzhou", 30.27, 120.16),
    ("Wenzhou", 28.0, 120.67),
    ("Shaoxing", 30.0, 120.58),
    ("Taizhou", 28.66, 121.42),
    ("Jinhua", 29.08, 119.65),
    ("Jiaxing", 30.75, 120.76),
    ("Huzhou", 30.89, 120.09),
]
FAMILIES = [  # name, materials, rate range (fen/h), std duration range (min)
    ("cnc_mill", ["al6061", "steel45", "ss304", "ti6al4v"], (9000, 30000), (60, 900)),
    ("cnc_lathe", ["al6061", "steel45", "ss304", "brass"], (6000, 20000), (45, 720)),
    ("sheet_metal", ["cold_rolled", "ss304", "al5052"], (5000, 15000), (30, 480)),
    ("injection", ["abs", "pp", "pa66", "pc"], (12000, 40000), (120, 1440)),
    ("sewing_line", ["cotton", "denim", "silk", "polyester"], (8000, 25000), (240, 1440)),
    ("fdm", ["pla", "abs", "petg", "tpu"], (1500, 6000), (60, 1200)),
    ("sla_sls", ["resin", "pa12", "tpu"], (4000, 15000), (120, 1440)),
    ("die_casting", ["zinc", "al_a380", "magnesium"], (15000, 45000), (180, 1440)),
]


def _free_windows(rng: random.Random) -> list[list[int]]:
    windows = []
    t = rng.randrange(0, 36 * 60)
    while t < HORIZON:
        length = rng.randrange(6 * 60, 96 * 60 + 1, 15)
        end = min(HORIZON, t + length)
        # bookings already made inside the window split it
        pieces = [(t, end)]
        for _ in range(rng.choice([0, 0, 1, 1, 2])):
            s, e = pieces.pop(rng.randrange(len(pieces)))
            if e - s < 8 * 60:
                pieces.append((s, e))
                continue
            bs = rng.randrange(s + 60, e - 120, 15)
            be = min(e - 60, bs + rng.randrange(60, 12 * 60, 15))
            pieces += [(s, bs), (be, e)]
        windows += [[s, e] for s, e in pieces if e - s >= 60]
        t = end + rng.randrange(2 * 60, 72 * 60, 15)
    windows.sort()
    merged: list[list[int]] = []
    for s, e in windows:
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return merged


def generate_market(
    *,
    n_jobs: int,
    n_machines: int,
    seed: int = 1,
    load: float = 0.85,
    n_families: int | None = None,
    _options: bool = True,
) -> dict[str, Any]:
    """A capshare-market-v1 instance; ``_options=False`` (for :func:`generate_problem`)
    draws the same market without building options and keeps the raw draws."""
    rng = random.Random(seed)
    nf = n_families or (2 if n_jobs <= 500 else 8)
    fams = FAMILIES[:nf]
    machines: list[dict[str, Any]] = []
    for mid in range(n_machines):
        fam = fams[mid % nf]
        city = rng.choice(CITIES)
        machines.append(
            {
                "id": mid,
                "cluster": city[0],
                "family": fam[0],
                "free": _free_windows(rng),
                "_lat": city[1] + rng.uniform(-0.15, 0.15),
                "_lon": city[2] + rng.uniform(-0.15, 0.15),
                "_materials": set(rng.sample(fam[1], rng.randint(2, len(fam[1])))),
                "_size": rng.choice([1, 2, 2, 3]),
                "_speed": rng.uniform(0.7, 1.4),
                "_rate": rng.randrange(*fam[2], 100),
            }
        )
    cap = {
        f[0]: sum(e - s for m in machines if m["family"] == f[0] for s, e in m["free"])
        for f in fams
    }
    jobs_per_family = {f[0]: 0 for f in fams}
    raw_jobs = []
    for jid in range(n_jobs):
        fam = fams[rng.randrange(nf)] if jid >= nf else fams[jid]
        jobs_per_family[fam[0]] += 1
        raw_jobs.append((jid, fam))
    jobs = []
    raw: list[dict[str, Any]] = []
    for jid, fam in raw_jobs:
        # size the standard duration so that demand ~ load x family free time
        mean = load * cap[fam[0]] / max(1, jobs_per_family[fam[0]])
        std = max(fam[3][0], min(fam[3][1] * 2, int(rng.lognormvariate(math.log(mean), 0.45))))
        city = rng.choice(CITIES)
        lat, lon = city[1] + rng.uniform(-0.2, 0.2), city[2] + rng.uniform(-0.2, 0.2)
        material = rng.choice(fam[1])
        size = rng.choice([1, 1, 2, 2, 3])
        release = rng.randrange(0, HORIZON - 3 * 24 * 60, 5)
        slack = rng.uniform(1.5, 6.0)
        due = min(
            HORIZON + 2 * 24 * 60, release + int(std * slack) + rng.randrange(6 * 60, 72 * 60)
        )
        hard = rng.random() < 0.25
        tard = rng.randrange(1, 60)
        value = int(std / 60 * (fam[2][0] + fam[2][1]) / 2 * rng.uniform(1.2, 2.5))
        budget = int(value * rng.uniform(0.8, 1.6))
        options = []
        if not _options:
            raw.append(
                {
                    "id": jid, "family": fam[0], "material": material, "size": size,
                    "std": std, "release_min": release, "due": due, "hard": hard,
                    "tardiness_fen_per_min": tard, "budget": budget,
                    "unassigned_penalty_fen": int(value * rng.uniform(1.5, 3.0)),
                    "lat": lat, "lon": lon, "city": city[0],
                }
            )  # fmt: skip
            continue
        for m in machines:
            if m["family"] != fam[0] or material not in m["_materials"] or m["_size"] < size:
                continue
            km = haversine_km(m["_lat"], m["_lon"], lat, lon)
            dur = max(30, math.ceil(std / m["_speed"]))
            price = price_fen(minutes=dur, hourly_rate_fen=m["_rate"])
            transport = transport_fen(km, TARIFF)
            if price > budget:
                continue
            lag = transport_minutes(km, TARIFF)
            latest_end = due - lag if hard else due + 5 * 24 * 60 - lag
            option_due = due - lag
            if not any(max(s, release) + dur <= min(e, latest_end) for s, e in m["free"]):
                continue
            options.append(
                {
                    "machine": m["id"],
                    "duration_min": dur,
                    "cost_fen": price + transport,
                    "latest_end_min": latest_end,
                    "due_min": option_due,
                }
            )
        jobs.append(
            {
                "id": jid,
                "family": fam[0],
                "release_min": release,
                "tardiness_fen_per_min": tard,
                "unassigned_penalty_fen": int(value * rng.uniform(1.5, 3.0)),
                "options": options,
            }
        )
    if not _options:
        return {"_machines": machines, "_jobs": raw}
    return {
        "format": "capshare-market-v1",
        "name": f"gen-{n_jobs}x{n_machines}-seed{seed}",
        "generator": {"n": n_jobs, "m": n_machines, "seed": seed, "load": load},
        "horizon_min": HORIZON,
        "money_unit": "fen",
        "machines": [{k: v for k, v in m.items() if not k.startswith("_")} for m in machines],
        "jobs": jobs,
    }


def write_market(inst: dict[str, Any], path: str | Path) -> None:
    data = json.dumps(inst, separators=(",", ":")).encode()
    p = Path(path)
    if p.suffix == ".gz":
        p.write_bytes(gzip.compress(data, mtime=0))
    else:
        p.write_bytes(data)


def generate_problem(
    *, n_jobs: int, n_machines: int, seed: int = 1, load: float = 0.85
) -> MatchProblem:
    """The market :func:`generate_market` draws (same machines, jobs, windows, prices),
    as a :class:`matching.domain.MatchProblem`, so that a run goes through the matcher's
    own compile step: size classes become envelopes, the budget a budget, hard due dates
    hard ones, delivery points the buyers' sites.  Fast at any size (no job is checked
    against every machine here; eligibility is the compile step's work)."""
    inst = generate_market(
        n_jobs=n_jobs, n_machines=n_machines, seed=seed, load=load, _options=False
    )
    rng = random.Random(seed)
    machines = tuple(
        MachineSpec(
            id=str(m["id"]),
            owner_id=str(m["id"] // 4),
            cluster=m["cluster"],
            family=m["family"],
            process=m["family"],
            materials=frozenset(m["_materials"]),
            free=tuple((s, e) for s, e in m["free"]),
            rate_fen_per_hour=m["_rate"],
            envelope_mm=(m["_size"] * 400, m["_size"] * 400, m["_size"] * 400),
            speed_factor=m["_speed"],
            min_booking_min=30,
            lat=m["_lat"],
            lon=m["_lon"],
        )
        for m in inst["_machines"]
    )
    orders = []
    for j in inst["_jobs"]:
        size = j["size"] * 400 - 50
        op = OperationSpec(
            id=str(j["id"]),
            process=j["family"],
            material=j["material"],
            std_duration_min=j["std"],
            envelope_mm=(size, size, size),
        )
        orders.append(
            OrderSpec(
                id=str(j["id"]),
                buyer_id=str(j["id"] % 97),
                operations=(op,),
                release_min=j["release_min"],
                due_min=j["due"],
                hard_due=j["hard"],
                tardiness_fen_per_min=j["tardiness_fen_per_min"],
                unassigned_penalty_fen=j["unassigned_penalty_fen"],
                budget_fen=j["budget"],
                delivery_lat=j["lat"],
                delivery_lon=j["lon"],
                cluster=j["city"],
            )
        )
    del rng
    return MatchProblem(
        machines=machines,
        orders=tuple(orders),
        horizon_min=HORIZON + 7 * 24 * 60,
        weights=TARIFF,
    )
