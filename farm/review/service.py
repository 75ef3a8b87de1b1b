"""Reviewers' decisions: approve, reject, request changes; one at a time or approve in bulk.

Every decision is a Review row (who, when, what, why) and sets the asset's approval state; the
latest decision wins. Each change is audited with the state before and after.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from farm.audit.log import record_event
from farm.campaigns.access import visible_campaigns
from farm.db.base import utcnow
from farm.db.models import Asset, Review, User
from farm.errors import InvalidInput
from farm.assets.lookup import unique_ids, visible_asset

# decision -> the asset's approval state after it
APPROVAL_STATE_AFTER = {"approve": "approved", "reject": "rejected", "request_changes": "changes_requested"}
DECISIONS = tuple(APPROVAL_STATE_AFTER)
MAX_COMMENT_LENGTH = 2000
MAX_BULK_ASSETS = 500
# Roles whose members decide on assets (the dashboard and the API check this before calling).
REVIEWER_ROLES = frozenset({"admin", "campaign_manager", "reviewer"})


@dataclass(frozen=True)
class ReviewRecord:
    id: int
    asset_id: int
    reviewer_id: int
    reviewer_name: str
    decision: str
    comment: str
    created_at: datetime


def _comment(decision: str, comment: object) -> str:
    if comment is None:
        comment = ""
    if not isinstance(comment, str):
        raise InvalidInput("comment", "must be text")
    comment = comment.strip()
    if len(comment) > MAX_COMMENT_LENGTH:
        raise InvalidInput("comment", f"is {len(comment)} characters long; the limit is {MAX_COMMENT_LENGTH}")
    if decision == "request_changes" and not comment:
        raise InvalidInput("comment", "say what should change: a comment is required to request changes")
    return comment


def _decision(decision: object) -> str:
    if decision not in APPROVAL_STATE_AFTER:
        raise InvalidInput("decision", f"must be one of {', '.join(DECISIONS)}, got {decision!r}")
    return decision


def _record(session: Session, user: User, asset: Asset, decision: str, comment: str, **audit_extra) -> ReviewRecord:
    before = asset.approval_state
    review = Review(asset_id=asset.id, reviewer_id=user.id, decision=decision, comment=comment, created_at=utcnow())
    session.add(review)
    asset.approval_state = APPROVAL_STATE_AFTER[decision]
    # A decision is the re-review a model suspension or license change asked for (farm.models.admin).
    rereview = (asset.rereview_reason or "") if asset.needs_rereview else None
    if rereview is not None:
        asset.needs_rereview, asset.rereview_reason = False, None
    session.flush()
    record_event(session, action="asset.reviewed", entity_type="asset", entity_id=asset.id, actor=user,
                 before={"approval_state": before, **({"needs_rereview": rereview} if rereview is not None else {})},
                 after={"approval_state": asset.approval_state, "decision": decision, "comment": comment,
                        "review_id": review.id, **audit_extra})
    return ReviewRecord(id=review.id, asset_id=asset.id, reviewer_id=user.id, reviewer_name=user.name,
                        decision=decision, comment=comment, created_at=review.created_at)


def decide(session: Session, user: User, asset_id: int, decision: str, comment: str | None = "") -> ReviewRecord:
    """Record `user`'s decision on an asset and set its approval state, in the caller's transaction.

    decision: approve, reject or request_changes (which needs a comment). The comment is trimmed
    and at most MAX_COMMENT_LENGTH characters. NotFound for an asset the user cannot see.
    """
    decision = _decision(decision)
    comment = _comment(decision, comment)
    asset = visible_asset(session, user, asset_id, for_update=True)
    return _record(session, user, asset, decision, comment)


def bulk_approve(session: Session, user: User, asset_ids: Iterable[int], comment: str | None = "") -> list[ReviewRecord]:
    """Approve every one of these assets, or none: an id that is missing or hidden from `user`
    raises InvalidInput("asset_ids", ...) before anything is written. One Review each, in the
    order given (an id given twice counts once)."""
    if isinstance(asset_ids, (str, bytes)):
        raise InvalidInput("asset_ids", "must be a list of asset ids")
    try:
        ids = unique_ids(asset_ids, "asset_ids")
    except TypeError:
        raise InvalidInput("asset_ids", "must be a list of asset ids") from None
    if not ids:
        raise InvalidInput("asset_ids", "choose at least one asset")
    if len(ids) > MAX_BULK_ASSETS:
        raise InvalidInput("asset_ids", f"at most {MAX_BULK_ASSETS} assets at once, got {len(ids)}")
    comment = _comment("approve", comment)
    found = {asset.id: asset for asset in session.scalars(
        select(Asset).where(Asset.id.in_(ids), visible_campaigns(user, Asset.campaign_id))
        .order_by(Asset.id).with_for_update(of=Asset))}
    missing = [i for i in ids if i not in found]
    if missing:
        raise InvalidInput("asset_ids", f"no asset {', '.join(map(str, missing))}; nothing was approved")
    return [_record(session, user, found[i], "approve", comment, bulk=len(ids)) for i in ids]


def review_history(session: Session, user: User, asset_id: int) -> list[ReviewRecord]:
    """Every decision on the asset, oldest first, with the reviewer's name."""
    asset = visible_asset(session, user, asset_id)
    return reviews_of(session, [asset.id])[asset.id]


def reviews_of(session: Session, asset_ids: list[int]) -> dict[int, list[ReviewRecord]]:
    """Decisions on these (already visible) assets, oldest first, in one query."""
    history: dict[int, list[ReviewRecord]] = {i: [] for i in asset_ids}
    if not asset_ids:
        return history
    rows = session.execute(
        select(Review, User.name).join(User, Review.reviewer_id == User.id)
        .where(Review.asset_id.in_(asset_ids)).order_by(Review.asset_id, Review.created_at, Review.id)
    ).all()
    for review, reviewer_name in rows:
        history[review.asset_id].append(ReviewRecord(
            id=review.id, asset_id=review.asset_id, reviewer_id=review.reviewer_id, reviewer_name=reviewer_name,
            decision=review.decision, comment=review.comment, created_at=review.created_at))
    return history
