"""The ``capshare`` command."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Annotated

import typer

from app.config import get_settings

cli = typer.Typer(help="capshare: manufacturing capacity-sharing marketplace", no_args_is_help=True)
db_cli = typer.Typer(help="Database schema", no_args_is_help=True)
cli.add_typer(db_cli, name="db")


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration (creates the database if needed)."""
    from app.migrations import upgrade

    upgrade()
    typer.echo(f"database at head: {_safe_url()}")


@db_cli.command("check")
def db_check() -> None:
    """Fail if the models and the migrations disagree."""
    from app.migrations import check

    check()
    typer.echo("models and migrations agree")


@cli.command()
def seed(
    demo: Annotated[bool, typer.Option("--demo", help="seed the demo market")] = False,
) -> None:
    """Seed data. The taxonomy comes with the migrations; --demo adds a market."""
    from app.migrations import upgrade

    upgrade()
    if not demo:
        typer.echo("taxonomy is seeded by the migrations; pass --demo for a demo market")
        return
    _seed_demo()


def _seed_demo() -> None:
    from sqlmodel import Session

    from app.db import get_engine
    from app.demo.seed import DEMO_PASSWORD, demo_present, seed_demo

    with Session(get_engine()) as session:
        if demo_present(session):
            typer.echo("demo market already present")
            return
        started = time.perf_counter()
        counts = seed_demo(session, progress=lambda msg: typer.echo(f"  · {msg}"))
    typer.echo(f"demo market seeded in {time.perf_counter() - started:.1f} s")
    typer.echo(f"demo logins (password: {DEMO_PASSWORD}):")
    for role, email in counts.logins:
        typer.echo(f"  {role:<9} {email}")


@cli.command()
def serve(
    demo: Annotated[
        bool, typer.Option("--demo", help="migrate and seed a demo market first")
    ] = False,
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(help="worker processes")] = 1,
    payments_stub: Annotated[
        bool,
        typer.Option(
            help="with --demo: run the offline payments stub at CAPSHARE_PAYMENTS_BASE_URL"
        ),
    ] = True,
) -> None:
    """Serve the web UI and the API."""
    import uvicorn

    from app.migrations import upgrade

    upgrade()
    if not demo:
        typer.echo(f"capshare on http://{host}:{port}  (API docs at /docs)")
        uvicorn.run("app.main:create_app", factory=True, host=host, port=port, workers=workers)
        return
    _seed_demo()
    with ExitStack() as stack:
        if payments_stub:
            stack.enter_context(_demo_payments_stub(host, port))
        typer.echo(f"capshare on http://{host}:{port}  (API docs at /docs)")
        uvicorn.run("app.main:create_app", factory=True, host=host, port=port, workers=workers)


@contextmanager
def _demo_payments_stub(host: str, port: int) -> Iterator[None]:
    """Run the offline payments provider beside the demo, at the configured base
    URL (default http://127.0.0.1:8100), delivering webhooks to this server."""
    from urllib.parse import urlsplit

    from payments_stub import create_stub_app, serve_in_thread

    settings = get_settings()
    parts = urlsplit(settings.payments_base_url)
    stub = create_stub_app(
        api_key=settings.payments_api_key.get_secret_value(),
        webhook_secret=settings.payments_webhook_secret.get_secret_value(),
        webhook_url=f"http://{host}:{port}/api/v1/webhooks/payments",
    )
    with serve_in_thread(stub, parts.hostname or "127.0.0.1", parts.port or 8100) as url:
        typer.echo(
            f"payments stub on {url} (webhooks to http://{host}:{port}/api/v1/webhooks/payments)"
        )
        yield


@cli.command()
def match(
    cluster: Annotated[
        str | None, typer.Option("--cluster", help="cluster key or id (default: the whole market)")
    ] = None,
    time_limit: Annotated[
        float | None, typer.Option("--time-limit", help="solver seconds (1-120)")
    ] = None,
    seed: Annotated[int, typer.Option(help="solver random seed")] = 0,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="no progress lines while the solver runs")
    ] = False,
) -> None:
    """Run the matcher as the platform and write its proposals (progress on stderr)."""
    from sqlmodel import Session, select

    from app.cli.bench import progress_printer
    from app.db import get_engine
    from app.matching_runs.service import list_unmatched, run_matching
    from models import Cluster

    with Session(get_engine()) as session:
        cluster_id = None
        if cluster is not None:
            row = session.exec(
                select(Cluster).where(Cluster.key == cluster)
                if not cluster.isdigit()
                else select(Cluster).where(Cluster.id == int(cluster))
            ).first()
            if row is None:
                raise typer.BadParameter(f"no cluster {cluster!r}", param_hint="--cluster")
            cluster_id = row.id
        run = run_matching(
            session=session,
            user=None,
            cluster_id=cluster_id,
            time_limit_s=time_limit,
            seed=seed,
            progress=None if quiet else progress_printer(),
        )
        typer.echo(
            f"match run {run.id} ({run.scope}{'' if run.cluster_id is None else f' {cluster}'}): {run.status}"
        )
        typer.echo(
            f"  in: {run.orders_in} orders, {run.operations_in} operations, {run.machines_in} machines, "
            f"{run.free_intervals_in} free intervals"
        )
        if run.status == "failed":
            typer.echo(f"  error: {run.error}")
            raise typer.Exit(1)
        typer.echo(
            f"  out: {run.proposals} proposals ({run.superseded} superseded), {run.unmatched} unmatched; "
            f"objective {run.objective_fen:,} fen, bound {run.bound_fen:,}, gap {run.gap:.1%}, "
            f"{run.solve_seconds:.2f} s ({run.solver_status})"
        )
        assert run.id is not None
        reasons: dict[str, int] = {}
        for u in list_unmatched(session=session, run_id=run.id):
            reasons[u.reason] = reasons.get(u.reason, 0) + 1
        for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
            typer.echo(f"    {reason:<20} {n}")


@cli.command()
def worker(
    interval: Annotated[float, typer.Option(help="seconds between rounds")] = 60.0,
    once: Annotated[bool, typer.Option("--once", help="run one round and exit")] = False,
) -> None:
    """Run the periodic jobs (proposal expiry, claim-window captures, pending
    payments). Any number of workers may run: one at a time does each round."""
    from app.db import get_engine
    from app.jobs import Round, Worker, run_round

    def report(r: Round) -> None:
        if r.skipped:
            typer.echo("round skipped: another worker holds the lock")
        else:
            typer.echo(
                f"expired {r.expired} proposal(s), captured {r.captured} delivery(ies), payments {r.payments}"
            )

    settings = get_settings()
    if once:
        report(run_round(engine=get_engine(), settings=settings))
        return
    Worker(
        engine=get_engine(), settings=settings, interval_s=interval, on_round=report
    ).run_forever()


@cli.command("expire-proposals")
def expire_proposals_cmd() -> None:
    """Expire proposals nobody answered within CAPSHARE_PROPOSAL_TTL_MINUTES."""
    from sqlmodel import Session

    from app.db import get_engine
    from app.matching_runs.expiry import expire_proposals

    with Session(get_engine()) as session:
        n = expire_proposals(session=session)
    typer.echo(f"{n} proposal(s) expired")


@cli.command("bench-quotes")
def bench_quotes(
    n: Annotated[int, typer.Option("--n", help="number of quote requests")] = 50,
    seed: Annotated[int, typer.Option(help="which drafts")] = 7,
) -> None:
    """Seed the demo market into a temporary SQLite database, POST N varied order
    drafts to /api/v1/quotes and print median and p95 latency."""
    import os
    import random
    import statistics
    import tempfile
    from pathlib import Path

    from fastapi.testclient import TestClient
    from sqlmodel import Session, col, select

    from app import db
    from app.demo.seed import seed_demo
    from app.migrations import upgrade
    from app.security import create_access_token
    from models import Operation, Order, Role, User, utcnow

    tmp = Path(tempfile.mkdtemp(prefix="capshare-bench-"))
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.db'}"
    get_settings.cache_clear()
    db.get_engine.cache_clear()
    upgrade()
    with Session(db.get_engine()) as session:
        seed_demo(session)
        buyers = [u for u in session.exec(select(User)).all() if u.has_role(Role.buyer)]
        orders = session.exec(select(Order)).all()
        ops: dict[int, list[Operation]] = {}
        for op in session.exec(select(Operation).order_by(col(Operation.seq))).all():
            ops.setdefault(op.order_id, []).append(op)
    rng = random.Random(seed)
    from app.main import create_app

    client = TestClient(create_app())
    settings = get_settings()
    latencies: list[float] = []
    with_options = 0
    now = utcnow()
    for _ in range(n):
        template = rng.choice(orders)
        buyer = rng.choice(buyers)
        release = now + __import__("datetime").timedelta(hours=rng.randint(1, 72))
        due = release + __import__("datetime").timedelta(days=rng.randint(2, 10))
        body = {
            "title": "bench draft",
            "release_at": release.isoformat(),
            "due_at": due.isoformat(),
            "budget_fen": template.budget_fen,
            "max_distance_km": template.max_distance_km,
            "operations": [
                {
                    "process_key": o.process_key,
                    "material_key": o.material_key,
                    "quantity": o.quantity,
                    "part_x_mm": o.part_x_mm,
                    "part_y_mm": o.part_y_mm,
                    "part_z_mm": o.part_z_mm,
                    "tolerance_mm": o.tolerance_mm,
                    "std_duration_min": o.std_duration_min,
                }
                for o in ops[template.id]  # type: ignore[index]
            ],
        }
        assert buyer.id is not None
        token, _ = create_access_token(settings=settings, user_id=buyer.id)
        started = time.perf_counter()
        r = client.post("/api/v1/quotes", json=body, headers={"Authorization": f"Bearer {token}"})
        latencies.append((time.perf_counter() - started) * 1000)
        if r.status_code != 200:
            typer.echo(f"  {r.status_code}: {r.text[:200]}")
            continue
        with_options += bool(r.json()["options"])
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, int(round(0.95 * len(latencies))) - 1)]
    typer.echo(
        f"{n} quotes on the demo market: median {statistics.median(latencies):.0f} ms, "
        f"p95 {p95:.0f} ms, max {latencies[-1]:.0f} ms; {with_options} with options"
    )


def _safe_url() -> str:
    from sqlalchemy.engine import make_url

    return make_url(get_settings().database_url).render_as_string(hide_password=True)


payments_cli = typer.Typer(help="Payments: reconciliation with the provider", no_args_is_help=True)
cli.add_typer(payments_cli, name="payments")


@payments_cli.command("reconcile")
def payments_reconcile(
    release: Annotated[
        bool, typer.Option(help="first capture deliveries whose claim window passed")
    ] = True,
) -> None:
    """Compare the ledger with the provider; report every difference, repair what can be."""
    from sqlmodel import Session

    from app.bookings.delivery import release_due_captures
    from app.db import get_engine
    from app.money.provider import _client_for
    from app.money.reconcile import reconcile_payments

    settings = get_settings()
    client = _client_for(
        settings.payments_base_url,
        settings.payments_api_key.get_secret_value(),
        settings.payments_timeout_s,
    )
    with Session(get_engine()) as session:
        if release:
            n = release_due_captures(session=session, payments=client)
            typer.echo(f"{n} delivery(ies) captured after the claim window")
        report = reconcile_payments(session=session, payments=client)
    for diff in report.differences:
        mark = "repaired" if diff.repaired else "OPEN    "
        ref = f"payment {diff.payment_id}: " if diff.payment_id else ""
        typer.echo(f"  [{mark}] {diff.kind}: {ref}{diff.detail}")
    typer.echo(
        f"events seen {report.events_seen}, missed webhooks {report.events_missed}; pending "
        f"{report.pending_before} -> {report.pending_after}; differences {len(report.differences)}, "
        f"repaired {report.repaired}, open {len(report.unrepaired)}"
    )
    typer.echo(
        f"ledger total {report.ledger_total_fen} fen; platform holds {report.ledger_platform_fen} fen "
        f"(provider: {report.provider_platform_fen})"
    )
    if not report.ok:
        raise typer.Exit(1)


@cli.command("payments-stub")
def payments_stub(
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="port to listen on")] = 8100,
    webhook_url: Annotated[
        str | None,
        typer.Option(
            help="where to deliver webhooks, e.g. http://127.0.0.1:8000/api/v1/webhooks/payments"
        ),
    ] = None,
) -> None:
    """Serve the offline payments provider stub (API key and webhook secret from settings)."""
    from payments_stub import run

    settings = get_settings()
    typer.echo(f"payments stub on http://{host}:{port}")
    run(
        host, port, api_key=settings.payments_api_key.get_secret_value(),
        webhook_secret=settings.payments_webhook_secret.get_secret_value(), webhook_url=webhook_url,
    )  # fmt: skip


@cli.command("bench-dashboard")
def bench_dashboard(
    machines: Annotated[int, typer.Option(help="machines in the generated market")] = 10_000,
    bookings: Annotated[int, typer.Option(help="bookings in the generated market")] = 200_000,
    repeat: Annotated[int, typer.Option(help="timed runs")] = 5,
    url: Annotated[
        str | None, typer.Option(help="database URL (default: a temporary SQLite file)")
    ] = None,
) -> None:
    """Time the operator dashboard (queries + page render) over a large market."""
    from app.bench.dashboard import run

    result = run(url=url, machines=machines, bookings=bookings, repeat=repeat)
    for key, value in result.items():
        typer.echo(f"{key:>10}: {value}")


# `capshare bench market|fjsp|gap` (the matcher's harness) and, beside them,
# `capshare bench quotes` and `capshare bench dashboard`.
from app.cli.bench import bench_app  # noqa: E402

bench_app.command("quotes")(bench_quotes)
bench_app.command("dashboard")(bench_dashboard)
cli.add_typer(bench_app, name="bench", help="Benchmarks: matcher, quotes, dashboard")


def main() -> None:
    cli()
