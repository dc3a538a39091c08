"""``capshare seed`` and ``capshare serve`` (migrates first unless ``--no-migrate``; with
``--demo``: migrate, seed, run the payments stub beside)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Annotated

import typer

from app.cli.root import cli
from app.config import get_settings


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
    migrate: Annotated[
        bool,
        typer.Option(help="apply the migrations first (a fleet runs `capshare db upgrade` once)"),
    ] = True,
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

    if migrate or demo:
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
