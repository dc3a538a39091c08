"""The ``capshare`` command."""

from __future__ import annotations

import time
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
    from app.demo import DEMO_PASSWORD, demo_present, seed_demo

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
    demo: Annotated[bool, typer.Option("--demo", help="migrate and seed a demo market first")] = False,
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(help="worker processes")] = 1,
) -> None:
    """Serve the web UI and the API."""
    import uvicorn

    from app.migrations import upgrade

    upgrade()
    if demo:
        _seed_demo()
    typer.echo(f"capshare on http://{host}:{port}  (API docs at /docs)")
    uvicorn.run("app.main:create_app", factory=True, host=host, port=port, workers=workers)


def _safe_url() -> str:
    from sqlalchemy.engine import make_url

    return make_url(get_settings().database_url).render_as_string(hide_password=True)


try:  # the benchmark harness lives beside the matcher
    from app.bench_cli import bench_app

    cli.add_typer(bench_app, name="bench", help="Benchmarks of the matcher")
except ImportError:  # pragma: no cover
    pass


def main() -> None:
    cli()
