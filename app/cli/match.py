"""``capshare match``, ``capshare worker`` and ``capshare expire-proposals``: the matcher and the periodic work."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.root import cli
from app.config import get_settings


@cli.command()
def match(
    cluster: Annotated[
        str | None, typer.Option("--cluster", help="cluster key or id (default: the whole market)")
    ] = None,
    time_limit: Annotated[
        float | None, typer.Option("--time-limit", help="solver seconds (1-120)")
    ] = None,
    seed: Annotated[int, typer.Option(help="solver random seed")] = 0,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="no progress lines while the solver runs")
    ] = False,
) -> None:
    """Run the matcher as the platform and write its proposals (progress on stderr)."""
    from sqlmodel import Session, select

    from app.cli.bench import progress_printer
    from app.db import get_engine
    from app.matching_runs.service import RunInProgress, list_unmatched, run_matching
    from models import Cluster

    with Session(get_engine()) as session:
        cluster_id = None
        if cluster is not None:
            row = session.exec(
                select(Cluster).where(Cluster.key == cluster)
                if not cluster.isdigit()
                else select(Cluster).where(Cluster.id == int(cluster))
            ).first()
            if row is None:
                raise typer.BadParameter(f"no cluster {cluster!r}", param_hint="--cluster")
            cluster_id = row.id
        try:
            run = run_matching(
                session=session,
                user=None,
                cluster_id=cluster_id,
                time_limit_s=time_limit,
                seed=seed,
                progress=None if quiet else progress_printer(),
            )
        except RunInProgress as exc:
            typer.echo(f"not run: {exc.message}", err=True)
            raise typer.Exit(1) from exc
        typer.echo(
            f"match run {run.id} ({run.scope}{'' if run.cluster_id is None else f' {cluster}'}): {run.status}"
        )
        typer.echo(
            f"  in: {run.orders_in} orders, {run.operations_in} operations, {run.machines_in} machines, "
            f"{run.free_intervals_in} free intervals"
        )
        if run.status != "succeeded":
            typer.echo(f"  error: {run.error}")
            raise typer.Exit(1)
        typer.echo(
            f"  out: {run.proposals} proposals ({run.superseded} superseded), {run.unmatched} unmatched; "
            f"objective {run.objective_fen:,} fen, bound {run.bound_fen:,}, gap {run.gap:.1%}, "
            f"{run.solve_seconds:.2f} s ({run.solver_status})"
        )
        assert run.id is not None
        reasons: dict[str, int] = {}
        for u in list_unmatched(session=session, run_id=run.id):
            reasons[u.reason] = reasons.get(u.reason, 0) + 1
        for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
            typer.echo(f"    {reason:<20} {n}")


@cli.command()
def worker(
    once: Annotated[
        bool, typer.Option("--once", help="run every periodic task once, here, and exit")
    ] = False,
) -> None:
    """Run the task queue's worker: match runs, payments and the periodic tasks. Any number
    of workers may run, on any hosts (PostgreSQL); each job runs on one of them."""
    from app import tasks
    from app.jobs import run_worker

    if once:
        failed = 0
        for name, definition in sorted(tasks.registered().items()):
            if definition.every_s is not None:
                ok = tasks.run_job(tasks.Job(task=name))
                failed += not ok
                typer.echo(f"{name}: {'ok' if ok else 'FAILED (see the log)'}")
        raise typer.Exit(1 if failed else 0)
    run_worker(get_settings())


@cli.command("expire-proposals")
def expire_proposals_cmd() -> None:
    """Expire proposals nobody answered within CAPSHARE_PROPOSAL_TTL_MINUTES."""
    from sqlmodel import Session

    from app.db import get_engine
    from app.matching_runs.expiry import expire_proposals

    with Session(get_engine()) as session:
        n = expire_proposals(session=session)
    typer.echo(f"{n} proposal(s) expired")
