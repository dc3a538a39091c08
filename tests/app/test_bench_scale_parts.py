"""The scale benchmark's parts that need no server: refusals, the table, the growth."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from app.bench.scale import FIGURES, ScaleError, ScaleOptions, growth, run_scale, table
from app.cli.bench import bench_app


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (ScaleOptions(sizes=[100], database_url="mysql://x/y"), "PostgreSQL"),
        (ScaleOptions(sizes=[100], database_prefix="Bad-Name"), "--database-prefix"),
        (ScaleOptions(sizes=[5]), "at least 10"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(options: ScaleOptions, says: str) -> None:
    with pytest.raises(ScaleError, match=says):
        run_scale(options)


def test_a_size_that_is_not_a_number_is_refused_naming_the_option() -> None:
    out = CliRunner().invoke(bench_app, ["scale", "--machines", "500", "many"])
    assert out.exit_code == 2 and "--machines" in out.output


def test_the_table_shows_shares_growth_and_missing_figures() -> None:
    small = {"size": 500, "notes": ["a note"], "bare_ms": 2.0, "machines_ms": 20.0,
             "machines": 500, "run_status": "succeeded", "lease_during_run": True}  # fmt: skip
    large = {"size": 5000, "notes": [], "bare_ms": 2.0, "machines_ms": 80.0,
             "machines": 5000, "run_status": "failed: x", "lease_during_run": False}  # fmt: skip
    result = {"sizes": [small, large], "growth": growth([small, large])}
    assert result["growth"][0]["ratios"] == {"machines": 10.0, "bare_ms": 1.0, "machines_ms": 4.0}
    printed = table(result)
    assert "20.0 (10.0 %)" in printed and "80.0 (2.5 %)" in printed and "×4" in printed
    assert "500: a note" in printed and "failed: x" in printed
    quote_row = next(line for line in printed.splitlines() if line.startswith("quote p50"))
    assert quote_row.split()[-3:] == ["-", "-", "-"]
    assert len(printed.splitlines()) == len(FIGURES) + 4  # head, rule, legend, one note
