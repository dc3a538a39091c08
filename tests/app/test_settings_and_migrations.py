from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from app.config import Settings
from app.migrations import check


def test_postgres_urls_are_normalised_to_psycopg() -> None:
    s = Settings(database_url="postgres://u:p@db:5432/capshare")
    assert s.database_url == "postgresql+psycopg://u:p@db:5432/capshare"
    assert Settings(database_url="postgresql://db/x").database_url == "postgresql+psycopg://db/x"


def test_defaults() -> None:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.database_url.startswith("sqlite:///") and "var/" in s.database_url
    assert s.display_timezone == "Asia/Shanghai"


@pytest.mark.parametrize("environment", ["production", "test"])
def test_placeholder_secret_refused_outside_development(environment: str) -> None:
    with pytest.raises(ValidationError, match="secret_key"):
        Settings(environment=environment)  # type: ignore[arg-type]
    ok = Settings(
        environment=environment,  # type: ignore[arg-type]
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
