"""The root of the ``capshare`` command line; each command group lives in its own module."""

from __future__ import annotations

import typer

cli = typer.Typer(help="capshare: manufacturing capacity-sharing marketplace", no_args_is_help=True)
