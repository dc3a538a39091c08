"""``capshare payments reconcile`` and ``capshare payments-stub``."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.root import cli
from app.config import get_settings

payments_cli = typer.Typer(help="Payments: reconciliation with the provider", no_args_is_help=True)
cli.add_typer(payments_cli, name="payments")


@payments_cli.command("reconcile")
def payments_reconcile(
    release: Annotated[
        bool, typer.Option(help="first capture deliveries whose claim window passed")
    ] = True,
) -> None:
    """Compare the ledger with the provider; report every difference, repair what can be."""
    from sqlmodel import Session

    from app.bookings.delivery import release_due_captures
    from app.db import get_engine
    from app.money.provider import _client_for
    from app.money.reconcile import reconcile_payments

    settings = get_settings()
    client = _client_for(
        settings.payments_base_url,
        settings.payments_api_key.get_secret_value(),
        settings.payments_timeout_s,
    )
    with Session(get_engine()) as session:
        if release:
            n = release_due_captures(session=session, payments=client)
            typer.echo(f"{n} delivery(ies) captured after the claim window")
        report = reconcile_payments(session=session, payments=client)
    for diff in report.differences:
        mark = "repaired" if diff.repaired else "OPEN    "
        ref = f"payment {diff.payment_id}: " if diff.payment_id else ""
        typer.echo(f"  [{mark}] {diff.kind}: {ref}{diff.detail}")
    typer.echo(
        f"events seen {report.events_seen}, missed webhooks {report.events_missed}; pending "
        f"{report.pending_before} -> {report.pending_after}; differences {len(report.differences)}, "
        f"repaired {report.repaired}, open {len(report.unrepaired)}"
    )
    typer.echo(
        f"ledger total {report.ledger_total_fen} fen; platform holds {report.ledger_platform_fen} fen "
        f"(provider: {report.provider_platform_fen})"
    )
    if not report.ok:
        raise typer.Exit(1)


@cli.command("payments-stub")
def payments_stub(
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="port to listen on")] = 8100,
    webhook_url: Annotated[
        str | None,
        typer.Option(
            help="where to deliver webhooks, e.g. http://127.0.0.1:8000/api/v1/webhooks/payments"
        ),
    ] = None,
) -> None:
    """Serve the offline payments provider stub (API key and webhook secret from settings)."""
    from payments_stub import run

    settings = get_settings()
    typer.echo(f"payments stub on http://{host}:{port}")
    run(
        host, port, api_key=settings.payments_api_key.get_secret_value(),
        webhook_secret=settings.payments_webhook_secret.get_secret_value(), webhook_url=webhook_url,
    )  # fmt: skip
