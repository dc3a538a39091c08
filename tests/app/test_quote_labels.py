"""A quote's labels are true of the options offered, whichever solve found them."""

from __future__ import annotations

import datetime as dt

from app.orders.quotes import _label
from models.quote import QuoteOption

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def _option(total: int, hours: int, km: float) -> QuoteOption:
    return QuoteOption(
        labels=["whatever its solve was"], completion_at=T0 + dt.timedelta(hours=hours),
        delivery_at=T0 + dt.timedelta(hours=hours + 1), processing_fen=total, transport_fen=0,
        total_fen=total, currency="CNY", max_distance_km=km, steps=[],
    )  # fmt: skip


def test_each_label_goes_to_the_option_best_by_it() -> None:
    cost_solve, makespan_solve, near_solve = (
        _option(900, 10, 50),
        _option(400, 5, 80),
        _option(700, 20, 3),
    )
    options = [cost_solve, makespan_solve, near_solve]
    _label(options)
    # the makespan solve found the cheapest plan too: it carries both labels
    assert [o.labels for o in options] == [[], ["cheapest", "earliest"], ["nearest"]]


def test_ties_go_to_the_first_found_and_one_option_can_be_all_three() -> None:
    first, second = _option(500, 5, 5), _option(500, 5, 5)
    options = [first, second]
    _label(options)
    assert (first.labels, second.labels) == (["cheapest", "earliest", "nearest"], [])
