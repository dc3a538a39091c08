"""The HTTP guards, as pure ASGI middleware (no BaseHTTPMiddleware: nothing here
buffers a body or runs the app in another task's context without need).

From the outside in, as ``app/main.py`` stacks them:

``RequestContextMiddleware``
    the request id (``X-Request-ID``, kept if sane, else made), in a contextvar for
    every log line and echoed in the response; the access log line; latency by route
    template, and requests in flight.
``BodyLimitMiddleware``
    413 for a body over ``max_body_bytes``: by ``Content-Length`` before the app
    runs or anything is read (so before authentication), else counted as the chunks
    arrive. Starlette's own body limit answers in plain text and only once the app
    reads, so it is not used.
``TimeoutMiddleware``
    504 when the app has not started its response within ``request_timeout_s``.
    What that can and cannot do: a sync handler runs in a thread, which cannot be
    stopped, and cancelling the async part of the request would skip the session's
    teardown. So the request is not interrupted: the client gets its 504 at the
    deadline, and the handler runs on to its end, its response thrown away; its
    session closes as always (a command that reached its commit has committed, any
    other transaction is rolled back when the session closes). A 504 therefore means
    "no answer in time, outcome unknown", as a lost connection would: a client
    retries writes with the same idempotency key, or reads back first. The request
    keeps its admission slot and its connection until the handler has finished.
``AdmissionMiddleware``
    at most ``limit`` requests (pool size + overflow) that may use the database at
    once per process; the others wait on the event loop, not in a thread, for at
    most ``wait_s`` (the pool timeout) and then get 503 with ``Retry-After``. An
    admitted request then finds a connection (unless background work holds some)
    and a thread, so the pool and the threadpool cannot starve each other.
``UnhandledErrorMiddleware``
    an exception no handler took becomes a 500 rendered by the composition root (JSON
    under /api, the error page elsewhere) without re-raising, so the server keeps
    the connection open; the traceback goes to the log with the request id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import anyio
from anyio.lowlevel import RunVar
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.logs import accept_request_id, request_id_var
from app.metrics import POOL_SATURATED, REQUEST_SECONDS, REQUESTS_IN_FLIGHT

log = logging.getLogger("capshare.http")
access_log = logging.getLogger("capshare.access")

RETRY_AFTER_S = 1  # what a 503 tells the client to wait before trying again
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def error_response(
    status: int, error: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The API's error body, ``{error, detail, field}``, for errors that no route raised."""
    return JSONResponse(
        {"error": error, "detail": detail, "field": None}, status_code=status, headers=headers
    )


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/api/v1/bookings/{booking_id}``), never the
    raw path, so that the metric's label set stays small."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str) or not template:
        return "unmatched"
    # A route of an included router knows only its own part (/bookings/{booking_id}); the
    # router's prefix (/api/v1, static: no prefix here has parameters) is the part of the
    # path before the stretch that the route's pattern matches.
    path: str = scope["path"]
    pattern = getattr(route, "path_regex", None)
    if pattern is not None and not pattern.match(path):
        for i, char in enumerate(path):
            if char == "/" and i and pattern.match(path[i:]):
                return path[:i] + template
    return template


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = accept_request_id(Headers(scope=scope).get("x-request-id"))
        token = request_id_var.set(request_id)
        status = 500  # if the app ends without a response, the server sends a 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        REQUESTS_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUESTS_IN_FLIGHT.dec()
            seconds = time.perf_counter() - started
            method = scope["method"] if scope["method"] in _METHODS else "other"
            REQUEST_SECONDS.labels(method, route_template(scope), str(status)).observe(seconds)
            access_log.info(
                "%s %s %s",
                method,
                scope["path"],
                status,
                extra={
                    "method": method,
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(seconds * 1000, 1),
                },
            )
            request_id_var.reset(token)


class _BodyTooLarge:
    """The app's view of a request whose body went over the cap: the client is gone."""

    def __init__(self, receive: Receive, send: Send, scope: Scope, max_bytes: int) -> None:
        self.receive, self.send, self.scope, self.max_bytes = receive, send, scope, max_bytes
        self.received = 0
        self.response_started = False
        self.refused = False

    async def receive_counted(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self.receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.max_bytes:
                self.refused = True
                if not self.response_started:
                    await _too_large(self.max_bytes)(self.scope, self.receive, self.send)
                return {"type": "http.disconnect"}
        return message

    async def send_unless_refused(self, message: Message) -> None:
        if self.refused:
            return  # the client has had its 413
        if message["type"] == "http.response.start":
            self.response_started = True
        await self.send(message)


def _too_large(max_bytes: int) -> Response:
    return error_response(
        413, "ContentTooLarge", f"the request body is larger than {max_bytes} bytes"
    )


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await _too_large(self.max_body_bytes)(scope, receive, send)
            return
        guard = _BodyTooLarge(receive, send, scope, self.max_body_bytes)
        try:
            await self.app(scope, guard.receive_counted, guard.send_unless_refused)
        except Exception:
            if not guard.refused:
                raise
            log.debug("error after a 413 for %s", scope["path"], exc_info=True)


class TimeoutMiddleware:
    def __init__(self, app: ASGIApp, *, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False
        timed_out = False
        done = anyio.Event()
        error: BaseException | None = None

        async def send_in_time(message: Message) -> None:
            nonlocal response_started
            if timed_out:
                return  # the client has had its 504; the late answer is dropped
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        async def run() -> None:
            nonlocal error
            try:
                await self.app(scope, receive, send_in_time)
            except Exception as exc:  # re-raised below, outside the task group
                error = exc
            finally:
                done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            with anyio.move_on_after(self.timeout_s):
                await done.wait()
            if not done.is_set() and not response_started:
                timed_out = True
                log.warning(
                    "%s %s: no response within %s s (504); the handler runs on",
                    scope["method"],
                    scope["path"],
                    self.timeout_s,
                )
                detail = f"the request did not complete within {self.timeout_s:g} s"
                await error_response(504, "Timeout", detail)(scope, receive, send)
            # the task group waits here for the handler to finish, whatever happened
        if error is not None and not timed_out:
            raise error


class AdmissionMiddleware:
    def __init__(
        self, app: ASGIApp, *, limit: int, wait_s: float, exempt: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.limit = limit
        self.wait_s = wait_s
        self.exempt = exempt
        # one semaphore per event loop (tests start several loops in one process)
        self._slots: RunVar[anyio.Semaphore] = RunVar("capshare_admission")

    def _semaphore(self) -> anyio.Semaphore:
        try:
            return self._slots.get()
        except LookupError:
            slots = anyio.Semaphore(self.limit)
            self._slots.set(slots)
            return slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        slots = self._semaphore()
        admitted = False
        with anyio.move_on_after(self.wait_s):
            await slots.acquire()
            admitted = True
        if not admitted:
            POOL_SATURATED.labels("admission").inc()
            await service_busy()(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            slots.release()


def service_busy() -> JSONResponse:
    return error_response(
        503,
        "ServiceUnavailable",
        "the service is at capacity; try again in a moment",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


class UnhandledErrorMiddleware:
    def __init__(self, app: ASGIApp, *, render: Callable[[Request, Exception], Response]) -> None:
        self.app = app
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def send_tracked(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception as exc:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if response_started:
                raise  # half a response is out: only closing the connection is left
            response = _render_or_plain(self.render, Request(scope, receive), exc)
            await response(scope, receive, send)


def _render_or_plain(
    render: Callable[[Request, Exception], Response], request: Request, exc: Exception
) -> Response:
    try:
        return render(request, exc)
    except Exception:  # the error page itself failed: say it plainly
        log.exception("rendering the error response failed")
        return Response("Internal Server Error", status_code=500, media_type="text/plain")
