"""Reading the audit log as auditors do in the dashboard: filtered pages of events (newest
first, keyset paging), one event, the actions and entity types to filter by, and a verification
summary of the chain.

Paging is by id, as the log is written: a page asks for events below the last id of the page
before (`before`), so page 300 costs what page 1 costs, and an event appended meanwhile never
shifts a page. The extra row fetched says whether there is a next page without counting.

The list of actions to filter by comes from the index on `action` one distinct value at a time
(a recursive query, so a log of millions of events costs one index probe per action, never a
scan). Entity types have no index: the ones the farm writes are listed here, and any other text
is accepted as a filter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Sequence

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from farm.audit.log import ChainProblem, chain_head, verify_chain
from farm.audit.reports import parse_date
from farm.db.models import AuditEvent
from farm.errors import InvalidInput, NotFound

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
FILTER_MAX_LENGTH = 200
# What the farm writes as entity_type (farm/ and dashboard/): offered as choices, not enforced.
ENTITY_TYPES = ("asset", "campaign", "farm", "job", "license", "model", "render", "template", "user", "worker")
PROBLEMS_SHOWN = 50


@dataclass(frozen=True)
class EventRecord:
    id: int
    occurred_at: datetime
    actor_id: int | None
    actor_name: str
    action: str
    entity_type: str
    entity_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, event: AuditEvent) -> "EventRecord":
        return cls(id=event.id, occurred_at=event.occurred_at, actor_id=event.actor_id, actor_name=event.actor_name,
                   action=event.action, entity_type=event.entity_type, entity_id=event.entity_id,
                   before=event.before, after=event.after, prev_hash=event.prev_hash, hash=event.hash)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EventFilters:
    """Every filter optional. `action` matches exactly, or every action under a prefix when it
    ends in `.*` (`model.*`); `actor` is an actor's name (the user's name, or `system`)."""

    since: date | None = None
    until: date | None = None
    action: str | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    actor: str | None = None

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> "EventFilters":
        """From form, query-string or JSON values (`from`, `to`, `action`, `entity_type`,
        `entity_id`, `actor`; empty means no filter); InvalidInput names the field."""
        since, until = parse_date(values.get("from"), "from"), parse_date(values.get("to"), "to")
        if since and until and until < since:
            raise InvalidInput("to", f"{until} is before the first day, {since}")
        return cls(since=since, until=until, **{name: _text(values.get(name), name)
                                                for name in ("action", "entity_type", "entity_id", "actor")})

    def active(self) -> dict[str, str]:
        """The filters given, as the query-string values that give them again."""
        values = {"from": self.since.isoformat() if self.since else None,
                  "to": self.until.isoformat() if self.until else None,
                  "action": self.action, "entity_type": self.entity_type, "entity_id": self.entity_id,
                  "actor": self.actor}
        return {name: value for name, value in values.items() if value}

    def conditions(self) -> list:
        conditions = []
        if self.since is not None:
            conditions.append(AuditEvent.occurred_at >= datetime.combine(self.since, time.min, timezone.utc))
        if self.until is not None:
            conditions.append(AuditEvent.occurred_at
                              < datetime.combine(self.until + timedelta(days=1), time.min, timezone.utc))
        if self.action is not None:
            if self.action.endswith(".*"):
                # '_' and '%' in the prefix mean themselves (escaped).
                conditions.append(AuditEvent.action.startswith(self.action[:-1], autoescape=True))
            else:
                conditions.append(AuditEvent.action == self.action)
        if self.entity_type is not None:
            conditions.append(AuditEvent.entity_type == self.entity_type)
        if self.entity_id is not None:
            conditions.append(AuditEvent.entity_id == self.entity_id)
        if self.actor is not None:
            conditions.append(func.lower(AuditEvent.actor_name) == self.actor.lower())
        return conditions


def _text(value: object, field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidInput(field, "must be text")
    value = value.strip()
    if len(value) > FILTER_MAX_LENGTH:
        raise InvalidInput(field, f"must be at most {FILTER_MAX_LENGTH} characters")
    if any(ord(c) < 32 for c in value):
        raise InvalidInput(field, "must not contain control characters")
    return value or None


def _page_args(before: object, limit: object) -> tuple[int | None, int]:
    if before in (None, ""):
        before = None
    else:
        if isinstance(before, str) and before.strip().isdigit():
            before = int(before.strip())
        if isinstance(before, bool) or not isinstance(before, int) or before < 1:
            raise InvalidInput("before", f"must be an event id (a positive whole number), got {before!r}")
    if isinstance(limit, str) and limit.strip().isdigit():
        limit = int(limit.strip())
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput("limit", f"must be between 1 and {MAX_PAGE_SIZE}, got {limit!r}")
    return before, limit


@dataclass(frozen=True)
class EventPage:
    events: list[EventRecord]
    # Pass as `before` for the next (older) page; None on the last page.
    next_before: int | None
    filters: EventFilters
    limit: int


def list_events(session: Session, filters: EventFilters | None = None, *, before: object = None,
                limit: object = DEFAULT_PAGE_SIZE) -> EventPage:
    """One page of events matching every filter, newest first (one query)."""
    filters = filters or EventFilters()
    before, limit = _page_args(before, limit)
    query = select(AuditEvent).where(*filters.conditions())
    if before is not None:
        query = query.where(AuditEvent.id < before)
    events = [EventRecord.of(event) for event in
              session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit + 1))]
    has_more = len(events) > limit
    events = events[:limit]
    return EventPage(events=events, next_before=events[-1].id if has_more else None, filters=filters, limit=limit)


def get_event(session: Session, event_id: int) -> EventRecord:
    event = session.get(AuditEvent, event_id)
    if event is None:
        raise NotFound("audit event", event_id)
    return EventRecord.of(event)


def known_actions(session: Session) -> list[str]:
    """Every action in the log, sorted: one probe of the action index per distinct action."""
    # An emulated loose index scan: each step asks the index for the next action after the last.
    step = text(
        "WITH RECURSIVE actions(action) AS ("
        " SELECT min(action) FROM audit_events"
        " UNION ALL"
        " SELECT (SELECT min(e.action) FROM audit_events e WHERE e.action > actions.action)"
        " FROM actions WHERE actions.action IS NOT NULL"
        ") SELECT action FROM actions WHERE action IS NOT NULL"
    )
    return list(session.scalars(step))


# -- verification ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verification:
    ok: bool
    events: int
    head: str | None                 # ID:HASH of the last event; keep it outside the database
    head_event_id: int | None
    problems: list[ChainProblem]     # the first PROBLEMS_SHOWN, oldest first
    problem_count: int
    anchors: list[str]

    @property
    def first_problem(self) -> ChainProblem | None:
        return self.problems[0] if self.problems else None

    def to_dict(self) -> dict[str, Any]:
        first = self.first_problem
        return {"ok": self.ok, "events": self.events, "head": self.head, "head_event_id": self.head_event_id,
                "first_bad_event": first.to_dict() if first else None, "problem_count": self.problem_count,
                "problems": [problem.to_dict() for problem in self.problems], "anchors": list(self.anchors)}


def parse_anchors(value: object) -> list[str]:
    """Anchors from a form or query (`ID:HASH`, several separated by spaces, commas or lines)."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        parts = value.replace(",", " ").split()
    elif isinstance(value, Sequence) and all(isinstance(item, str) for item in value):
        parts = [part for item in value for part in item.replace(",", " ").split()]
    else:
        raise InvalidInput("anchor", "must be ID:HASH text")
    if len(parts) > 100:
        raise InvalidInput("anchor", "at most 100 anchors")
    return parts


def verify_log(session: Session, anchors: Sequence[str] = ()) -> Verification:
    """Walk the whole chain (farm.audit.log.verify_chain) and summarise what it found."""
    problems = verify_chain(session, anchors)
    head = chain_head(session)
    return Verification(ok=not problems, events=head.events if head else 0, head=head.anchor() if head else None,
                        head_event_id=head.event_id if head else None, problems=problems[:PROBLEMS_SHOWN],
                        problem_count=len(problems), anchors=list(anchors))
