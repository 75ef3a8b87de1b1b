"""The append-only audit log: one event per state change, each chained to the one before.

Each event stores the hash of the previous event and a hash of its own content, so an edit or
a deletion anywhere breaks the chain and `verify_chain` finds it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from farm.db.base import utcnow
from farm.db.models import AuditEvent, User

GENESIS_HASH = "0" * 64
# Postgres advisory lock key that serialises appends (SQLite serialises all writers already).
_APPEND_LOCK_KEY = 0x6661726D  # "farm"


def _event_hash(event: AuditEvent) -> str:
    content = {
        "prev_hash": event.prev_hash,
        "occurred_at": event.occurred_at.isoformat(),
        "actor_id": event.actor_id,
        "actor_name": event.actor_name,
        "action": event.action,
        "entity_type": event.entity_type,
        "entity_id": event.entity_id,
        "before": event.before,
        "after": event.after,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def record_event(
    session: Session,
    *,
    action: str,
    entity_type: str,
    entity_id: object = None,
    actor: User | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event in the caller's transaction (it commits or rolls back with the change)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _APPEND_LOCK_KEY})
    last_hash = session.scalar(select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1))
    event = AuditEvent(
        occurred_at=utcnow().replace(microsecond=0),
        actor_id=actor.id if actor else None,
        actor_name=actor.name if actor else "system",
        action=action,
        entity_type=entity_type,
        entity_id=None if entity_id is None else str(entity_id),
        before=before,
        after=after,
        prev_hash=last_hash or GENESIS_HASH,
    )
    event.hash = _event_hash(event)
    session.add(event)
    session.flush()
    return event


@dataclass(frozen=True)
class ChainProblem:
    event_id: int
    problem: str


def verify_chain(session: Session) -> list[ChainProblem]:
    """Walk the log in order; report every event whose links or content do not check out."""
    problems: list[ChainProblem] = []
    expected_prev = GENESIS_HASH
    for event in session.scalars(select(AuditEvent).order_by(AuditEvent.id)):
        if event.prev_hash != expected_prev:
            problems.append(ChainProblem(event.id, "does not follow the event before it"))
        if _event_hash(event) != event.hash:
            problems.append(ChainProblem(event.id, "content does not match its hash"))
        expected_prev = event.hash
    return problems
