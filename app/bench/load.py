"""HTTP load against one real API process: N concurrent authenticated requests.

    python -m app.bench.load --requests 200 --pool-size 5 --pool-overflow 0
    python -m app.bench.load --keepalive --requests 300

starts ``uvicorn app.main:create_app`` in a subprocess on loopback with the chosen
pool (over a temporary SQLite file, or ``--database-url``, migrated first),
registers a buyer, sends the requests all at once and prints the status counts
and latency percentiles. It is a benchmark, not a test: the figures depend on
the machine. The live test ``tests/live/test_http_load.py`` uses :func:`fire`
for the part that does not (status codes, no hang). ``--keepalive`` times keep-alive
requests to the bare endpoint under uvicorn's multi-process mode and ``capshare serve``,
one and two workers, side by side (the Nagle's-algorithm tax, app/cli/serve.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from app.config import REPO_ROOT


@dataclass
class Outcome:
    status: int | None  # None: no answer within the client's timeout (or the connection failed)
    seconds: float
    retry_after: str | None = None
    error: str | None = None


@dataclass
class LoadResult:
    outcomes: list[Outcome] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def statuses(self) -> Counter[int | None]:
        return Counter(o.status for o in self.outcomes)

    def percentile(self, q: float) -> float:
        times = sorted(o.seconds for o in self.outcomes)
        return times[min(len(times) - 1, max(0, round(q * len(times)) - 1))]

    def summary(self) -> str:
        counts = ", ".join(f"{n} × {s or 'no answer'}" for s, n in sorted(
            self.statuses.items(), key=lambda kv: kv[0] or 0))  # fmt: skip
        slow = sum(o.seconds > 5 for o in self.outcomes)
        return (
            f"{len(self.outcomes)} requests in {self.wall_s:.2f} s: {counts}; "
            f"p50 {self.percentile(0.5) * 1000:.0f} ms, p95 {self.percentile(0.95) * 1000:.0f} ms, "
            f"max {max(o.seconds for o in self.outcomes) * 1000:.0f} ms; {slow} over 5 s"
        )


def fire(
    base_url: str, path: str, *, n: int, token: str | None = None, timeout_s: float = 30.0
) -> LoadResult:
    """Send ``n`` GETs of ``path`` at once, each on its own connection; the client's
    timeout bounds every request, so a hang shows as ``status None``."""

    async def one(http: httpx.AsyncClient, gate: asyncio.Event) -> Outcome:
        await gate.wait()
        started = time.perf_counter()
        try:
            r = await http.get(path)
        except httpx.HTTPError as exc:
            return Outcome(None, time.perf_counter() - started, error=type(exc).__name__)
        return Outcome(r.status_code, time.perf_counter() - started, r.headers.get("retry-after"))

    async def run() -> LoadResult:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=timeout_s, limits=limits
        ) as http:
            gate = asyncio.Event()
            tasks = [asyncio.create_task(one(http, gate)) for _ in range(n)]
            await asyncio.sleep(0)
            started = time.perf_counter()
            gate.set()
            outcomes = await asyncio.gather(*tasks)
            return LoadResult(list(outcomes), time.perf_counter() - started)

    return asyncio.run(run())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CAPSHARE = [sys.executable, "-c", "from app.cli import main; main()"]  # `capshare`, this venv


@contextmanager
def server_process(
    args: list[str],
    *,
    port: int,
    env: dict[str, str],
    log: Path,
    ready_timeout_s: float = 60,
    stop_timeout_s: float = 15,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` (a server listening on ``port``) with its output in ``log`` until
    ``/api/v1/health`` answers; always stopped after (SIGTERM, then SIGKILL). A server that
    exits or does not answer in time raises with the log's path and its tail."""
    with log.open("wb") as out:  # the child keeps its own handle
        proc = subprocess.Popen(
            args, cwd=REPO_ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited ({proc.returncode}); log {log}:\n{_tail(log)}")
            try:
                if (
                    httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).status_code
                    == 200
                ):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"server did not answer in {ready_timeout_s:g} s; log {log}:\n{_tail(log)}"
                )
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=stop_timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def api_process(
    database_url: str, *, env: dict[str, str], log: Path, ready_timeout_s: float = 60
) -> Iterator[str]:
    """A migrated database and one ``uvicorn app.main:create_app`` process over it."""
    from app.migrations import upgrade

    upgrade(url=database_url)
    port = free_port()
    child_env = {"DATABASE_URL": database_url, "CAPSHARE_JOBS_IN_PROCESS": "false",
                 "CAPSHARE_PAYMENTS_INLINE": "false", **env}  # fmt: skip
    args = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    with server_process(args, port=port, env=child_env, log=log, ready_timeout_s=ready_timeout_s):
        yield f"http://127.0.0.1:{port}"


def keepalive_ms(base_url: str, path: str = "/api/v1/health", *, n: int = 300) -> list[float]:
    """``n`` GETs one after another on one kept-alive connection, in milliseconds (after
    five untimed ones that open the connection and warm the route)."""
    with httpx.Client(base_url=base_url, timeout=30) as http:
        for _ in range(5):
            http.get(path).raise_for_status()
        times = []
        for _ in range(n):
            started = time.perf_counter()
            http.get(path).raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
    return times


# The process models compared by --keepalive: uvicorn's own multi-process mode (what
# `capshare serve --workers N` ran before) and `capshare serve --workers N` now.
KEEPALIVE_SERVERS = {
    "uvicorn --workers N (before)": [sys.executable, "-m", "uvicorn", "app.main:create_app",
                                     "--factory", "--host", "127.0.0.1"],
    "capshare serve --workers N": [*CAPSHARE, "serve", "--no-migrate", "--host", "127.0.0.1"],
}  # fmt: skip


def keepalive_table(database_url: str, *, n: int, workers: list[int], tmp: Path) -> str:
    """Median and p95 keep-alive latency of the bare endpoint for each process model and
    each worker count, side by side."""
    from app.migrations import upgrade

    upgrade(url=database_url)
    env = {"DATABASE_URL": database_url, "CAPSHARE_JOBS_IN_PROCESS": "false",
           "CAPSHARE_PAYMENTS_INLINE": "false"}  # fmt: skip
    head = f"{'':<30}" + "".join(f"{f'--workers {w}':>22}" for w in workers)
    lines = [f"GET /api/v1/health, {n} keep-alive requests on one connection: median (p95) ms",
             head]  # fmt: skip
    for name, args in KEEPALIVE_SERVERS.items():
        cells = []
        for w in workers:
            port = free_port()
            log = tmp / f"keepalive-{len(lines)}-{w}.log"
            with server_process([*args, "--port", str(port), "--workers", str(w)],
                                port=port, env=env, log=log):  # fmt: skip
                times = sorted(keepalive_ms(f"http://127.0.0.1:{port}", n=n))
            p50, p95 = times[len(times) // 2], times[min(len(times) - 1, round(0.95 * len(times)))]
            cells.append(f"{p50:.1f} ({p95:.1f})")
        lines.append(f"{name:<30}" + "".join(f"{c:>22}" for c in cells))
    return "\n".join(lines)


@contextmanager
def sampling_connections(database_url: str, every_s: float = 0.01) -> Iterator[list[Counter[str]]]:
    """PostgreSQL's ``pg_stat_activity`` for the database while the block runs: every
    ``every_s``, the count of its connections by state (``active``, ``idle``, ``idle in
    transaction``...), the sampler's own left out. On SQLite the list stays empty."""
    samples: list[Counter[str]] = []
    if not database_url.startswith("postgresql"):
        yield samples
        return
    import psycopg

    stop = threading.Event()
    conninfo = database_url.replace("postgresql+psycopg://", "postgresql://", 1)

    def sample() -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            while not stop.is_set():
                rows = conn.execute(
                    "SELECT coalesce(state, '?'), count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "GROUP BY 1"
                ).fetchall()
                samples.append(Counter({str(state): int(n) for state, n in rows}))
                stop.wait(every_s)

    sampler = threading.Thread(target=sample, name="capshare-load-sampler", daemon=True)
    sampler.start()
    try:
        yield samples
    finally:
        stop.set()
        sampler.join(timeout=10)


def connections_summary(samples: list[Counter[str]]) -> str:
    """The connections' states over a round: the peak, the median and the mean of each."""
    if not samples:
        return "connections: not sampled (PostgreSQL only)"
    states = sorted({s for sample in samples for s in sample})
    total = [sum(sample.values()) for sample in samples]
    parts = [f"{max(total)} open at most"] + [
        f"{state} max {max(x[state] for x in samples)} / median "
        f"{statistics.median(x[state] for x in samples):g} / mean "
        f"{statistics.fmean(x[state] for x in samples):.1f}"
        for state in states
    ]
    return f"connections over {len(samples)} samples: " + ", ".join(parts)


def buyer_token(base_url: str) -> str:
    """Register a buyer organization through the API and log its user in."""
    email = f"load-{uuid.uuid4().hex[:10]}@demo.capshare.cn"
    password = "load-test-password"
    with httpx.Client(base_url=base_url, timeout=30) as http:
        r = http.post("/api/v1/auth/register", json={
            "org_name": "Load test buyer", "roles": ["buyer"], "email": email,
            "full_name": "Load Test", "password": password})  # fmt: skip
        r.raise_for_status()
        r = http.post("/api/v1/auth/token", data={"username": email, "password": password})
        r.raise_for_status()
        return str(r.json()["access_token"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", "-n", type=int, default=200)
    parser.add_argument("--pool-size", type=int, default=5)
    parser.add_argument("--pool-overflow", type=int, default=0)
    parser.add_argument("--pool-timeout", type=float, default=2.0, help="seconds")
    parser.add_argument("--path", default="/api/v1/bookings?limit=5")
    parser.add_argument("--rounds", type=int, default=3, help="bursts, one after another")
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    parser.add_argument("--client-timeout", type=float, default=30.0)
    parser.add_argument("--keepalive", action="store_true",
                        help="instead: keep-alive latency of the bare endpoint, uvicorn's "
                        "multi-process mode vs `capshare serve`, 1 and 2 workers")  # fmt: skip
    args = parser.parse_args(argv)
    if args.keepalive:
        with tempfile.TemporaryDirectory(prefix="capshare-keepalive-") as tmp:
            url = args.database_url or f"sqlite:///{Path(tmp) / 'load.db'}"
            n = max(args.requests, 200)
            print(keepalive_table(url, n=n, workers=[1, 2], tmp=Path(tmp)))  # noqa: T201
        return
    env = {
        "CAPSHARE_DB_POOL_SIZE": str(args.pool_size),
        "CAPSHARE_DB_POOL_OVERFLOW": str(args.pool_overflow),
        "CAPSHARE_DB_POOL_TIMEOUT_S": str(args.pool_timeout),
    }
    with tempfile.TemporaryDirectory(prefix="capshare-load-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'load.db'}"
        with api_process(url, env=env, log=Path(tmp) / "server.log") as base_url:
            token = buyer_token(base_url)
            print(  # noqa: T201
                f"one API process, pool {args.pool_size}+{args.pool_overflow}, pool timeout "
                f"{args.pool_timeout:g} s, {url.split(':', 1)[0]}; GET {args.path}"
            )
            for i in range(args.rounds):
                with sampling_connections(url) as samples:
                    result = fire(base_url, args.path, n=args.requests, token=token,
                                  timeout_s=args.client_timeout)  # fmt: skip
                print(f"  round {i + 1}: {result.summary()}")  # noqa: T201
                print(f"    {connections_summary(samples)}")  # noqa: T201
                refused = [o for o in result.outcomes if o.status == 503]
                if refused and any(o.retry_after is None for o in refused):
                    print("  !! a 503 without Retry-After")  # noqa: T201


if __name__ == "__main__":
    main()
