"""``capshare db upgrade|check``: the schema."""

from __future__ import annotations

import typer

from app.cli.root import cli
from app.config import get_settings

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


def _safe_url() -> str:
    from sqlalchemy.engine import make_url

    return make_url(get_settings().database_url).render_as_string(hide_password=True)
