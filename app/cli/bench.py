"""``capshare bench``: benchmark runners for the matcher (market, FJSP, GAP).

Mounted by the main CLI as a Typer sub-app; imports only ``matching`` and ``typer``.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from app.config import get_settings
from matching.bench.common import load_json
from matching.bench.fjsp import parse_fjsp, run_fjsp
from matching.bench.gap import parse_gap, run_gap
from matching.bench.generator import generate_market, generate_problem, write_market
from matching.bench.market import market_problem, run_market, run_problem

bench_app = typer.Typer(
    help="Benchmarks for the matcher, side by side with greedy baselines.", no_args_is_help=True
)

TimeLimit = Annotated[float, typer.Option("--time-limit", "-t", help="seconds per instance")]
Seed = Annotated[int, typer.Option(help="solver random seed")]
Workers = Annotated[int, typer.Option(help="CP-SAT worker threads")]
AsJson = Annotated[bool, typer.Option("--json", help="print a JSON list")]
Deterministic = Annotated[
    bool,
    typer.Option(
        "--deterministic/--no-deterministic",
        help="reproducible single-worker searches (default) or all workers, wall-clock limits",
    ),
]


def progress_printer(min_interval_s: float = 1.0) -> Callable[[dict[str, Any]], None]:
    """A progress callback for the solver that writes one line per event to stderr:
    every phase change, and the solver's improving solutions at most once per
    ``min_interval_s`` (of solver time)."""
    last = {"cp-sat": -min_interval_s}

    def show(event: dict[str, Any]) -> None:
        phase = str(event.get("phase", ""))
        seconds = float(event.get("seconds", 0.0))
        if phase == "cp-sat":
            if seconds - last["cp-sat"] < min_interval_s:
                return
            last["cp-sat"] = seconds
        parts = [f"{seconds:7.1f} s", "finished" if phase == "component" else phase]
        for key in ("component", "jobs", "objective", "bound", "steps", "gain", "order"):
            value = event.get(key)
            if isinstance(value, float):
                value = int(value)
            if isinstance(value, int) and not isinstance(value, bool):
                parts.append(f"{key} {value:,}")
            elif value is not None:
                parts.append(f"{key} {value}")
        typer.echo("  … " + "  ".join(parts), err=True)

    return show


def _check_files(files: list[Path], what: str, parse: Callable[[Path], object]) -> None:
    """Read every file before running anything, so that a bad one in a list stops the
    command at once with its name, not with a traceback minutes later."""
    for f in files:
        try:
            parse(f)
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise typer.BadParameter(
                f"{f}: not a readable {what} file ({exc})", param_hint="FILES"
            ) from exc


def _parse_gap_file(f: Path) -> None:
    if not parse_gap(f.read_text(), f.stem):
        raise ValueError("no problem in it")


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        return str(v)

    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += [
        "  ".join(
            v.rjust(w) if i else v.ljust(w)
            for i, (v, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    ]
    return "\n".join(lines)


def _emit(rows: list[dict[str, Any]], cols: list[str], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([{c: r.get(c) for c in cols} for r in rows], indent=1))
    else:
        typer.echo(_table(rows, cols))


@bench_app.command()
def market(
    files: Annotated[
        list[Path] | None,
        typer.Argument(exists=True, dir_okay=False, readable=True, help="capshare-market-v1 files"),
    ] = None,
    time_limit: TimeLimit = 10.0,
    seed: Annotated[int, typer.Option(help="solver seed; with --generate the generator's")] = 0,
    workers: Workers = 2,
    as_json: AsJson = False,
    solutions: Annotated[Path | None, typer.Option(help="write solutions here")] = None,
    deterministic: Deterministic = True,
    generate: Annotated[
        bool,
        typer.Option(
            "--generate", help="also run on a market generated with --jobs, --machines, --seed"
        ),
    ] = False,
    jobs: Annotated[int, typer.Option(help="--generate: number of jobs")] = 500,
    machines: Annotated[int, typer.Option(help="--generate: number of machines")] = 100,
    out: Annotated[
        Path | None, typer.Option(help="--generate: keep the generated instance in this file")
    ] = None,
    progress: Annotated[
        bool, typer.Option("--progress", help="show the engine's progress on stderr")
    ] = False,
    through_compile: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="--generate: the same market as a MatchProblem through matching.solve"
            " (compile counted in the limit; any size): compile, solve, total s, peak"
            " memory, placed and cost beside the greedy",
        ),
    ] = False,
) -> None:
    """Greedy EDD, best greedy and the engine on capshare-market-v1 instances (files, and
    with --generate a market from capshare's own generator), side by side."""
    paths = list(files or [])
    if not paths and not generate:
        raise typer.BadParameter("give instance files or --generate")
    if through_compile:
        if not generate or paths:
            raise typer.BadParameter("--compile goes with --generate and no files")
        problem = generate_problem(n_jobs=jobs, n_machines=machines, seed=seed)
        name = f"gen-{jobs}x{machines}-seed{seed}"
        found = run_problem(
            problem, name, time_limit_s=time_limit, seed=seed, workers=workers,
            progress=progress_printer() if progress else None,
        )  # fmt: skip
        _emit(found, list(found[0]), as_json)
        return
    _check_files(paths, "capshare-market-v1", lambda f: market_problem(load_json(f)))
    with tempfile.TemporaryDirectory() as tmp:
        if generate:
            inst = generate_market(n_jobs=jobs, n_machines=machines, seed=seed)
            path = out or Path(tmp) / f"{inst['name']}.json.gz"
            write_market(inst, path)
            typer.echo(f"generated {inst['name']}" + (f" -> {out}" if out else ""), err=True)
            paths.append(path)
        rows: list[dict[str, Any]] = []
        for f in paths:
            rows += run_market(
                f,
                time_limit_s=time_limit,
                seed=seed,
                workers=workers,
                solutions_dir=solutions,
                deterministic=deterministic,
                progress=progress_printer() if progress else None,
            )
    _emit(
        rows,
        [
            "instance",
            "method",
            "objective",
            "placed",
            "tardiness_min",
            "bound",
            "seconds",
            "peak_rss_mb",
        ],
        as_json,
    )


@bench_app.command()
def fjsp(
    files: Annotated[
        list[Path],
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="FJSP text files (.fjs/.txt)"
        ),
    ],
    time_limit: TimeLimit = 10.0,
    seed: Seed = 0,
    workers: Workers = 2,
    as_json: AsJson = False,
    bks: Annotated[
        Path | None,
        typer.Option(help="bks_scheduleopt.json (default: search upward from each file)"),
    ] = None,
    deterministic: Deterministic = True,
) -> None:
    """Flexible job shop, makespan mode, through the same engine."""
    _check_files(files, "FJSP", lambda f: parse_fjsp(f.read_text()))
    rows = [
        run_fjsp(
            f,
            time_limit_s=time_limit,
            seed=seed,
            workers=workers,
            bks=bks,
            deterministic=deterministic,
        )
        for f in files
    ]
    _emit(rows, ["instance", "objective", "bound", "best_known", "seconds", "status"], as_json)


@bench_app.command()
def gap(
    files: Annotated[
        list[Path],
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="OR-Library / Yagiura GAP files"
        ),
    ],
    time_limit: TimeLimit = 10.0,
    seed: Seed = 0,
    workers: Workers = 2,
    as_json: AsJson = False,
    maximize: Annotated[
        bool,
        typer.Option(
            "--maximize", help="maximise (OR-Library gap1-12 sense); best_known is min-only"
        ),
    ] = False,
    bks: Annotated[
        Path | None, typer.Option(help="bks_fontanf.csv (default: search upward)")
    ] = None,
    deterministic: Deterministic = True,
) -> None:
    """Generalized assignment through the same engine (time limit per problem)."""
    _check_files(files, "GAP", _parse_gap_file)
    rows: list[dict[str, Any]] = []
    for f in files:
        rows += run_gap(
            f,
            time_limit_s=time_limit,
            seed=seed,
            workers=workers,
            maximize=maximize,
            bks=bks,
            deterministic=deterministic,
        )
    _emit(rows, ["instance", "objective", "bound", "best_known", "seconds", "status"], as_json)


@bench_app.command("quotes")
def bench_quotes(
    n: Annotated[int, typer.Option("--n", help="number of quote requests")] = 50,
    seed: Annotated[int, typer.Option(help="which drafts")] = 7,
) -> None:
    """Seed the demo market into a temporary SQLite database, POST N varied order
    drafts to /api/v1/quotes and print median and p95 latency."""
    import os
    import random
    import statistics
    import tempfile
    from pathlib import Path

    from fastapi.testclient import TestClient
    from sqlmodel import Session, col, select

    from app import db
    from app.demo.seed import seed_demo
    from app.migrations import upgrade
    from app.security import create_access_token
    from models import Operation, Order, Role, User, utcnow

    tmp = Path(tempfile.mkdtemp(prefix="capshare-bench-"))
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.db'}"
    get_settings.cache_clear()
    db.get_engine.cache_clear()
    upgrade()
    with Session(db.get_engine()) as session:
        seed_demo(session)
        buyers = [u for u in session.exec(select(User)).all() if u.has_role(Role.buyer)]
        orders = session.exec(select(Order)).all()
        ops: dict[int, list[Operation]] = {}
        for op in session.exec(select(Operation).order_by(col(Operation.seq))).all():
            ops.setdefault(op.order_id, []).append(op)
    rng = random.Random(seed)
    from app.main import create_app

    client = TestClient(create_app())
    settings = get_settings()
    latencies: list[float] = []
    with_options = 0
    now = utcnow()
    for _ in range(n):
        template = rng.choice(orders)
        buyer = rng.choice(buyers)
        release = now + __import__("datetime").timedelta(hours=rng.randint(1, 72))
        due = release + __import__("datetime").timedelta(days=rng.randint(2, 10))
        body = {
            "title": "bench draft",
            "release_at": release.isoformat(),
            "due_at": due.isoformat(),
            "budget_fen": template.budget_fen,
            "max_distance_km": template.max_distance_km,
            "operations": [
                {
                    "process_key": o.process_key,
                    "material_key": o.material_key,
                    "quantity": o.quantity,
                    "part_x_mm": o.part_x_mm,
                    "part_y_mm": o.part_y_mm,
                    "part_z_mm": o.part_z_mm,
                    "tolerance_mm": o.tolerance_mm,
                    "std_duration_min": o.std_duration_min,
                }
                for o in ops[template.id]  # type: ignore[index]
            ],
        }
        assert buyer.id is not None
        token, _ = create_access_token(settings=settings, user_id=buyer.id)
        started = time.perf_counter()
        r = client.post("/api/v1/quotes", json=body, headers={"Authorization": f"Bearer {token}"})
        latencies.append((time.perf_counter() - started) * 1000)
        if r.status_code != 200:
            typer.echo(f"  {r.status_code}: {r.text[:200]}")
            continue
        with_options += bool(r.json()["options"])
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, int(round(0.95 * len(latencies))) - 1)]
    typer.echo(
        f"{n} quotes on the demo market: median {statistics.median(latencies):.0f} ms, "
        f"p95 {p95:.0f} ms, max {latencies[-1]:.0f} ms; {with_options} with options"
    )


@bench_app.command("dashboard")
def bench_dashboard(
    machines: Annotated[
        list[int], typer.Option(help="machines in a generated market (repeat for several)")
    ] = [10_000],  # noqa: B006 (typer reads the default, never mutates it)
    bookings: Annotated[
        int | None, typer.Option(help="bookings per market (default 20 per machine)")
    ] = None,
    repeat: Annotated[int, typer.Option(help="timed runs")] = 5,
    url: Annotated[
        str | None, typer.Option(help="database URL (default: a temporary SQLite file)")
    ] = None,
    fresh: Annotated[
        bool, typer.Option(help="PostgreSQL: drop every table of the database first")
    ] = False,
) -> None:
    """Time the operator dashboard (the service and the page) over large markets, from the
    raw rows and from the rolled-up history, side by side (medians)."""
    from app.bench.dashboard import run

    if url is not None and len(machines) > 1 and not fresh:
        raise typer.BadParameter(
            "several markets in one database need --fresh", param_hint="--fresh"
        )
    results = []
    for n in machines:
        results.append(run(url=url, machines=n, bookings=bookings, repeat=repeat, fresh=fresh))
        typer.echo(f"{n} machines: {results[-1]}")
    for key in results[0]:
        typer.echo(f"{key:>20}: " + "  ".join(f"{str(r[key]):>16}" for r in results))


@bench_app.command(
    "scale", context_settings={"allow_extra_args": True, "ignore_unknown_options": False}
)
def bench_scale(
    ctx: typer.Context,
    machines: Annotated[
        list[int], typer.Option("--machines", help="market sizes (machines), one run each")
    ] = [500, 5000, 20000],  # noqa: B006
    repeats: Annotated[int, typer.Option(min=1, help="timed requests per read path")] = 30,
    quotes: Annotated[int, typer.Option(min=1, help="timed quote requests")] = 30,
    time_limit: Annotated[
        float,
        typer.Option("--time-limit", "-t", min=1, max=120, help="match runs' solver limit, s"),
    ] = 30.0,
    cluster_time_limit: Annotated[
        float | None, typer.Option(min=1, max=120, help="the cluster run's (default: --time-limit)")
    ] = None,
    database_url: Annotated[
        str, typer.Option(help="a PostgreSQL server; capshare_scale_<n> databases are made on it")
    ] = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    database_prefix: Annotated[
        str, typer.Option(help="a size's database is <prefix>_<machines>")
    ] = "capshare_scale",
    keep: Annotated[
        bool, typer.Option("--keep", help="reuse a database already seeded, and keep it after")
    ] = False,
    log_dir: Annotated[Path, typer.Option(help="the servers' logs")] = Path("var/bench-scale"),
    run_timeout: Annotated[
        float, typer.Option(min=10, help="give up on a match run after, s")
    ] = 1800,
    as_json: AsJson = False,
) -> None:
    """Seed markets of each size with the demo generator, serve each with one real
    `capshare serve`, and print every figure of issue #12's table beside a bare endpoint,
    with the growth from size to size."""
    from app.bench.scale import ScaleError, ScaleOptions, run_scale, table

    try:  # `--machines 500 5000 20000`: the values after the first come as extra arguments
        sizes = [*machines, *(int(a.replace(",", "").replace("_", "")) for a in ctx.args)]
    except ValueError as exc:
        raise typer.BadParameter(
            f"not a number of machines: {exc}", param_hint="--machines"
        ) from exc
    options = ScaleOptions(
        sizes=sizes, database_url=database_url, repeats=repeats, quotes=quotes,
        time_limit_s=time_limit, cluster_time_limit_s=cluster_time_limit, keep=keep,
        log_dir=log_dir, run_timeout_s=run_timeout, database_prefix=database_prefix,
    )  # fmt: skip
    try:
        result = run_scale(options, echo=lambda m: typer.echo(m, err=True))
    except ScaleError as exc:
        typer.echo(f"bench scale: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(result, indent=1, default=str) if as_json else table(result))
