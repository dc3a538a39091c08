"""Serving the stub: ``run`` for ``capshare payments-stub``, ``serve_in_thread`` for tests."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from payments_stub.api import create_stub_app


def _uvicorn_config(app: FastAPI, *, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=log_level == "debug",
        lifespan="on",
        http="h11",
        ws="none",
    )


def run(
    host: str = "127.0.0.1",
    port: int = 8090,
    *,
    api_key: str,
    webhook_secret: str,
    webhook_url: str | None = None,
    log_level: str = "info",
    **stub_options: Any,
) -> None:
    """Serve a fresh stub with uvicorn until interrupted (blocks).

    ``stub_options`` are passed to ``create_stub_app`` (``settle_delay_s``,
    ``webhook_max_attempts``, ``webhook_backoff_base_s``, ``enable_control``...).
    """
    app = create_stub_app(
        api_key=api_key, webhook_secret=webhook_secret, webhook_url=webhook_url, **stub_options
    )
    uvicorn.Server(_uvicorn_config(app, host=host, port=port, log_level=log_level)).run()


@contextmanager
def serve_in_thread(
    app: FastAPI,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    log_level: str = "warning",
    ready_timeout_s: float = 10.0,
) -> Iterator[str]:
    """Serve ``app`` on a background thread; yields its base URL once it answers.

    The listening socket is bound here (``port=0`` picks a free port) before uvicorn
    starts, so connections queue in the backlog instead of being refused; readiness is
    one blocking GET of ``/_control/health`` (or ``/docs`` if control is disabled),
    not a sleep loop.
    """
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto
    # is IPPROTO_TCP, and without it every response waits ~40 ms on Nagle + delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(_uvicorn_config(app, host=host, port=bound_port, log_level=log_level))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{bound_port}", daemon=True
    )
    thread.start()
    base_url = f"http://{host}:{bound_port}"
    try:
        probe = "/_control/health" if _has_route(app, "/_control/health") else "/openapi.json"
        httpx.get(base_url + probe, timeout=ready_timeout_s).raise_for_status()
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _has_route(app: FastAPI, path: str) -> bool:
    return any(getattr(route, "path", None) == path for route in app.routes)
