"""JSON log lines and the request id they carry.

One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
``message``, ``request_id`` (when the line is written inside a request), and for
the access line that ends each request ``method``, ``path``, ``status`` and
``duration_ms``; ``exc`` holds a traceback when there is one. The request id
lives in a contextvar, so every line written while a request is handled carries
it, in the event loop and in the threadpool alike (Starlette copies the context
into each thread hop). The stdlib's ``logging`` is enough for this; no library.

``capshare serve`` installs :data:`LOGGING_CONFIG` into uvicorn; under a bare
``uvicorn app.main:create_app`` pass a config of your own (``--log-config``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import uuid
from contextvars import ContextVar
from typing import Any

request_id_var: ContextVar[str | None] = ContextVar("capshare_request_id", default=None)

# An id from a client or a proxy is kept if it is short and made of safe characters.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
# Extra attributes an access line may carry, in this order.
_FIELDS = ("method", "path", "status", "duration_ms")


def accept_request_id(raw: str | None) -> str:
    """The client's ``X-Request-ID`` when it is sane (at most 128 characters of
    letters, digits and ``._:-``), else a new one."""
    if raw is not None and _SANE_REQUEST_ID.fullmatch(raw):
        return raw
    return uuid.uuid4().hex


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id is not None:
            line["request_id"] = request_id
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


# uvicorn's own loggers and ours, all through one JSON handler on stderr. uvicorn's
# access logger is left out: the request middleware writes the access line, with the id.
LOGGING_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "app.logs.JsonFormatter"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        }
    },
    "root": {"handlers": ["stderr"], "level": "INFO"},
    "loggers": {
        "uvicorn": {"level": "INFO"},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"level": "WARNING", "propagate": False},
    },
}
