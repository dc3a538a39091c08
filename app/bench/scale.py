"""The province-scale benchmark: capshare on markets of several sizes, side by side.

    capshare bench scale --machines 500 5000 20000 [--repeats 30] [--json] [--keep]

For each size it builds a market with the demo generator (``app.demo.seed.seed_demo``;
owners ≈ machines / 7, orders ≈ machines) in a fresh PostgreSQL database of its own
(``capshare_scale_<n>`` on the server of ``--database-url``), timing the seed, then starts
one real ``capshare serve`` process over it (loopback, one worker process, the task queue's
worker in that process so match runs execute there) and measures, one request after
another: a bare endpoint (``/api/v1/health``, which touches nothing), every read path of
issue #12's table (medians, p95 where the issue gives one, each also as the bare
endpoint's share: bare ÷ path), quotes, a whole-market match run (wall, solve, write-back,
gap, proposals, the peak memory of the process that ran it) with a lease booked while it
runs, and a cluster run. It ends with a table of every figure per size and the growth
from size to size. It is a benchmark: nothing here asserts a speed.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, col, func, select

from app.bench.load import CAPSHARE, free_port, server_process

Echo = Callable[[str], None]

# The table's rows, in order: (key, label). Keys ending in "_ms" are request latencies,
# printed with their share of the bare endpoint.
FIGURES: list[tuple[str, str]] = [
    ("machines", "machines"),
    ("open_orders", "open orders"),
    ("seed_s", "seed the market (s)"),
    ("bare_ms", "bare endpoint /api/v1/health (ms)"),
    ("machines_ms", "GET /machines, no filter, 50 rows (ms)"),
    ("buyer_machines_page_ms", "/buyer/machines page (ms)"),
    ("machines_free_ms", "machines free in a time range (ms)"),
    ("machine_by_id_ms", "one machine by id (ms)"),
    ("machines_filtered_ms", "filtered search (ms)"),
    ("orders_ms", "GET /orders, a buyer's (ms)"),
    ("operator_admin_ms", "/operator, admin: whole market (ms)"),
    ("operator_cluster_ms", "/operator, one cluster's operator (ms)"),
    ("quote_p50_ms", "quote p50 (ms)"),
    ("quote_p95_ms", "quote p95 (ms)"),
    ("run_wall_s", "market run: wall, POST to its end (s)"),
    ("run_solve_s", "market run: solve (s)"),
    ("run_writeback_s", "market run: write-back (s)"),
    ("run_gap_pct", "market run: gap (%)"),
    ("run_proposals", "market run: proposals"),
    ("run_greedy_proposals", "market run: greedy baseline proposals"),
    ("run_peak_mib", "market run: peak memory of its process (MiB)"),
    ("run_status", "market run: outcome"),
    ("lease_status", "lease booked while it ran: HTTP status"),
    ("lease_during_run", "lease booked while it ran: run was running"),
    ("cluster_run_wall_s", "cluster run: wall (s)"),
    ("cluster_run_status", "cluster run: outcome"),
]
# Fields a match run may carry for what this benchmark reports (the first present wins);
# the benchmark falls back to what it can observe, and says so in the notes.
WRITEBACK_FIELDS = ("writeback_seconds", "write_back_seconds", "write_seconds")
GREEDY_FIELDS = ("greedy_proposals", "baseline_proposals", "greedy_placed")
REQUEUE_FIELDS = ("requeued", "requeued_orders", "skipped_orders", "inputs_changed")
TERMINAL = ("succeeded", "failed", "cancelled")


class ScaleError(RuntimeError):
    """The benchmark could not measure something; the message says what and where."""


@dataclass
class ScaleOptions:
    sizes: list[int]
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    repeats: int = 30  # timed requests per read path
    quotes: int = 30
    time_limit_s: float = 30.0  # the match runs' solver limit
    cluster_time_limit_s: float | None = None  # default: time_limit_s
    keep: bool = False  # reuse a seeded database and leave it behind
    log_dir: Path = field(default_factory=lambda: Path("var/bench-scale"))
    request_timeout_s: float = 120.0
    run_timeout_s: float = 1800.0
    ready_timeout_s: float = 120.0
    seed: int = 2018
    database_prefix: str = "capshare_scale"  # a size's database: <prefix>_<n>


def market_shape(machines: int) -> dict[str, int]:
    """The generator's arguments for about ``machines`` machines (4 to 10 per owner)."""
    return {
        "owners": max(2, round(machines / 7)),
        "buyers": max(4, round(machines / 11)),
        "orders": max(10, machines),
    }


def run_scale(options: ScaleOptions, echo: Echo = lambda _m: None) -> dict[str, Any]:
    """Measure every size; returns ``{"sizes": [report, …], "growth": [...]}``."""
    url = make_url(options.database_url)
    if not url.drivername.startswith(("postgresql", "sqlite")):
        raise ScaleError(f"--database-url must be PostgreSQL (or SQLite), not {url.drivername}")
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", options.database_prefix):
        raise ScaleError(f"--database-prefix {options.database_prefix!r}: lower-case letters, "
                         "digits and _ only")  # fmt: skip
    if not options.sizes or min(options.sizes) < 10:
        raise ScaleError("--machines: give sizes of at least 10")
    options.log_dir.mkdir(parents=True, exist_ok=True)
    reports = []
    for n in options.sizes:
        echo(f"== {n:,} machines")
        reports.append(measure_size(options, n, echo))
    return {"sizes": reports, "growth": growth(reports)}


def measure_size(options: ScaleOptions, n: int, echo: Echo) -> dict[str, Any]:
    report: dict[str, Any] = {"size": n, "notes": []}
    with _database(options.database_url, f"{options.database_prefix}_{n}", keep=options.keep) as (
        url,
        new,
    ):
        if new:
            report["seed_s"] = _seed(url, n, options.seed, echo)
        else:
            echo("  reusing the seeded database (--keep)")
            report["seed_s"] = None
            report["notes"].append("seed: reused a seeded database (--keep), not timed")
        market = _market_facts(url)
        report.update(machines=market["machines"], open_orders=market["open_orders"])
        port = free_port()
        log = options.log_dir / f"serve-{n}.log"
        env = {"DATABASE_URL": url, "CAPSHARE_ENVIRONMENT": "development",
               "CAPSHARE_TASK_RUNNER": "threads" if url.startswith("sqlite") else "procrastinate",
               "CAPSHARE_JOBS_IN_PROCESS": "true",
               "CAPSHARE_PAYMENTS_INLINE": "false"}  # fmt: skip
        args = [*CAPSHARE, "serve", "--no-migrate", "--host", "127.0.0.1", "--port", str(port)]
        echo(f"  capshare serve on :{port}, log {log}")
        try:
            with server_process(args, port=port, env=env, log=log,
                                ready_timeout_s=options.ready_timeout_s) as proc:  # fmt: skip
                bench = _Bench(f"http://127.0.0.1:{port}", proc.pid, options, market, echo)
                try:
                    before = os.getloadavg()[0]
                    bench.measure(report)
                    report["notes"].append(
                        f"machine load (1-min average, {os.cpu_count()} cores): "
                        f"{before:.1f} before the requests, {os.getloadavg()[0]:.1f} after the runs"
                    )
                finally:
                    bench.close()
        except (ScaleError, httpx.HTTPError) as exc:
            raise ScaleError(f"{n:,} machines: {exc} (server log: {log})") from exc
    return report


@contextmanager
def _database(base_url: str, name: str, *, keep: bool) -> Iterator[tuple[str, bool]]:
    """A database of its own for one size: (its URL, whether it is new and empty).
    Dropped after unless ``keep``; with ``keep`` a seeded one is reused."""
    base = make_url(base_url)
    if base.drivername.startswith("sqlite"):
        with _sqlite_file(base_url, name, keep=keep) as found:
            yield found
        return
    url = base.set(database=name).render_as_string(hide_password=False)
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
        seeded = False
        if exists and keep:
            seeded = _seeded(url)
        if not seeded:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield url, not seeded
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def _sqlite_file(base_url: str, name: str, *, keep: bool) -> Iterator[tuple[str, bool]]:
    """SQLite (one process, for a quick look and the tests): ``<name>.db`` in the folder
    of the base URL's file."""
    folder = Path(make_url(base_url).database or ".").parent
    path = folder / f"{name}.db"
    seeded = keep and path.exists() and _seeded(f"sqlite:///{path}")
    files = [path, *(path.with_name(f"{path.name}{end}") for end in ("-wal", "-shm"))]
    if not seeded:
        for f in files:
            f.unlink(missing_ok=True)
    try:
        yield f"sqlite:///{path}", not seeded
    finally:
        if not keep:
            for f in files:
                f.unlink(missing_ok=True)


def _seeded(url: str) -> bool:
    from sqlalchemy import inspect

    from app.demo.seed import demo_present

    engine = create_engine(url)
    try:
        if not inspect(engine).has_table("user"):
            return False
        with Session(engine) as session:
            return demo_present(session)
    finally:
        engine.dispose()


def _seed(url: str, n: int, seed: int, echo: Echo) -> float:
    from app.db import make_engine
    from app.demo.seed import seed_demo
    from app.migrations import upgrade

    upgrade(url=url)
    shape = market_shape(n)
    echo(f"  seeding: {shape}")
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            started = time.perf_counter()
            seed_demo(
                session, seed=seed, owners=shape["owners"], buyers=shape["buyers"],
                orders=shape["orders"],
            )  # fmt: skip
            seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    echo(f"  seeded in {seconds:.1f} s")
    return round(seconds, 2)


def _market_facts(url: str) -> dict[str, Any]:
    """What the benchmark needs to know of the market: sizes, logins, a cluster, quote
    templates and lease candidates (read directly, not through the API)."""
    from app.demo.seed import DEMO_DOMAIN
    from models import AvailabilityWindow, Cluster, Machine, Operation, Order, OrderStatus, utcnow

    engine = create_engine(url)
    try:
        with Session(engine) as session:
            machines = session.exec(select(func.count()).select_from(Machine)).one()
            open_orders = session.exec(
                select(func.count()).select_from(Order).where(Order.status == OrderStatus.open)
            ).one()
            cluster = session.exec(select(Cluster).order_by(col(Cluster.id))).first()
            if cluster is None or not machines:
                raise ScaleError("the seeded market has no cluster or no machine")
            templates = session.exec(
                select(Order).where(Order.status == OrderStatus.open).order_by(col(Order.id))
                .limit(200)
            ).all()  # fmt: skip
            ops: dict[int, list[dict[str, Any]]] = {}
            for op in session.exec(
                select(Operation)
                .where(col(Operation.order_id).in_([o.id for o in templates]))
                .order_by(col(Operation.order_id), col(Operation.seq))
            ).all():
                ops.setdefault(op.order_id, []).append({
                    "process_key": op.process_key, "material_key": op.material_key,
                    "quantity": op.quantity, "part_x_mm": op.part_x_mm,
                    "part_y_mm": op.part_y_mm, "part_z_mm": op.part_z_mm,
                    "tolerance_mm": op.tolerance_mm, "std_duration_min": op.std_duration_min,
                })  # fmt: skip
            drafts = [
                {
                    "budget_fen": o.budget_fen,
                    "max_distance_km": o.max_distance_km,
                    "operations": ops[o.id],
                }  # fmt: skip
                for o in templates
                if o.id in ops
            ]
            soon = utcnow() + dt.timedelta(hours=2)
            windows = session.exec(
                select(AvailabilityWindow, Machine)
                .join(Machine, col(Machine.id) == col(AvailabilityWindow.machine_id))
                .where(col(Machine.leasable), col(AvailabilityWindow.start_at) > soon)
                .order_by(col(AvailabilityWindow.start_at))
                .limit(40)
            ).all()
            leases = []
            for w, m in windows:
                minutes = max(m.min_booking_minutes, 120)
                end = min(w.end_at, w.start_at + dt.timedelta(hours=max(8, minutes / 60)))
                if end - w.start_at >= dt.timedelta(minutes=minutes):
                    leases.append({"machine_id": m.id, "start_at": w.start_at.isoformat(),
                                   "end_at": end.isoformat()})  # fmt: skip
            return {
                "machines": int(machines),
                "open_orders": int(open_orders),
                "cluster_id": cluster.id,
                "operator": f"operator.{cluster.key}@{DEMO_DOMAIN}",
                "buyer": f"buyer1@{DEMO_DOMAIN}",
                "admin": f"admin@{DEMO_DOMAIN}",
                "drafts": drafts,
                "leases": leases,
            }
    finally:
        engine.dispose()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


class _Bench:
    """The measurements against one running server."""

    def __init__(
        self, base_url: str, pid: int, options: ScaleOptions, market: dict[str, Any], echo: Echo
    ) -> None:
        self.pid, self.options, self.market, self.echo = pid, options, market, echo
        timeout = options.request_timeout_s
        self.http = httpx.Client(base_url=base_url, timeout=timeout)
        self.buyer = self._token(market["buyer"])
        self.admin = self._token(market["admin"])
        self.operator = self._token(market["operator"])
        self.buyer_web = self._web_login(base_url, market["buyer"])
        self.admin_web = self._web_login(base_url, market["admin"])
        self.operator_web = self._web_login(base_url, market["operator"])

    def close(self) -> None:
        for client in (self.http, self.buyer_web, self.admin_web, self.operator_web):
            client.close()

    def _token(self, email: str) -> dict[str, str]:
        from app.demo.seed import DEMO_PASSWORD

        r = self.http.post(
            "/api/v1/auth/token", data={"username": email, "password": DEMO_PASSWORD}
        )
        _check(r, f"token for {email}")
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def _web_login(self, base_url: str, email: str) -> httpx.Client:
        """A browser-like client with a session cookie (the login form and its CSRF token)."""
        from app.demo.seed import DEMO_PASSWORD

        web = httpx.Client(base_url=base_url, timeout=self.options.request_timeout_s)
        form = web.get("/login")
        _check(form, "GET /login")
        found = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        if found is None:
            raise ScaleError("the login form has no csrf_token field")
        r = web.post("/login", data={"csrf_token": found.group(1), "email": email,
                                     "password": DEMO_PASSWORD})  # fmt: skip
        if r.status_code not in (302, 303) or "capshare_session" not in web.cookies:
            raise ScaleError(f"web login for {email}: {r.status_code} {r.text[:200]}")
        return web

    def timed(
        self,
        name: str,
        requests: Callable[[int], httpx.Response],
        n: int | None = None,
    ) -> list[float]:
        """``requests(i)`` n times after one untimed, in milliseconds; any non-2xx fails."""
        n = n or self.options.repeats
        _check(requests(-1), name)
        times = []
        for i in range(n):
            started = time.perf_counter()
            r = requests(i)
            times.append((time.perf_counter() - started) * 1000)
            _check(r, name)
        return times

    def measure(self, report: dict[str, Any]) -> None:
        get, echo = self.http.get, self.echo
        latencies: dict[str, dict[str, float]] = {}

        def record(key: str, times: list[float]) -> None:
            latencies[key] = {"p50": round(statistics.median(times), 2),
                              "p95": round(percentile(times, 0.95), 2), "n": len(times)}  # fmt: skip
            report[key] = latencies[key]["p50"]
            echo(f"  {key}: p50 {latencies[key]['p50']:.1f} ms, p95 {latencies[key]['p95']:.1f}")

        buyer = self.buyer
        record("bare_ms", self.timed("health", lambda _i: get("/api/v1/health")))
        page = get("/api/v1/machines", headers=buyer)
        _check(page, "GET /api/v1/machines")
        rows = page.json()["data"]
        if not rows:
            raise ScaleError("the buyer sees no machine")
        record(
            "machines_ms", self.timed("machines", lambda _i: get("/api/v1/machines", headers=buyer))
        )
        record("buyer_machines_page_ms",
               self.timed("/buyer/machines", lambda _i: self.buyer_web.get("/buyer/machines")))  # fmt: skip
        start = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).replace(
            hour=1, minute=0, second=0, microsecond=0
        )

        def free(i: int) -> httpx.Response:
            a = start + dt.timedelta(hours=i % 24)
            params = {
                "free_from": a.isoformat(),
                "free_to": (a + dt.timedelta(hours=4)).isoformat(),
            }
            return get("/api/v1/machines", params=params, headers=buyer)

        record("machines_free_ms", self.timed("machines free", free))
        ids = [m["id"] for m in rows]
        record("machine_by_id_ms", self.timed(
            "machine by id", lambda i: get(f"/api/v1/machines/{ids[i % len(ids)]}", headers=buyer)
        ))  # fmt: skip

        def filtered(i: int) -> httpx.Response:
            m = rows[i % len(rows)]
            params = {"process": m["process_key"], "material": m["materials"][0],
                      "tolerance_mm": max(m["tolerance_mm"], 0.01), "sort": "rate"}  # fmt: skip
            if m.get("cluster_id"):
                params["cluster_id"] = m["cluster_id"]
            return get("/api/v1/machines", params=params, headers=buyer)

        record("machines_filtered_ms", self.timed("filtered search", filtered))
        record("orders_ms", self.timed("orders", lambda _i: get("/api/v1/orders", headers=buyer)))
        record("operator_admin_ms",
               self.timed("/operator admin", lambda _i: self.admin_web.get("/operator")))  # fmt: skip
        record("operator_cluster_ms",
               self.timed("/operator cluster", lambda _i: self.operator_web.get("/operator")))  # fmt: skip
        quotes = self.quotes()
        latencies["quote_ms"] = {"p50": round(statistics.median(quotes), 2),
                                 "p95": round(percentile(quotes, 0.95), 2), "n": len(quotes)}  # fmt: skip
        report["quote_p50_ms"] = latencies["quote_ms"]["p50"]
        report["quote_p95_ms"] = latencies["quote_ms"]["p95"]
        echo(f"  quotes: p50 {report['quote_p50_ms']:.0f} ms, p95 {report['quote_p95_ms']:.0f} ms")
        report["latency"] = latencies
        self.market_run(report)
        self.cluster_run(report)

    def quotes(self) -> list[float]:
        drafts, rng = self.market["drafts"], random.Random(7)
        if not drafts:
            raise ScaleError("no open order to make quote drafts from")
        now = dt.datetime.now(dt.UTC)

        def one(_i: int) -> httpx.Response:
            template = rng.choice(drafts)
            release = now + dt.timedelta(hours=rng.randint(1, 72))
            body = {"title": "scale bench draft", "release_at": release.isoformat(),
                    "due_at": (release + dt.timedelta(days=rng.randint(2, 10))).isoformat(),
                    **template}  # fmt: skip
            return self.http.post("/api/v1/quotes", json=body, headers=self.buyer)

        return self.timed("quotes", one, n=self.options.quotes)

    def _run(
        self,
        headers: dict[str, str],
        cluster_id: int | None,
        limit: float,
        during: Callable[[], None],
    ) -> tuple[dict[str, Any], float, list[dict[str, Any]]]:
        """POST a run, poll it to its end (``during`` once, when first seen running);
        returns its final row, the wall seconds and what the polls saw while it ran."""
        started = time.perf_counter()
        r = self.http.post("/api/v1/match-runs", json={"cluster_id": cluster_id,
                                                       "time_limit_s": limit}, headers=headers)  # fmt: skip
        _check(r, "POST /api/v1/match-runs")
        run_id, called = r.json()["id"], False
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.options.run_timeout_s
        while True:
            r = self.http.get(f"/api/v1/match-runs/{run_id}", headers=headers)
            _check(r, "GET /api/v1/match-runs/{id}")
            row = r.json()
            if row["status"] in TERMINAL:
                return row, time.perf_counter() - started, seen
            if row["status"] == "running":
                seen.append({"phase": row["phase"], "heartbeat_at": row["heartbeat_at"]})
                if not called:
                    called = True
                    during()
            if time.monotonic() > deadline:
                self.http.post(f"/api/v1/match-runs/{run_id}/cancel", headers=headers)
                raise ScaleError(f"match run {run_id} still {row['status']} after "
                                 f"{self.options.run_timeout_s:g} s (cancelled)")  # fmt: skip
            time.sleep(0.25)

    def market_run(self, report: dict[str, Any]) -> None:
        notes: list[str] = report["notes"]
        lease: dict[str, Any] = {}

        def book_a_lease() -> None:
            for body in self.market["leases"]:
                r = self.http.post("/api/v1/leases", json=body, headers=self.buyer)
                lease.update(status=r.status_code, machine_id=body["machine_id"])
                if r.status_code == 201:
                    lease["id"] = r.json()["id"]
                    return

        reset = _reset_peak(self.pid)
        self.echo(f"  market run, {self.options.time_limit_s:g} s limit …")
        row, wall, seen = self._run(self.admin, None, self.options.time_limit_s, book_a_lease)
        report["run_peak_mib"] = _peak_mib(self.pid)
        if not reset:
            notes.append("peak memory: since the server started (clear_refs refused)")
        report["run"] = row
        report["run_wall_s"] = round(wall, 2)
        report["run_status"] = row["status"] + (f": {row['error'][:120]}" if row["error"] else "")
        report["run_solve_s"] = row["solve_seconds"]
        report["run_gap_pct"] = None if row["gap"] is None else round(100 * row["gap"], 1)
        report["run_proposals"] = row["proposals"]
        report["run_writeback_s"] = _first(row, WRITEBACK_FIELDS)
        if report["run_writeback_s"] is None:
            report["run_writeback_s"] = _observed_writeback(row, seen)
            notes.append("write-back: not recorded by the run; finished_at minus its last "
                         "heartbeat while running (a heartbeat every 2 s: ±2 s)")  # fmt: skip
        report["run_greedy_proposals"] = _first(row, GREEDY_FIELDS)
        if report["run_greedy_proposals"] is None:
            notes.append("greedy baseline: not recorded by the run")
        report["lease_status"] = lease.get("status")
        report["lease_during_run"] = bool(lease)
        requeue = {k: row[k] for k in REQUEUE_FIELDS if k in row}
        report["lease_outcome"] = {**lease, "run_status": row["status"], "run_error": row["error"],
                                   **requeue}  # fmt: skip
        if not lease:
            notes.append("lease: the run ended before a poll saw it running; none booked")
        elif not self.market["leases"]:
            notes.append("lease: no leasable window to book")
        self.echo(
            f"  market run {report['run_status']} in {wall:.1f} s: solve {row['solve_seconds']} s, "
            f"write-back {report['run_writeback_s']} s, gap {report['run_gap_pct']} %, "
            f"{row['proposals']} proposals, peak {report['run_peak_mib']} MiB; lease {lease}"
        )

    def cluster_run(self, report: dict[str, Any]) -> None:
        limit = self.options.cluster_time_limit_s or self.options.time_limit_s
        row, wall, _ = self._run(self.operator, self.market["cluster_id"], limit, lambda: None)
        report["cluster_run"] = row
        report["cluster_run_wall_s"] = round(wall, 2)
        report["cluster_run_status"] = row["status"]
        self.echo(f"  cluster run {row['status']} in {wall:.1f} s")


def _check(r: httpx.Response, what: str) -> None:
    if not 200 <= r.status_code < 300:
        raise ScaleError(f"{what}: HTTP {r.status_code}: {r.text[:300]}")


def _first(row: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((row[k] for k in keys if row.get(k) is not None), None)


def _observed_writeback(row: dict[str, Any], seen: list[dict[str, Any]]) -> float | None:
    beats = [s["heartbeat_at"] for s in seen if s["heartbeat_at"]]
    if not beats or not row.get("finished_at"):
        return None
    last = max(dt.datetime.fromisoformat(b) for b in beats)
    return round((dt.datetime.fromisoformat(row["finished_at"]) - last).total_seconds(), 2)


def _reset_peak(pid: int) -> bool:
    """Reset the process's peak resident set (VmHWM) to its current size (Linux)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_mib(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return round(int(found.group(1)) / 1024, 1) if found else None


def growth(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each numeric figure's ratio from one size to the next."""
    out = []
    for a, b in zip(reports, reports[1:], strict=False):
        ratios = {}
        for key, _label in FIGURES:
            x, y = a.get(key), b.get(key)
            if _number(x) and _number(y) and x > 0:
                ratios[key] = round(y / x, 2)
        out.append({"from": a["size"], "to": b["size"], "ratios": ratios})
    return out


def _number(v: Any) -> TypeGuard[float]:
    return isinstance(v, int | float) and not isinstance(v, bool)


def table(result: dict[str, Any]) -> str:
    """Every figure per size side by side, then the growth from size to size; latencies
    with the bare endpoint's share (bare ÷ path)."""
    reports, steps = result["sizes"], result["growth"]

    def cell(report: dict[str, Any], key: str) -> str:
        v = report.get(key)
        if v is None:
            return "-"
        if isinstance(v, bool):
            return "yes" if v else "no"
        if not _number(v):
            return str(v)[:40]
        shown = f"{v:,}" if isinstance(v, int) else f"{v:,.1f}"
        bare = report.get("bare_ms")
        if key.endswith("_ms") and key != "bare_ms" and _number(bare) and v > 0:
            shown += f" ({100 * bare / v:.1f} %)"
        return shown

    head = ["", *(f"{r['size']:,}" for r in reports),
            *(f"{s['from']:,}→{s['to']:,}" for s in steps)]  # fmt: skip
    rows = [head]
    for key, label in FIGURES:
        ratios = [s["ratios"].get(key) for s in steps]
        rows.append([label, *(cell(r, key) for r in reports),
                     *("-" if x is None else f"×{x:g}" for x in ratios)])  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]  # fmt: skip
    lines.insert(1, "-" * len(lines[0]))
    lines.append("(ms figures: median; in brackets the bare endpoint's share, bare ÷ path)")
    for r in reports:
        for note in r["notes"]:
            lines.append(f"{r['size']:,}: {note}")
    return "\n".join(lines)
