"""A deterministic demo market of Zhejiang's industrial clusters.

Twelve clusters at their real centres, owner factories with CNC, garment, additive
and service machines from a catalogue of real makes, two weeks of offered time
(day windows, weekend blocks and recurring night shifts), buyer enterprises with
single- and multi-step orders, some direct leases, an operator per cluster and a
platform admin. Same input date, same market.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text, update
from sqlmodel import Session, select

from app.bulk import insert_rows
from app.machines.availability import expand_rule
from app.security import hash_password, new_machine_token
from matching.rules import price_fen
from models import (
    AvailabilityRule,
    AvailabilityWindow,
    Booking,
    BookingKind,
    BookingState,
    Cluster,
    Machine,
    MachineStateSpan,
    Operation,
    Order,
    OrderEvent,
    OrderStatus,
    Organization,
    Role,
    User,
    utcnow,
)
from models.base import CURRENCY

DEMO_PASSWORD = "capshare-demo"
DEMO_DOMAIN = "demo.capshare.cn"
DATA = Path(__file__).parent / "data.json"
TZ = ZoneInfo("Asia/Shanghai")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

OWNER_WORDS = [
    ("精密机械", "Precision Machinery"),
    ("模具", "Mould"),
    ("五金制品", "Hardware"),
    ("智能装备", "Smart Equipment"),
    ("服饰", "Apparel"),
    ("针织", "Knitting"),
    ("增材科技", "Additive Tech"),
    ("汽配", "Auto Parts"),
    ("精工", "Fine Works"),
    ("制衣", "Garments"),
    ("表面处理", "Surface Finishing"),
    ("检测技术", "Testing"),
]
BUYER_WORDS = [
    ("电器", "Appliances"),
    ("汽车部件", "Automotive Components"),
    ("医疗器械", "Medical Devices"),
    ("童装", "Kidswear"),
    ("运动用品", "Sporting Goods"),
    ("机器人", "Robotics"),
    ("新能源", "New Energy"),
    ("鞋业", "Footwear"),
    ("家居", "Home Goods"),
    ("电子", "Electronics"),
]
NAME_PREFIX = [
    "恒",
    "华",
    "瑞",
    "锦",
    "宏",
    "鑫",
    "盛",
    "博",
    "远",
    "力",
    "精",
    "诚",
    "达",
    "泰",
    "嘉",
    "德",
]
NAME_SECOND = ["达", "盛", "创", "业", "丰", "信", "源", "通", "邦", "利", "新", "冠", "越", "安"]
PINYIN = {
    "恒": "Heng",
    "华": "Hua",
    "瑞": "Rui",
    "锦": "Jin",
    "宏": "Hong",
    "鑫": "Xin",
    "盛": "Sheng",
    "博": "Bo",
    "远": "Yuan",
    "力": "Li",
    "精": "Jing",
    "诚": "Cheng",
    "达": "Da",
    "泰": "Tai",
    "嘉": "Jia",
    "德": "De",
    "创": "Chuang",
    "业": "Ye",
    "丰": "Feng",
    "信": "Xin",
    "源": "Yuan",
    "通": "Tong",
    "邦": "Bang",
    "利": "Li",
    "新": "Xin",
    "冠": "Guan",
    "越": "Yue",
    "安": "An",
}
# Multi-step routes buyers order, by the family of their first step.
ROUTES: dict[str, list[list[str]]] = {
    "cnc": [
        ["milling_3axis"],
        ["turning"],
        ["milling_5axis"],
        ["laser_cutting", "sheet_bending"],
        ["milling_3axis", "anodizing"],
        ["milling_3axis", "anodizing", "inspection_cmm"],
        ["turning", "heat_treatment"],
        ["wire_edm"],
        ["milling_5axis", "inspection_cmm"],
        ["laser_cutting", "sheet_bending", "powder_coating"],
        ["turn_mill"],
        ["sinker_edm"],
    ],
    "garment": [
        ["fabric_cutting", "lockstitch_line"],
        ["fabric_cutting", "lockstitch_line", "garment_finishing"],
        ["flat_knitting"],
        ["sock_knitting"],
        ["embroidery"],
        ["fabric_cutting", "overlock_line"],
        ["fabric_dyeing", "fabric_cutting", "lockstitch_line"],
        ["overlock_line", "garment_finishing"],
    ],
    "additive": [
        ["fdm"],
        ["sla"],
        ["sls"],
        ["mjf"],
        ["slm", "heat_treatment"],
        ["slm", "heat_treatment", "inspection_cmm"],
        ["sla", "inspection_cmm"],
    ],
}


@dataclass
class DemoCounts:
    clusters: int = 0
    owner_orgs: int = 0
    buyer_orgs: int = 0
    operator_orgs: int = 0
    users: int = 0
    machines: int = 0
    rules: int = 0
    windows: int = 0
    past_windows: int = 0
    networked: int = 0  # machines that reported in the last 24 h
    state_spans: int = 0
    orders: int = 0
    operations: int = 0
    multi_step_orders: int = 0
    leases: int = 0
    logins: list[tuple[str, str]] = field(default_factory=list)


def demo_present(session: Session) -> bool:
    return (
        session.exec(select(User.id).where(User.email == f"admin@{DEMO_DOMAIN}")).first()
        is not None
    )


def seed_demo(
    session: Session,
    *,
    owners: int = 72,
    buyers: int = 48,
    orders: int = 640,
    seed: int = 2018,
    today: dt.date | None = None,
    progress: Callable[[str], None] = lambda _msg: None,
) -> DemoCounts:
    """Write the demo market in one transaction. Refuses if it is already there.

    Rows are generated as plain dicts and written in bulk, a few statements per table,
    so the cost grows linearly with the market (a province's 20,000 machines in under a
    minute); the random stream is the same whatever the size, so a size is one market."""
    if demo_present(session):
        raise RuntimeError("the demo market is already seeded")
    rng = random.Random(seed)
    data = json.loads(DATA.read_text(encoding="utf-8"))
    today = today or utcnow().astimezone(TZ).date()
    counts = DemoCounts()
    password_hash = hash_password(DEMO_PASSWORD)  # one hash: seeding stays fast
    users: list[dict[str, Any]] = []

    def user(org_id: int | None, email: str, name: str, roles: list[str]) -> dict[str, Any]:
        row = {
            "org_id": org_id, "email": email, "full_name": name,
            "password_hash": password_hash, "roles": roles,
        }  # fmt: skip
        users.append(row)
        counts.users += 1
        return row

    # Platform admin.
    platform = Organization(name="capshare 平台 (platform)", lat=30.27, lon=120.15, city="Hangzhou")
    session.add(platform)
    session.flush()
    user(platform.id, f"admin@{DEMO_DOMAIN}", "平台管理员 Admin", [Role.admin.value])
    counts.logins.append(("admin", f"admin@{DEMO_DOMAIN}"))

    # Clusters with their operators.
    clusters: list[Cluster] = []
    for c in data["clusters"]:
        op_org = Organization(
            name=f"{c['name_zh']}产业集群运营中心 ({c['name_en']} operator)",
            is_operator=True, city=c["city"], lat=c["lat"], lon=c["lon"],
        )  # fmt: skip
        session.add(op_org)
        session.flush()
        cluster = Cluster(operator_org_id=op_org.id, **c)
        session.add(cluster)
        email = f"operator.{c['key']}@{DEMO_DOMAIN}"
        user(op_org.id, email, f"{c['name_zh']}运营", [Role.operator.value])
        if not any(role == "operator" for role, _ in counts.logins):
            counts.logins.append(("operator", email))
        clusters.append(cluster)
        counts.operator_orgs += 1
    session.flush()
    counts.clusters = len(clusters)
    progress(f"clusters: {counts.clusters} with operators")

    catalogue_by_family: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in data["catalogue"]:
        catalogue_by_family[entry["family"]].append(entry)

    names: set[str] = set()

    def company(city: str, words: list[tuple[str, str]]) -> str:
        for _ in range(len(NAME_PREFIX) * len(NAME_SECOND) * len(words)):
            a, b = rng.choice(NAME_PREFIX), rng.choice(NAME_SECOND)
            zh_word, en_word = rng.choice(words)
            name = f"{city}{a}{b}{zh_word}有限公司 ({PINYIN[a]}{PINYIN[b].lower()} {en_word})"
            if name not in names:
                names.add(name)
                return name
        # the city's names are nearly all taken (a province-sized market): number them
        name = f"{city}{a}{b}{zh_word}{len(names) + 1}号有限公司 ({PINYIN[a]}{PINYIN[b].lower()} {en_word} No. {len(names) + 1})"
        names.add(name)
        return name

    # Owner factories and their machines.
    owner_orgs: list[dict[str, Any]] = []
    owner_users: list[dict[str, Any]] = []
    machines: list[dict[str, Any]] = []
    machine_owner: list[int] = []  # per machine, its index in owner_orgs
    serials: dict[str, int] = defaultdict(int)
    for i in range(owners):
        cluster = clusters[i % len(clusters)]
        lat = round(cluster.lat + rng.uniform(-0.08, 0.08), 5)
        lon = round(cluster.lon + rng.uniform(-0.08, 0.08), 5)
        name = company(cluster.city, OWNER_WORDS)
        # About one factory in eight also buys capacity.
        also_buyer = i % 8 == 3
        owner_orgs.append({
            "name": name, "is_owner": True, "is_buyer": also_buyer, "is_operator": False,
            "city": cluster.city, "lat": lat, "lon": lon,
        })  # fmt: skip
        email = f"owner{i + 1}@{DEMO_DOMAIN}"
        roles = [Role.owner.value] + ([Role.buyer.value] if also_buyer else [])
        owner_users.append(user(None, email, f"厂长 {i + 1}", roles))
        if i < 2:
            counts.logins.append(("owner", email))
        counts.owner_orgs += 1
        families = cluster.families
        for _ in range(rng.randint(4, 10)):
            family = families[0] if rng.random() < 0.7 else rng.choice(families)
            spec = rng.choice(catalogue_by_family[family])
            low, high = spec["rate_cny"]
            rate_yuan = rng.randint(low // 5, high // 5) * 5 or low
            x, y, z = spec["envelope_mm"]
            _, token_hash = new_machine_token()
            serials[spec["make_model"]] += 1
            machines.append({
                "name": f"{spec['make_model']} #{serials[spec['make_model']]}",
                "make_model": spec["make_model"],
                "process_key": spec["process"],
                "materials": sorted(rng.sample(spec["materials"], k=max(1, len(spec["materials"]) - rng.randint(0, 1)))),
                "envelope_x_mm": x, "envelope_y_mm": y, "envelope_z_mm": z,
                "tolerance_mm": spec["tolerance_mm"] or 1.0,
                "speed_factor": round(rng.uniform(0.8, 1.3), 2),
                "hourly_rate_fen": rate_yuan * 100,
                "min_booking_minutes": rng.choice([60, 60, 120, 240]),
                "leasable": family != "service" and rng.random() < 0.45,
                "certifications": sorted(rng.sample(["ISO9001", "IATF16949", "ISO13485", "AS9100", "OEKO-TEX"], k=rng.randint(0, 2))),
                "lat": round(lat + rng.uniform(-0.005, 0.005), 5),
                "lon": round(lon + rng.uniform(-0.005, 0.005), 5),
                "cluster_id": cluster.id,
                "telemetry_token_hash": token_hash,
            })  # fmt: skip
            machine_owner.append(i)
    for org, org_id in zip(
        owner_orgs, insert_rows(session, Organization, owner_orgs, ids=True), strict=True
    ):
        org["id"] = org_id
    for row, org in zip(owner_users, owner_orgs, strict=True):
        row["org_id"] = org["id"]
    for m, i in zip(machines, machine_owner, strict=True):
        m["owner_org_id"] = owner_orgs[i]["id"]
    for m, machine_id in zip(
        machines, insert_rows(session, Machine, machines, ids=True), strict=True
    ):
        m["id"] = machine_id
    counts.machines = len(machines)
    progress(f"owners: {counts.owner_orgs} factories, {counts.machines} machines")

    # Offered time over the next two weeks.
    start_day = today + dt.timedelta(days=1)
    end_day = today + dt.timedelta(days=14)
    now = utcnow()
    windows: list[dict[str, Any]] = []
    offered: dict[int, list[tuple[dt.datetime, dt.datetime]]] = {}
    night: dict[str, Any] = {
        "weekdays": [0, 1, 2, 3, 4],
        "start_time": "20:00",
        "end_time": "08:00",
    }
    night_shift = expand_rule(
        **night, valid_from=start_day, valid_until=end_day, tz=TZ, not_before=now
    )
    rules: list[dict[str, Any]] = []
    ruled: list[int] = []  # machines with the night-shift rule, in rule order
    for m in machines:
        pattern = rng.random()
        spans: list[tuple[dt.datetime, dt.datetime]] = []
        if pattern < 0.4:  # the night shift it idles
            rules.append(
                {"machine_id": m["id"], **night, "valid_from": start_day, "valid_until": end_day}
            )
            ruled.append(len(windows))
            spans = list(night_shift)
            # (their windows get the rule's id once the rules are written)
            for s, e in spans:
                windows.append({"machine_id": m["id"], "rule_id": None, "start_at": s, "end_at": e})
            # and the weekend, Saturday 08:00 to Monday 08:00, as single windows
            extra = _weekends(start_day, end_day)
        elif pattern < 0.7:  # idle blocks of 6–96 hours
            extra = _idle_blocks(rng, start_day, end_day)
        else:  # day shifts on some days
            extra = _day_shifts(rng, start_day, end_day)
        for s, e in extra:
            if all(e <= a or b <= s for a, b in spans):
                spans.append((s, e))
                windows.append({"machine_id": m["id"], "rule_id": None, "start_at": s, "end_at": e})
        offered[m["id"]] = sorted(spans)
    for first, rule_id in zip(
        ruled, insert_rows(session, AvailabilityRule, rules, ids=True), strict=True
    ):
        for w in windows[first : first + len(night_shift)]:
            w["rule_id"] = rule_id
    counts.rules = len(rules)
    insert_rows(session, AvailabilityWindow, windows, ids=False)
    counts.windows = len(windows)
    progress(f"offered time: {counts.windows} windows, {counts.rules} recurring night-shift rules")
    _telemetry_history(session, random.Random(seed + 1), machines, today, now, counts)
    progress(f"last week: {counts.past_windows} offered windows; telemetry: {counts.state_spans} state spans, "
             f"{counts.networked} machines reported in the last 24 h")  # fmt: skip

    # Buyer enterprises and their orders.
    buyer_orgs: list[dict[str, Any]] = []
    buyer_users: list[dict[str, Any]] = []
    buyer_clusters: list[Cluster] = []
    for i in range(buyers):
        cluster = clusters[(i * 5) % len(clusters)]
        name = company(cluster.city, BUYER_WORDS)
        buyer_orgs.append({
            "name": name, "is_owner": False, "is_buyer": True, "is_operator": False,
            "city": cluster.city,
            "lat": round(cluster.lat + rng.uniform(-0.1, 0.1), 5),
            "lon": round(cluster.lon + rng.uniform(-0.1, 0.1), 5),
        })  # fmt: skip
        email = f"buyer{i + 1}@{DEMO_DOMAIN}"
        buyer_users.append(user(None, email, f"采购经理 {i + 1}", [Role.buyer.value]))
        if i < 2:
            counts.logins.append(("buyer", email))
        buyer_clusters.append(cluster)
        counts.buyer_orgs += 1
    for org, org_id in zip(
        buyer_orgs, insert_rows(session, Organization, buyer_orgs, ids=True), strict=True
    ):
        org["id"] = org_id
    for row, org in zip(buyer_users, buyer_orgs, strict=True):
        row["org_id"] = org["id"]
    for row, user_id in zip(users, insert_rows(session, User, users, ids=True), strict=True):
        row["id"] = user_id

    processes = {e["process"]: e for e in data["catalogue"]}
    order_rows: list[dict[str, Any]] = []
    order_ops: list[list[dict[str, Any]]] = []
    day0 = dt.datetime.combine(start_day, dt.time(8, 0), TZ)
    for k in range(orders):
        org, buyer, cluster = (
            buyer_orgs[k % len(buyer_orgs)], buyer_users[k % len(buyer_orgs)],
            buyer_clusters[k % len(buyer_orgs)],
        )  # fmt: skip
        family = rng.choice([f for f in cluster.families if f in ROUTES] or ["cnc"])
        route = rng.choice(ROUTES[family])
        release = day0 + dt.timedelta(hours=rng.randint(0, 7 * 24))
        total_min = 0
        ops: list[dict[str, Any]] = []
        material = None
        for seq, process in enumerate(route, start=1):
            spec = processes[process]
            mats = spec["materials"]
            if material not in mats:
                material = rng.choice(mats)
            assert material is not None
            x, y, z = spec["envelope_mm"]
            duration = rng.choice([60, 90, 120, 180, 240, 300, 360, 480, 600, 720])
            total_min += duration
            ops.append({
                "seq": seq, "process_key": process, "material_key": material,
                "quantity": rng.choice([1, 5, 10, 20, 50, 100, 200, 500, 1000]),
                "part_x_mm": int(x * rng.uniform(0.1, 0.6)) if x else 0,
                "part_y_mm": int(y * rng.uniform(0.1, 0.6)) if y else 0,
                "part_z_mm": int(z * rng.uniform(0.1, 0.6)) if z else 0,
                "tolerance_mm": (round(spec["tolerance_mm"] * rng.choice([1, 2, 5]), 3) if spec["tolerance_mm"] else None),
                "std_duration_min": duration,
            })  # fmt: skip
        slack = dt.timedelta(
            minutes=total_min * rng.uniform(2.0, 6.0) + 24 * 60 * rng.randint(1, 4)
        )
        soft = rng.random() < 0.3
        rate = max(processes[p]["rate_cny"][1] for p in route)
        status = (
            OrderStatus.draft
            if k % 10 == 0
            else OrderStatus.cancelled
            if k % 37 == 0
            else OrderStatus.open
        )
        order_rows.append({
            "buyer_org_id": org["id"],
            "created_by_user_id": buyer["id"],
            "title": f"{'+'.join(route)} · {material} ×{ops[0]['quantity']}",
            "release_at": release.astimezone(dt.UTC),
            "due_at": (release + slack).astimezone(dt.UTC),
            "due_kind": "soft" if soft else "hard",
            "tardiness_fen_per_hour": rng.choice([2000, 5000, 10000]) if soft else 0,
            "budget_fen": math.ceil(total_min / 60 * rate * rng.uniform(1.0, 2.5)) * 100,
            "delivery_lat": org["lat"],
            "delivery_lon": org["lon"],
            "delivery_address": f"{org['city']}",
            "max_distance_km": rng.choice([None, 100, 200, 400]),
            "status": status.value,
        })  # fmt: skip
        order_ops.append(ops)
        counts.operations += len(ops)
        counts.multi_step_orders += len(ops) > 1
        counts.orders += 1
    events: list[dict[str, Any]] = []
    operations: list[dict[str, Any]] = []
    for row, ops, order_id in zip(
        order_rows, order_ops, insert_rows(session, Order, order_rows, ids=True), strict=True
    ):
        operations += [{**op, "order_id": order_id} for op in ops]
        made = {"order_id": order_id, "user_id": row["created_by_user_id"], "at": now}
        events.append({**made, "state": "draft"})
        if row["status"] != OrderStatus.draft.value:
            events.append({**made, "state": "open"})
        if row["status"] == OrderStatus.cancelled.value:
            events.append({**made, "state": "cancelled"})
    insert_rows(session, Operation, operations, ids=False)
    insert_rows(session, OrderEvent, events, ids=False)
    progress(f"buyers: {counts.buyer_orgs} enterprises, {counts.orders} orders "
             f"({counts.multi_step_orders} multi-step, {counts.operations} operations)")  # fmt: skip

    # Direct leases of leasable machines, inside their offered time.
    leasable = [m for m in machines if m["leasable"]]
    rng.shuffle(leasable)
    buyer_pairs = list(zip(buyer_orgs, buyer_users, strict=True))
    bookings: list[dict[str, Any]] = []
    for m in leasable[: max(70, len(machines) // 8)]:
        least = dt.timedelta(minutes=m["min_booking_minutes"])
        spans = [s for s in offered[m["id"]] if (s[1] - s[0]) >= least]
        if not spans:
            continue
        s, e = rng.choice(spans)
        length = min(e - s, dt.timedelta(hours=rng.choice([4, 8, 12, 24])))
        length = max(length, least)
        org, buyer = rng.choice(buyer_pairs)
        minutes = int(length.total_seconds() // 60)
        bookings.append({
            "machine_id": m["id"], "kind": BookingKind.lease.value, "state": BookingState.confirmed.value,
            "start_at": s, "end_at": s + length, "org_id": org["id"],
            "price_fen": price_fen(minutes=minutes, hourly_rate_fen=m["hourly_rate_fen"]),
            "currency": CURRENCY, "reason": "", "created_by_user_id": buyer["id"],
            "created_at": now, "updated_at": now,
        })  # fmt: skip
    insert_rows(session, Booking, bookings, ids=False)
    counts.leases = len(bookings)
    progress(f"leases: {counts.leases}")
    session.commit()
    if session.get_bind().dialect.name == "postgresql":
        # a bulk load leaves the planner's statistics empty until autovacuum gets to them
        # (a cluster's machines estimated at 34 rows instead of 1,593: nested loops over
        # the whole market); gather them now, as any bulk loader should
        session.execute(text("ANALYZE"))
        session.commit()
    return counts


def _telemetry_history(
    session: Session, rng: random.Random, machines: list[dict[str, Any]], today: dt.date, now: dt.datetime,
    counts: DemoCounts,
) -> None:  # fmt: skip
    """The past week of the machines: the time each offered, and for four in five the
    states they reported (running more often inside offered time when the market kept
    them busy; a few went silent days ago), so that the operator's networking rate and
    actual utilization have something to show. Its own random stream: the rest of the
    demo does not change with it."""
    first, last = today - dt.timedelta(days=7), today - dt.timedelta(days=1)
    if now.astimezone(TZ).date() != today:  # seeded for another day: that day's midnight is "now"
        now = dt.datetime.combine(today, dt.time(0, 0), TZ).astimezone(dt.UTC)
    windows: list[dict[str, Any]] = []
    spans: list[dict[str, Any]] = []
    reported: list[dict[str, Any]] = []
    for m in machines:
        past = (
            _idle_blocks(rng, first, last) if rng.random() < 0.5 else _day_shifts(rng, first, last)
        )
        windows += [
            {"machine_id": m["id"], "rule_id": None, "start_at": s, "end_at": e} for s, e in past
        ]
        if rng.random() < 0.2:
            continue  # not networked
        busy, own = rng.uniform(0.35, 0.85), rng.uniform(0.4, 0.8)
        stop = now - dt.timedelta(minutes=rng.randint(1, 50))
        if rng.random() < 0.1:
            stop = now - dt.timedelta(hours=rng.randint(30, 120))  # went silent
        t = dt.datetime.combine(first, dt.time(0, 0), TZ).astimezone(dt.UTC)
        # the arithmetic in whole microseconds (a million spans at province size)
        past_us = [(_us(s), _us(e)) for s, e in past]
        t_us, stop_us = _us(t), _us(stop)
        state = ""
        while t < stop:
            minutes = rng.randint(45, 240)
            end = min(t + dt.timedelta(minutes=minutes), stop)
            end_us = min(t_us + minutes * 60_000_000, stop_us)
            offered = any(s <= t_us < e for s, e in past_us)
            r = rng.random()
            running = rng.random() < (busy if offered else own)
            state = (
                "down" if r < 0.02 else "alarm" if r < 0.035 else "running" if running else "idle"
            )
            reports = max(1, (end_us - t_us) // 1_800_000_000)  # a heartbeat every half hour
            inside = sum(max(0, (min(end_us, e) - max(t_us, s)) // 1_000_000) for s, e in past_us)
            spans.append({"machine_id": m["id"], "state": state, "start_at": t, "end_at": end, "reports": reports,
                          "offered_s": inside})  # fmt: skip
            t, t_us = end, end_us
        if state:
            reported.append({"id": m["id"], "last_reported_at": stop, "reported_state": state})
            counts.networked += stop >= now - dt.timedelta(hours=24)
    if reported:  # ORM bulk UPDATE by primary key: one executemany
        session.execute(update(Machine), reported)
    insert_rows(session, AvailabilityWindow, windows, ids=False)
    insert_rows(session, MachineStateSpan, spans, ids=False)
    counts.past_windows, counts.state_spans = len(windows), len(spans)


def _us(at: dt.datetime) -> int:
    return (at - EPOCH) // dt.timedelta(microseconds=1)


def _weekends(first: dt.date, last: dt.date) -> list[tuple[dt.datetime, dt.datetime]]:
    out = []
    day = first
    while day <= last:
        if day.weekday() == 5:
            s = dt.datetime.combine(day, dt.time(8, 0), TZ)
            out.append((s.astimezone(dt.UTC), (s + dt.timedelta(days=2)).astimezone(dt.UTC)))
        day += dt.timedelta(days=1)
    return out


def _idle_blocks(
    rng: random.Random, first: dt.date, last: dt.date
) -> list[tuple[dt.datetime, dt.datetime]]:
    out = []
    t = dt.datetime.combine(first, dt.time(rng.randint(0, 23), 0), TZ)
    end = dt.datetime.combine(last, dt.time(23, 0), TZ)
    while True:
        t += dt.timedelta(hours=rng.randint(4, 48))
        length = dt.timedelta(hours=rng.randint(6, 96))
        if t + length > end:
            break
        out.append((t.astimezone(dt.UTC), (t + length).astimezone(dt.UTC)))
        t += length
    return out


def _day_shifts(
    rng: random.Random, first: dt.date, last: dt.date
) -> list[tuple[dt.datetime, dt.datetime]]:
    out = []
    day = first
    while day <= last:
        if rng.random() < 0.6:
            s = dt.datetime.combine(day, dt.time(rng.choice([8, 9, 13]), 0), TZ)
            out.append(
                (
                    s.astimezone(dt.UTC),
                    (s + dt.timedelta(hours=rng.choice([4, 8, 10]))).astimezone(dt.UTC),
                )
            )
        day += dt.timedelta(days=1)
    return out
