"""A booking's states and the one table of transitions between them.

    proposed ──accept──▶ confirmed ──start──▶ in_progress ──complete──▶ done
        │ decline / expire / cancel    │ cancel / release
        ▼ supersede                    ▼
    declined / expired / cancelled   cancelled

``by_owner`` and ``by_customer`` say who may ask for a move over the API; moves with
neither (expire, supersede, release) are the platform's own: the expiry job and
match runs make them. :func:`app.bookings.service.transition` is the only code that
moves a booking along this table.
"""

from __future__ import annotations

from dataclasses import dataclass

from models import BookingState

S = BookingState


@dataclass(frozen=True)
class Transition:
    name: str
    sources: frozenset[BookingState]
    target: BookingState
    by_owner: bool  # the machine's owner may ask for it
    by_customer: bool  # the buyer / renter may ask for it


TRANSITIONS: dict[str, Transition] = {
    t.name: t
    for t in (
        Transition("accept", frozenset({S.proposed}), S.confirmed, True, False),
        Transition("decline", frozenset({S.proposed}), S.declined, True, False),
        Transition("start", frozenset({S.confirmed}), S.in_progress, True, False),
        Transition("complete", frozenset({S.in_progress}), S.done, True, False),
        Transition("cancel", frozenset({S.proposed, S.confirmed}), S.cancelled, True, True),
        # the platform's own moves
        Transition("expire", frozenset({S.proposed}), S.expired, False, False),
        Transition("supersede", frozenset({S.proposed}), S.cancelled, False, False),
        Transition("release", frozenset({S.confirmed}), S.cancelled, False, False),
    )
}

# Actions a user may ask for (the API's and the web UI's verbs).
USER_ACTIONS = frozenset(name for name, t in TRANSITIONS.items() if t.by_owner or t.by_customer)

# A (operation, machine) pair that ended in one of these is never proposed again.
REFUSED_STATES: tuple[BookingState, ...] = (S.declined, S.expired)
