"""API: review decisions, one asset at a time or approving many at once (all or none)."""

from __future__ import annotations

from dashboard.api.assets import REVIEW, review_json
from dashboard.api.blueprint import api, api_body
from dashboard.auth import current_user
from dashboard.helpers import db_transaction
from farm.review.service import (APPROVAL_STATE_AFTER, DECISIONS, MAX_BULK_ASSETS, MAX_COMMENT_LENGTH,
                                 bulk_approve, decide)

COMMENT = {"type": "string", "maxLength": MAX_COMMENT_LENGTH}

DECISION_REQUEST = api.schema("DecisionRequest", {
    "type": "object",
    "required": ["decision"],
    "additionalProperties": False,
    "properties": {
        "decision": {"type": "string", "enum": list(DECISIONS)},
        "comment": {**COMMENT, "description": "Required to request changes."},
    },
})

BULK_APPROVE_REQUEST = api.schema("BulkApproveRequest", {
    "type": "object",
    "required": ["asset_ids"],
    "additionalProperties": False,
    "properties": {
        "asset_ids": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1,
                      "maxItems": MAX_BULK_ASSETS},
        "comment": COMMENT,
    },
})

BULK_APPROVE_RESULT = api.schema("BulkApproveResult", {
    "type": "object",
    "required": ["approved", "reviews"],
    "properties": {
        "approved": {"type": "integer"},
        "reviews": {"type": "array", "items": REVIEW},
    },
})


@api.operation("POST", "/assets/<int:asset_id>/reviews", summary="Approve, reject or request changes",
               permission="review.decide", request=DECISION_REQUEST, response=REVIEW, status=201,
               tags=("reviews",), description="Recorded with the token's user as reviewer and the time; the "
                                              "asset's approval state becomes the decision's.")
def review_asset(asset_id: int):
    body = api_body()
    with db_transaction() as db:
        record = decide(db, current_user(), asset_id, body["decision"], body.get("comment", ""))
    return review_json(record, APPROVAL_STATE_AFTER[record.decision]), 201


@api.operation("POST", "/reviews/bulk-approve", summary="Approve many assets: all of them or none",
               permission="review.decide", request=BULK_APPROVE_REQUEST, response=BULK_APPROVE_RESULT,
               status=201, tags=("reviews",),
               description="An id that does not exist or is hidden from the caller refuses the whole request "
                           "(400, field asset_ids) and nothing is approved.")
def bulk_approve_assets():
    body = api_body()
    with db_transaction() as db:
        records = bulk_approve(db, current_user(), body["asset_ids"], body.get("comment", ""))
    return {"approved": len(records), "reviews": [review_json(r, "approved") for r in records]}, 201
