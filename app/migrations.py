"""Run the Alembic migrations in ``infra/migrations`` from code (CLI and tests).

The migrations ship inside the installed package (``infra`` is package data of
capshare), so they are found from the package, not from a source checkout."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

ALEMBIC_INI = files("infra") / "alembic.ini"


def alembic_config(*, url: str | None = None, connection: Connection | None = None) -> Config:
    config = Config(str(ALEMBIC_INI))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(*, url: str | None = None, connection: Connection | None = None) -> None:
    command.upgrade(alembic_config(url=url, connection=connection), "head")


def check(*, url: str | None = None) -> None:
    """Raise if the models and the migrations disagree (``alembic check``)."""
    command.check(alembic_config(url=url))
