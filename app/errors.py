"""The domain error tree. Each error carries the HTTP status it maps to and, where
one field is to blame, that field's name.

    MarketplaceError (400)
    ├── NotFound (404)
    │   ├── OrganizationNotFound, ClusterNotFound, MachineNotFound
    │   ├── OrderNotFound, BookingNotFound, AttachmentNotFound
    ├── NotAuthenticated (401)
    ├── PermissionDenied (403)
    ├── InvalidInput (422)          a value is wrong; ``field`` names it
    │   ├── UnknownProcess, UnknownMaterial
    │   ├── AttachmentRejected (413 / 415)
    │   └── RowsRejected (422 / 409) a bulk change refused, with a problem per row
    ├── Conflict (409)
    │   ├── AlreadyExists
    │   ├── WindowOverlap
    │   ├── CapacityUnavailable     the slot collides with another booking
    │   ├── InvalidTransition       the state machine forbids it
    │   └── LifecycleRuleBroken     a rule of the order lifecycle forbids it now
    └── ServiceUnavailable (503)  no database connection in time; retry after a moment
"""

from __future__ import annotations


class MarketplaceError(Exception):
    status_code = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(MarketplaceError):
    status_code = 404


class OrganizationNotFound(NotFound):
    pass


class ClusterNotFound(NotFound):
    pass


class MachineNotFound(NotFound):
    pass


class OrderNotFound(NotFound):
    pass


class BookingNotFound(NotFound):
    pass


class AttachmentNotFound(NotFound):
    pass


class NotAuthenticated(MarketplaceError):
    status_code = 401


class PermissionDenied(MarketplaceError):
    status_code = 403


class InvalidInput(MarketplaceError):
    status_code = 422


class UnknownProcess(InvalidInput):
    pass


class UnknownMaterial(InvalidInput):
    pass


class AttachmentRejected(InvalidInput):
    def __init__(self, message: str, *, field: str | None = "file", status_code: int = 415) -> None:
        super().__init__(message, field=field)
        self.status_code = status_code


class RowsRejected(InvalidInput):
    """A bulk change refused as a whole. ``problems`` holds (row index, field, message,
    status) for every bad row; ``field`` names the first as ``<rows>[i].<field>``. The
    status is 409 when every problem is a conflict with existing data, else 422."""

    def __init__(self, problems: list[tuple[int, str, str, int]], *, rows: str) -> None:
        first = problems[0]
        shown = "; ".join(f"{rows}[{i}].{f}: {m}" for i, f, m, _ in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"{len(problems)} rows refused, nothing written: {shown}{more}",
                         field=f"{rows}[{first[0]}].{first[1]}")  # fmt: skip
        self.problems = problems
        self.status_code = 409 if all(p[3] == 409 for p in problems) else 422


class Conflict(MarketplaceError):
    status_code = 409


class AlreadyExists(Conflict):
    pass


class WindowOverlap(Conflict):
    pass


class CapacityUnavailable(Conflict):
    pass


class InvalidTransition(Conflict):
    pass


class LifecycleRuleBroken(Conflict):
    """A move the state machine allows but a lifecycle rule forbids now (whole-order
    confirmation, early start, precedence); the message names the rule."""


class ServiceUnavailable(MarketplaceError):
    """The request could not get what it needs to run (a database connection) in time.
    Nothing was done; the response carries ``Retry-After``."""

    status_code = 503


def field_name(loc: tuple[object, ...] | list[object]) -> str | None:
    """("body", "operations", 1, "quantity") -> "operations[1].quantity"."""
    name = ""
    for part in loc:
        if part in ("body", "query", "path", "header", "form", "cookie") and not name:
            continue
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name or None
