"""The ``capshare`` command line (Typer): ``serve``, ``seed``, ``db``, ``match``,
``worker``, ``payments``, ``payments-stub`` and ``bench``, one module per group."""

from __future__ import annotations

import app.jobs  # noqa: F401  (registers every task with app.tasks)
from app.cli import db, match, payments, serve  # noqa: F401  (each registers its commands)
from app.cli.bench import bench_app
from app.cli.root import cli

cli.add_typer(bench_app, name="bench", help="Benchmarks: matcher, quotes, dashboard")


def main() -> None:
    cli()
