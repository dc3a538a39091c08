"""``capshare seed`` and ``capshare serve`` (migrates first unless ``--no-migrate``; with
``--demo``: migrate, seed, run the payments stub beside)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Annotated, Any

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
    from app.migrations import upgrade

    if migrate or demo:
        upgrade()
    if not demo:
        typer.echo(f"capshare on http://{host}:{port}  (API docs at /docs)")
        _run_uvicorn(host, port, workers)
        return
    _seed_demo()
    with ExitStack() as stack:
        if payments_stub:
            stack.enter_context(_demo_payments_stub(host, port))
        typer.echo(f"capshare on http://{host}:{port}  (API docs at /docs)")
        _run_uvicorn(host, port, workers)


APP = "app.main:create_app"


def _run_uvicorn(host: str, port: int, workers: int) -> None:
    """One process: ``uvicorn.run``. Several: uvicorn's supervisor (restarts, signals,
    graceful shutdown) over a listening socket bound here, not by uvicorn.

    uvicorn's multi-process mode binds ``socket.socket(family)``, whose ``proto`` is 0, and
    shares it with its workers; asyncio sets ``TCP_NODELAY`` on an accepted connection only
    when its ``proto`` is ``IPPROTO_TCP`` (``asyncio.base_events._set_nodelay``), so every
    connection kept Nagle's algorithm and a response written in two parts (head, body)
    waited for the client's delayed ACK: about 40 ms on every keep-alive request. The
    single-process server binds through ``loop.create_server(host, port)``, whose sockets
    come from getaddrinfo with ``IPPROTO_TCP``; the socket bound here is the same."""
    import uvicorn

    if workers <= 1:
        uvicorn.run(APP, factory=True, host=host, port=port, **_http())
        return
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(APP, factory=True, host=host, port=port, workers=workers, **_http())
    Multiprocess(config, sockets=[_listening_socket(host, port)]).run()


def _listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port), to be shared with the worker processes."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        typer.echo(f"cannot listen on {host}:{port}: {exc}", err=True)
        raise typer.Exit(3) from exc
    sock.set_inheritable(True)
    return sock


def _http() -> dict[str, Any]:
    """uvicorn's side of the HTTP limits (the rest is app/middleware.py): JSON logs with the
    request id (the app writes the access line), idle keep-alive connections closed after
    5 s, request heads up to 16 KiB, in-flight requests given the request timeout to end
    on shutdown. No limit_concurrency: its refusals are plain-text 503s; admission in the
    app answers JSON with Retry-After instead."""
    from app.logs import LOGGING_CONFIG
    from app.metrics import reset_multiprocess_dir

    reset_multiprocess_dir()
    return {
        "log_config": LOGGING_CONFIG,
        "access_log": False,
        "timeout_keep_alive": 5,
        "h11_max_incomplete_event_size": 16 * 1024,
        "timeout_graceful_shutdown": int(get_settings().request_timeout_s) + 5,
    }


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
