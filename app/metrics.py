"""Prometheus metrics: one registry of names for the whole program.

Every metric capshare exports is defined here, once, so that two modules never
register the same name and a reader finds them all in one place. The web
process serves them at ``/metrics`` (:func:`render`).

Several worker processes (``capshare serve --workers N``, or ``capshare worker``
beside the API) each count on their own. With ``PROMETHEUS_MULTIPROC_DIR`` set
(an empty directory, writable by every process, emptied before the processes
start) prometheus-client keeps each process's samples in files there and
``/metrics`` adds them up; the variable must be set before the processes start,
because the storage is chosen when this module is imported. Without it, each
process reports only its own numbers.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# Request latency buckets in seconds: fast reads to the request timeout.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# --- the HTTP server (app/middleware.py) ----------------------------------------------------
REQUEST_SECONDS = Histogram(
    "capshare_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by route template.",
    ("method", "route", "status"),
    buckets=LATENCY_BUCKETS,
)
REQUESTS_IN_FLIGHT = Gauge(
    "capshare_http_requests_in_flight",
    "Requests being handled now.",
    multiprocess_mode="livesum",
)
POOL_SATURATED = Counter(
    "capshare_db_pool_saturated_total",
    "Requests answered 503 because no database connection was to be had in time "
    "(reason: admission, pool_timeout, connect).",
    ("reason",),
)

# --- the task queue and the matcher (incremented by the task modules) ------------------------
MATCH_RUN_SECONDS = Histogram(
    "capshare_match_run_duration_seconds",
    "Wall time of one match run, by outcome.",
    ("outcome",),
    buckets=(0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)
MATCH_RUNS = Counter("capshare_match_runs_total", "Match runs finished, by outcome.", ("outcome",))
JOB_FAILURES = Counter(
    "capshare_job_failures_total", "Task-queue jobs that raised, by task name.", ("task",)
)
QUEUE_DEPTH = Gauge(
    "capshare_queue_depth",
    "Jobs waiting in a task queue (set by whoever last looked, e.g. a collector callback).",
    ("queue",),
    multiprocess_mode="mostrecent",
)
PAYMENT_FAILURES = Counter(
    "capshare_payment_failures_total",
    "Payment provider calls that failed, by payment kind.",
    ("kind",),
)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def render() -> tuple[bytes, str]:
    """The exposition text and its content type: this process's registry, or, in
    multiprocess mode, the sum over every process's files."""
    if multiprocess_dir() is None:
        from prometheus_client import REGISTRY

        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Drop a finished process's live gauges (multiprocess mode only)."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def reset_multiprocess_dir() -> None:
    """Empty PROMETHEUS_MULTIPROC_DIR before the worker processes start (a previous run's
    files would be added to this one's counts); nothing to do without it."""
    directory = multiprocess_dir()
    if directory is None:
        return
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
