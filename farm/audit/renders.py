"""Render state changes in the audit log, written in batches off the worker's hot path.

Writing an audit event costs a lock that serialises every writer of the log, a read of the
chain's head and an insert (bench/audit_cost.py measures it). Doing that inside each render's
finish would serialise the finishing transactions of every worker on that lock. Instead the
render row itself is the record, and `seal_render_events` later writes one event per render
that became held, succeeded, failed or cancelled (`render.held`, `render.succeeded`, ...), many
under one lock, and marks the row (`renders.audited_state`) so no render is written twice.

It runs on every worker's heartbeat thread (every `heartbeat_seconds`, on the embedded farm too),
in the reaper's loop, and before `farm audit export` and the auditor reports, so the log they read
is complete. Holds and releases are admin actions (farm.models.admin): they write their
`render.held`/`render.released` events at once and set `audited_state` themselves; this sweep
writes the rest, a held render's end included (cancelled while held, say).
"""

from __future__ import annotations

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from farm.audit.log import lock_audit_log, record_events
from farm.db.models import FINISHED_RENDER_STATES, Asset, RegisteredModel, Render
from farm.db.session import transaction

SEALED_STATES = ("held", *FINISHED_RENDER_STATES)
SEAL_BATCH = 500
ERROR_CHARS = 500


def _pending():
    """Renders whose current state is not in the log yet (served by ix_renders_audited_state_state)."""
    return or_(and_(Render.audited_state.is_(None), Render.state.in_(SEALED_STATES)),
               and_(Render.audited_state == "held", Render.state.in_(FINISHED_RENDER_STATES)))


def _event(row) -> dict:
    after = {"job_id": row.job_id, "state": row.state, "kind": row.kind, "model": row.model_name,
             "model_sha256": row.model_sha256, "attempts": row.attempts,
             "finished_at": row.finished_at.isoformat() if row.finished_at else None}
    if row.state == "held":
        after["hold_reason"] = row.hold_reason
    if row.state == "succeeded":
        after.update(worker=row.rendered_by, asset_id=row.asset_id, asset_sha256=row.asset_sha256)
    if row.state in ("failed", "cancelled") and row.error:
        after["error"] = row.error[:ERROR_CHARS]
    return dict(action=f"render.{row.state}", entity_type="render", entity_id=row.id, after=after)


def seal_batch(session: Session, limit: int = SEAL_BATCH) -> int:
    """Write up to `limit` pending render events in the caller's transaction; return how many."""
    lock_audit_log(session)  # first: two sealers never pick the same renders
    rows = session.execute(
        select(Render.id, Render.job_id, Render.state, Render.kind, Render.attempts, Render.finished_at,
               Render.error, Render.hold_reason, Render.rendered_by, RegisteredModel.name.label("model_name"),
               RegisteredModel.sha256.label("model_sha256"), Asset.id.label("asset_id"),
               Asset.sha256.label("asset_sha256"))
        .join(RegisteredModel, RegisteredModel.id == Render.model_id)
        .outerjoin(Asset, Asset.render_id == Render.id)
        .where(_pending()).order_by(Render.id).limit(limit)
    ).all()
    if not rows:
        return 0
    record_events(session, [_event(row) for row in rows])
    by_state: dict[str, list[int]] = {}
    for row in rows:
        by_state.setdefault(row.state, []).append(row.id)
    for state, ids in by_state.items():
        # Only if the state is still the one written; a render that moved on meanwhile is seen again.
        session.execute(update(Render).where(Render.id.in_(ids), Render.state == state)
                        .values(audited_state=state).execution_options(synchronize_session=False))
    return len(rows)


def seal_render_events(session_factory: sessionmaker[Session], *, batch: int = SEAL_BATCH,
                       max_batches: int | None = None) -> int:
    """Write every pending render event (in transactions of `batch`); return how many were written.

    A first, unlocked look at the index makes the common case (nothing pending) one cheap query."""
    with transaction(session_factory) as session:
        if not session.scalar(select(exists().where(_pending()))):
            return 0
    written = 0
    batches = 0
    while max_batches is None or batches < max_batches:
        with transaction(session_factory) as session:
            count = seal_batch(session, batch)
        written += count
        batches += 1
        if count < batch:
            break
    return written
