"""Settings, read once from the environment (and an optional `.env`).

Every setting has an env var of its own, prefixed ``CAPSHARE_``; the database URL
is also read from the conventional ``DATABASE_URL``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRET = "changethis-development-only-not-a-secret"  # refused outside development
# Room a multipart upload needs beyond its file: boundaries, part headers, the other fields.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
REPO_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CAPSHARE_", env_file=".env", extra="ignore", populate_by_name=True
    )

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = Field(
        default="sqlite:///./var/capshare.db",
        validation_alias=AliasChoices("DATABASE_URL", "CAPSHARE_DATABASE_URL"),
    )
    # Connections per process: pool_size kept open, up to pool_overflow more under load.
    # A request waits at most db_pool_timeout_s for one, then gets 503 with Retry-After
    # (README "Sizing connection pools" has the arithmetic against max_connections).
    db_pool_size: int = Field(default=10, ge=1, le=1000)
    db_pool_overflow: int = Field(default=10, ge=0, le=1000)
    db_pool_timeout_s: float = Field(default=2.0, gt=0, le=60)
    # The largest request body accepted (413 beyond it, by Content-Length before reading
    # anything); at least attachment_max_bytes plus MULTIPART_OVERHEAD_BYTES.
    max_body_bytes: int = Field(default=21 * 1024 * 1024, ge=1)
    # A handler that has not started its response by then answers 504 (the handler itself
    # runs to its end: a thread cannot be stopped; see app/middleware.py).
    request_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    secret_key: SecretStr = SecretStr(PLACEHOLDER_SECRET)
    access_token_minutes: int = 60 * 8
    display_timezone: str = "Asia/Shanghai"
    payments_base_url: str = "http://127.0.0.1:8100"
    payments_api_key: SecretStr = SecretStr("sk_test_capshare")
    payments_webhook_secret: SecretStr = SecretStr("whsec_capshare")
    payments_timeout_s: float = 5.0
    # The payments.drive tasks call the provider after the command that made a payment
    # due; off, pending payments wait for ``capshare payments reconcile``.
    payments_inline: bool = True
    # Periodic jobs (proposal expiry, claim-window captures, pending payments): in the
    # web process unless turned off here and run by `capshare worker` instead. Never
    # in the "test" environment.
    jobs_in_process: bool = True
    # What runs deferred tasks (app/tasks.py): "auto" is procrastinate on PostgreSQL and
    # in-process threads on SQLite; "manual" leaves them to the caller (tests).
    task_runner: Literal["auto", "procrastinate", "threads", "manual"] = "auto"
    task_threads: int = Field(default=2, ge=1, le=32)  # per queue, threads runner
    worker_concurrency: int = Field(default=2, ge=1, le=32)  # jobs at once per worker
    worker_queue_connections: int = Field(default=3, ge=1, le=50)  # a worker's queue pool
    worker_heartbeat_s: float = Field(default=10.0, gt=0, le=300)  # worker liveness in the queue
    worker_stalled_s: float = Field(default=60.0, gt=0)  # a silent worker is dead after this
    # a running match run with no heartbeat for this long is failed (its worker died)
    match_run_stale_s: int = Field(default=120, ge=10, le=3600)
    platform_fee_bps: int = Field(default=500, ge=0, le=10_000)  # 5 % of each price
    claim_window_days: int = Field(default=7, ge=0)  # buyer may dispute a delivery this long
    free_cancel_hours: int = Field(default=24, ge=0)  # free cancellation until this before start
    late_cancel_fee_bps: int = Field(
        default=2000, ge=0, le=10_000
    )  # 20 % of the price, to the owner
    lease_deposit_bps: int = Field(
        default=3000, ge=0, le=10_000
    )  # a lease deposit: 30 % of its price
    solver_time_limit_s: float = 10.0
    solver_workers: int = 2
    match_horizon_days: int = 14
    # a match run writes back this many orders per transaction (each batch short, so
    # other writers — on SQLite everyone — wait for one batch, not for the whole run)
    match_write_batch_orders: int = Field(default=500, ge=1, le=100_000)
    # a market run over more machines than this is solved cluster by cluster, then the
    # orders no cluster placed across all of them, with this share of the time limit
    match_split_machines: int = Field(default=3000, ge=0)
    match_cross_share: float = Field(default=0.25, gt=0, lt=1)
    proposal_ttl_minutes: int = 24 * 60
    # a booking may be started at most this long before its start_at
    early_start_minutes: int = Field(default=60, ge=0, le=7 * 24 * 60)
    quote_time_limit_s: float = 0.1
    # a quote looks, per step, at this many cheapest, nearest and earliest capable machines
    quote_shortlist: int = Field(default=24, ge=1, le=1000)
    attachment_dir: Path = Path("./var/attachments")
    attachment_max_bytes: int = 20 * 1024 * 1024
    attachment_content_types: tuple[str, ...] = (
        "application/pdf",
        "image/png",
        "image/jpeg",
        "image/svg+xml",
        "text/plain",
        "text/csv",
        "application/zip",
        "model/step",
        "model/stl",
        "application/step",
        "application/sla",
        "application/vnd.ms-pki.stl",
        "application/dxf",
        "image/vnd.dxf",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    )
    attachment_link_minutes: int = 15
    planning_horizon_days: int = 90
    # Telemetry: a reported state holds until the next report if that comes within this
    # long (a device reports every change and at least this often while it is on);
    # reports older than telemetry_max_age_days are refused.
    telemetry_hold_minutes: int = Field(default=60, ge=1, le=24 * 60)
    telemetry_max_age_days: int = Field(default=7, ge=1, le=90)
    # The dashboard's history (app/dashboard/history.py): each rollup recomputes the last
    # history_settle_days closed days (late telemetry may still change them), so it must
    # exceed telemetry_max_age_days. Spans and past offered windows are deleted once they
    # are this old and rolled up; each retention must exceed the settle days (and the
    # dashboard's week). Bookings, orders and money rows are never deleted.
    history_settle_days: int = Field(default=8, ge=1, le=90)
    span_retention_days: int = Field(default=90, ge=8, le=3650)
    window_retention_days: int = Field(default=180, ge=8, le=3650)

    @field_validator("database_url")
    @classmethod
    def _normalise_scheme(cls, value: str) -> str:
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        return value

    @model_validator(mode="after")
    def _body_cap_holds_an_attachment(self) -> Settings:
        needed = self.attachment_max_bytes + MULTIPART_OVERHEAD_BYTES
        if self.max_body_bytes < needed:
            raise ValueError(
                f"max_body_bytes ({self.max_body_bytes}) must be at least attachment_max_bytes "
                f"plus {MULTIPART_OVERHEAD_BYTES} bytes of multipart overhead ({needed}): raise "
                "CAPSHARE_MAX_BODY_BYTES or lower CAPSHARE_ATTACHMENT_MAX_BYTES"
            )
        if self.request_timeout_s <= self.db_pool_timeout_s:
            raise ValueError(
                f"request_timeout_s ({self.request_timeout_s}) must exceed db_pool_timeout_s "
                f"({self.db_pool_timeout_s}): a request waiting for a connection answers 503, "
                "not 504"
            )
        return self

    @model_validator(mode="after")
    def _history_outlives_its_settling(self) -> Settings:
        if self.history_settle_days <= self.telemetry_max_age_days:
            raise ValueError(
                f"history_settle_days ({self.history_settle_days}) must exceed "
                f"telemetry_max_age_days ({self.telemetry_max_age_days}): late reports change "
                "days the rollup would no longer recompute"
            )
        for name in ("span_retention_days", "window_retention_days"):
            if getattr(self, name) <= self.history_settle_days:
                raise ValueError(
                    f"{name} ({getattr(self, name)}) must exceed history_settle_days "
                    f"({self.history_settle_days}): the rollup recomputes those days from them"
                )
        return self

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.environment != "development":
            for name in ("secret_key", "payments_api_key", "payments_webhook_secret"):
                secret: SecretStr = getattr(self, name)
                if secret.get_secret_value() in (
                    PLACEHOLDER_SECRET,
                    "sk_test_capshare",
                    "whsec_capshare",
                ):
                    raise ValueError(
                        f"{name} is a development placeholder; set CAPSHARE_{name.upper()} "
                        "to a real secret outside development"
                    )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
