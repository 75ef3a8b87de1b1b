"""The append-only audit log: one event per state change, each chained to the one before.

Each event stores the hash of the previous event and a hash of its own content, so an edit, a
deletion, a reordering or an insertion anywhere breaks the chain and `verify_chain` finds it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from sqlalchemy import event as sa_event, func, insert, select, text
from sqlalchemy.orm import Session

from farm.db.base import utcnow
from farm.db.models import AuditEvent, User
from farm.errors import InvalidInput

GENESIS_HASH = "0" * 64
# Postgres advisory lock key that serialises appends (SQLite serialises all writers already).
_APPEND_LOCK_KEY = 0x6661726D  # "farm"
log = logging.getLogger(__name__)


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


def lock_audit_log(session: Session) -> None:
    """Hold the log's append lock until the caller's transaction ends (Postgres; SQLite serialises
    every writer anyway). Taking it again in the same transaction is free."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _APPEND_LOCK_KEY})


def _lock_and_last_hash(session: Session) -> str:
    lock_audit_log(session)
    return session.scalar(select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)) or GENESIS_HASH


def _new_event(prev_hash: str, *, action: str, entity_type: str, entity_id: object = None,
               actor_id: int | None = None, actor_name: str = "system", before: dict[str, Any] | None = None,
               after: dict[str, Any] | None = None) -> AuditEvent:
    event = AuditEvent(
        occurred_at=utcnow().replace(microsecond=0),
        actor_id=actor_id,
        actor_name=actor_name,
        action=action,
        entity_type=entity_type,
        entity_id=None if entity_id is None else str(entity_id),
        before=before,
        after=after,
        prev_hash=prev_hash,
    )
    event.hash = _event_hash(event)
    return event


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
    event = _new_event(_lock_and_last_hash(session), action=action, entity_type=entity_type, entity_id=entity_id,
                       actor_id=actor.id if actor else None, actor_name=actor.name if actor else "system",
                       before=before, after=after)
    session.add(event)
    session.flush()
    return event


_COLUMNS = ("occurred_at", "actor_id", "actor_name", "action", "entity_type", "entity_id", "before", "after",
            "prev_hash", "hash")


def record_events(session: Session, events: Sequence[Mapping[str, Any]]) -> int:
    """Append several events at once, in order, in the caller's transaction: one lock, one read
    of the chain's head and one multi-row INSERT (no ORM objects), however many events. Each
    mapping holds record_event's keyword arguments, with `actor_id`/`actor_name` in place of
    `actor`. Returns how many were appended."""
    if not events:
        return 0
    prev_hash = _lock_and_last_hash(session)
    rows = []
    for fields in events:
        event = _new_event(prev_hash, **fields)
        rows.append({column: getattr(event, column) for column in _COLUMNS})
        prev_hash = event.hash
    session.execute(insert(AuditEvent), rows)
    return len(rows)


def record_event_after_transaction(session: Session, *, action: str, entity_type: str, entity_id: object = None,
                                   actor: User | None = None, before: dict[str, Any] | None = None,
                                   after: dict[str, Any] | None = None) -> None:
    """Append the event in a transaction of its own once the caller's transaction has ended,
    committed or rolled back: for decisions that must be on record even though the change they
    refused is rolled back (a refused submission). Written at most once; a failure to write it is
    logged, never raised over the caller's own error."""
    engine = session.get_bind()
    fields = dict(action=action, entity_type=entity_type, entity_id=entity_id,
                  actor_id=actor.id if actor else None, actor_name=actor.name if actor else "system",
                  before=before, after=after)

    written = False

    def write(ended_session: Session, transaction) -> None:
        nonlocal written
        # Only the end of the caller's own (outermost) transaction counts, and only the first.
        # (The listener stays registered, idle: removing it while the event runs is not allowed.)
        if written or transaction.parent is not None:
            return
        written = True
        try:
            with Session(engine) as own, own.begin():
                record_events(own, [fields])
        except Exception:  # noqa: BLE001  (the caller's own outcome must stand)
            log.exception("could not write audit event %s for %s %s", action, entity_type, entity_id)

    if not session.in_transaction():
        with Session(engine) as own, own.begin():
            record_events(own, [fields])
        return
    sa_event.listen(session, "after_transaction_end", write)


@dataclass(frozen=True)
class ChainProblem:
    event_id: int
    problem: str

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "problem": self.problem}


@dataclass(frozen=True)
class ChainHead:
    """Where the chain ends: keep it outside the database and pass it to verify_chain later."""

    event_id: int
    hash: str
    events: int

    def anchor(self) -> str:
        return f"{self.event_id}:{self.hash}"


VERIFY_BATCH = 2000


def verify_chain(session: Session, anchors: Sequence[str] = ()) -> list[ChainProblem]:
    """Walk the log in id order; report every event whose link or content does not check out.

    An edited event fails its own hash; a deleted event leaves the next one not following the
    one before it; reordered events (ids swapped) break the links where they moved; an event
    inserted among others does not follow its predecessor (prev_hash is unique, so a forged event
    cannot claim the link the next event already holds). What a plain chain cannot show is a
    rewrite of everything from some event to the end, or a cut tail: an `anchor` (`ID:HASH`, the
    head printed by `farm audit verify` or an export earlier, kept outside the database) catches
    both, because that event must still be there with that hash.
    """
    problems: list[ChainProblem] = []
    expected_prev = GENESIS_HASH
    wanted: dict[int, str] = {}
    for anchor in anchors:
        event_id, _, anchor_hash = str(anchor).partition(":")
        if not event_id.strip().isdigit() or len(anchor_hash.strip()) != 64:
            raise InvalidInput("anchor", f"'{anchor}' is not ID:SHA256 (as `farm audit verify` prints the head)")
        wanted[int(event_id)] = anchor_hash.strip().lower()
    rows = session.execute(select(AuditEvent).order_by(AuditEvent.id).execution_options(yield_per=VERIFY_BATCH))
    for event in rows.scalars():
        if event.prev_hash != expected_prev:
            problems.append(ChainProblem(event.id, "does not follow the event before it (an event before it was "
                                                   "deleted or moved, or this one was inserted or moved)"))
        if _event_hash(event) != event.hash:
            problems.append(ChainProblem(event.id, "content does not match its hash (the event was edited)"))
        if event.id in wanted and wanted.pop(event.id) != event.hash:
            problems.append(ChainProblem(event.id, "hash differs from the anchor kept for it (the log was "
                                                   "rewritten from here or earlier)"))
        expected_prev = event.hash
        session.expunge(event)
    for event_id in sorted(wanted):
        problems.append(ChainProblem(event_id, "the anchored event is missing (deleted, or the log was cut)"))
    return sorted(problems, key=lambda p: p.event_id)


def chain_head(session: Session) -> ChainHead | None:
    last = session.execute(select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)).first()
    if last is None:
        return None
    return ChainHead(event_id=last.id, hash=last.hash, events=session.scalar(select(func.count(AuditEvent.id))))
