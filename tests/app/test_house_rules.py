"""The rules of the house that code review alone would not keep: every state machine
has exactly one writer (DESIGN.md rule 2), read off the source with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The demo seed is data loading, like a migration: it bulk-inserts a market's rows in
# their states in one transaction, and no command of the product runs through it.
LOADERS = ("app/demo/",)
SOURCES = sorted(
    p
    for top in ("app", "api", "frontend", "models")
    for p in (ROOT / top).rglob("*.py")
    if not p.relative_to(ROOT).as_posix().startswith(LOADERS)
)


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _trees() -> list[tuple[str, ast.Module]]:
    return [(_rel(p), ast.parse(p.read_text(encoding="utf-8"), str(p))) for p in SOURCES]


def _assigned_attributes(tree: ast.Module) -> list[tuple[ast.Attribute, ast.expr | None]]:
    """Every ``x.attr = value`` (plain, augmented, annotated) and ``setattr(x, "attr", v)``."""
    out: list[tuple[ast.Attribute, ast.expr | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            found = [n for target in node.targets for n in ast.walk(target)]
            out += [(n, node.value) for n in found if isinstance(n, ast.Attribute)]
        elif isinstance(node, ast.AugAssign | ast.AnnAssign) and isinstance(
            node.target, ast.Attribute
        ):
            out.append((node.target, node.value))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "setattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
        ):
            fake = ast.Attribute(value=node.args[0], attr=str(node.args[1].value))
            out.append((fake, node.args[2] if len(node.args) > 2 else None))
    return out


def _calls(tree: ast.Module, name: str) -> list[ast.Call]:
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name
    ]


def _mentions(node: ast.AST | None, names: set[str]) -> bool:
    return node is not None and any(
        isinstance(n, ast.Name) and n.id in names for n in ast.walk(node)
    )


BOOKING_WRITER = "app/bookings/service.py"
ORDER_WRITER = "app/orders/service.py"
EVENT_WRITER = "app/orders/timeline.py"


def test_the_sources_were_found() -> None:
    names = {_rel(p) for p in SOURCES}
    assert {BOOKING_WRITER, ORDER_WRITER, EVENT_WRITER} <= names


def test_booking_state_has_one_writer() -> None:
    """Only ``app/bookings/service.py`` assigns ``.state`` or builds a ``Booking``
    (``MachineStateSpan`` rows keep a reported state, which is not a state machine)."""
    offenders = []
    for path, tree in _trees():
        if path == BOOKING_WRITER:
            continue
        for target, _ in _assigned_attributes(tree):
            if target.attr == "state":
                offenders.append(f"{path}:{target.lineno} assigns .state")
        offenders += [f"{path}:{c.lineno} builds a Booking" for c in _calls(tree, "Booking")]
    assert offenders == []


def test_order_status_has_one_writer() -> None:
    """Only ``app/orders/service.py`` assigns an order's status: no other module assigns
    ``.status`` from an ``OrderStatus`` or on a name that says order, nor builds an
    ``Order`` with a status."""
    offenders = []
    for path, tree in _trees():
        if path == ORDER_WRITER:
            continue
        for target, value in _assigned_attributes(tree):
            if target.attr != "status":
                continue
            owner = ast.unparse(target.value).lower()
            if "order" in owner or _mentions(value, {"OrderStatus"}):
                offenders.append(f"{path}:{target.lineno} assigns {ast.unparse(target)}")
        for call in _calls(tree, "Order"):
            if any(k.arg == "status" for k in call.keywords):
                offenders.append(f"{path}:{call.lineno} builds an Order with a status")
    assert offenders == []


def test_order_events_have_one_writer() -> None:
    offenders = [
        f"{path}:{c.lineno}"
        for path, tree in _trees()
        if path != EVENT_WRITER
        for c in _calls(tree, "OrderEvent")
    ]
    assert offenders == []


@pytest.mark.parametrize(
    ("source", "caught"),
    [
        ("booking.state = BookingState.done\n", True),
        ("setattr(b, 'state', 'done')\n", True),
        ("run.status = MatchRunStatus.failed\n", False),
    ],
)
def test_the_checks_catch_what_they_should(source: str, caught: bool) -> None:
    """The finder itself: a stray writer is seen, a match run's status is not."""
    tree = ast.parse(source)
    attrs = {t.attr for t, _ in _assigned_attributes(tree)}
    assert ("state" in attrs) is caught
