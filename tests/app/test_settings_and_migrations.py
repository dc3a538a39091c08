from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

import pytest
from pydantic import SecretStr, ValidationError

from app.config import Settings
from app.migrations import check


def test_postgres_urls_are_normalised_to_psycopg() -> None:
    s = Settings(database_url="postgres://u:p@db:5432/capshare")
    assert s.database_url == "postgresql+psycopg://u:p@db:5432/capshare"
    assert Settings(database_url="postgresql://db/x").database_url == "postgresql+psycopg://db/x"


def test_defaults() -> None:
    s = Settings(_env_file=None)
    assert s.database_url.startswith("sqlite:///") and "var/" in s.database_url
    assert s.display_timezone == "Asia/Shanghai"


@pytest.mark.parametrize("environment", ["production", "test"])
def test_placeholder_secret_refused_outside_development(
    environment: Literal["production", "test"],
) -> None:
    with pytest.raises(ValidationError, match="secret_key"):
        Settings(environment=environment)
    ok = Settings(
        environment=environment,
        secret_key=SecretStr("a-real-secret-of-some-length"),
        payments_api_key=SecretStr("sk_live_abc"),
        payments_webhook_secret=SecretStr("whsec_abc"),
    )
    assert ok.secret_key.get_secret_value() == "a-real-secret-of-some-length"


def test_development_accepts_the_placeholder() -> None:
    assert Settings(environment="development").environment == "development"


def test_models_and_migrations_agree(engine: object, db_url: str) -> None:
    """`alembic check` against the suite's database, migrated from scratch."""
    check(url=db_url)


def test_upgrading_a_database_with_data_keeps_it_and_downgrading_too(tmp_path: Path) -> None:
    """0004 changes the machine table; on SQLite a table rebuild with foreign keys on would
    delete the windows (or fail on the bookings) that point at the machines."""
    from alembic import command

    from app.migrations import alembic_config

    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    command.upgrade(alembic_config(url=url), "0003")
    ts = "2030-01-01 00:00:00.000000"
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA foreign_keys=ON")
        c.execute(
            "INSERT INTO process(key, family, name_en, name_zh) VALUES ('p-mig', 'cnc', 'p', 'p')"
        )
        c.execute(
            "INSERT INTO organization(id, name, is_owner, is_buyer, is_operator, created_at) VALUES (1, 'o', 1, 0, 0, ?)",
            (ts,),
        )
        c.execute("""INSERT INTO machine(id, name, make_model, envelope_x_mm, envelope_y_mm, envelope_z_mm, tolerance_mm,
                     speed_factor, hourly_rate_fen, min_booking_minutes, leasable, process_key, materials, certifications,
                     lat, lon, owner_org_id, currency, status, created_at, updated_at, telemetry_token_hash)
                     VALUES (1, 'm', 'm', 1, 1, 1, 0.1, 1, 100, 60, 1, 'p-mig', '[]', '[]', 30, 120, 1, 'CNY', 'active', ?, ?, 'h')""",
                  (ts, ts))  # fmt: skip
        c.execute(
            "INSERT INTO availability_window(machine_id, start_at, end_at) VALUES (1, ?, '2030-01-01 05:00:00.000000')",
            (ts,),
        )
        c.execute("""INSERT INTO booking(machine_id, kind, state, start_at, end_at, org_id, price_fen, currency, reason,
                     created_at, updated_at) VALUES (1, 'lease', 'confirmed', ?, '2030-01-01 01:00:00.000000', 1, 100, 'CNY', '', ?, ?)""",
                  (ts, ts, ts))  # fmt: skip

    def counts() -> tuple[int, int, int]:
        with sqlite3.connect(path) as c:
            machines, windows, bookings = (
                int(c.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
                for t in ("machine", "availability_window", "booking")
            )
        return machines, windows, bookings

    command.upgrade(alembic_config(url=url), "head")
    assert counts() == (1, 1, 1)
    with sqlite3.connect(path) as c:
        assert {r[1] for r in c.execute("PRAGMA table_info(machine)")} >= {
            "reported_state",
            "last_reported_at",
        }
    command.downgrade(alembic_config(url=url), "0003")
    assert counts() == (1, 1, 1)
