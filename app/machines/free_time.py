"""A machine's free time: its offered windows, merged, minus every booking that holds
it. The one "offered minus held" algorithm: the lease page's free slots, the match
run's and the quotes' machine capacity all come from :func:`free_spans`."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from sqlmodel import Session, col, select

from models import AvailabilityWindow, Booking
from models.base import as_utc
from models.booking import holding

Span = tuple[dt.datetime, dt.datetime]


def merge(spans: Iterable[Span]) -> list[Span]:
    """Sorted half-open spans with overlapping or touching ones merged."""
    out: list[Span] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def subtract(free: Sequence[Span], blocks: Iterable[Span]) -> list[Span]:
    """Sorted disjoint spans ``free`` minus ``blocks`` (half-open)."""
    out: list[Span] = []
    busy = merge(blocks)
    i = 0
    for s, e in free:
        cursor = s
        while i < len(busy) and busy[i][1] <= cursor:
            i += 1
        j = i
        while j < len(busy) and busy[j][0] < e:
            b0, b1 = busy[j]
            if b0 > cursor:
                out.append((cursor, b0))
            cursor = max(cursor, b1)
            j += 1
        if cursor < e:
            out.append((cursor, e))
    return out


def free_spans(
    session: Session,
    machine_ids: Sequence[int],
    start: dt.datetime,
    end: dt.datetime,
    *,
    ignore_booking_ids: Iterable[int] = (),
    extra_blocks: Mapping[int, Sequence[Span]] | None = None,
) -> dict[int, list[Span]]:
    """Per machine, its free time within [start, end): offered, merged, clipped, minus
    the active bookings not in ``ignore_booking_ids`` and any ``extra_blocks``."""
    if not machine_ids:
        return {}
    ids = list(machine_ids)
    start, end = as_utc(start), as_utc(end)
    offered: dict[int, list[Span]] = defaultdict(list)
    for machine_id, w_start, w_end in session.exec(
        select(
            AvailabilityWindow.machine_id, AvailabilityWindow.start_at, AvailabilityWindow.end_at
        ).where(
            col(AvailabilityWindow.machine_id).in_(ids),
            col(AvailabilityWindow.start_at) < end,
            col(AvailabilityWindow.end_at) > start,
        )
    ).all():
        offered[machine_id].append((as_utc(w_start), as_utc(w_end)))
    ignore = set(ignore_booking_ids)
    blocks: dict[int, list[Span]] = defaultdict(list)
    for booking_id, machine_id, b_start, b_end in session.exec(
        select(Booking.id, Booking.machine_id, Booking.start_at, Booking.end_at).where(
            col(Booking.machine_id).in_(ids), holding(start, end)
        )
    ).all():
        if booking_id not in ignore:
            blocks[machine_id].append((as_utc(b_start), as_utc(b_end)))
    for machine_id, extra in (extra_blocks or {}).items():
        blocks[machine_id].extend(extra)
    result: dict[int, list[Span]] = {}
    for m in ids:
        clipped = [(max(s, start), min(e, end)) for s, e in merge(offered.get(m, []))]
        result[m] = subtract([(s, e) for s, e in clipped if s < e], blocks.get(m, []))
    return result
