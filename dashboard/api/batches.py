"""API: batch jobs. POST /jobs/plan counts a batch's renders and estimates its GPU time without
writing anything; POST /jobs submits it. A submission with a `submission_key` is idempotent: sent
again (a retry after a timeout, a double click), it answers the job the first one made, with
`created: false`, and makes no second job."""

from __future__ import annotations

import re

from dashboard.api.blueprint import api, api_body
from dashboard.auth import current_user
from dashboard.helpers import current_farm, db_transaction
from farm.errors import InvalidInput
from farm.jobs import batch
from farm.jobs.batch import BatchRequest, rows_from_table
from farm.queue.routing import MAX_PRIORITY
from farm.render.params import MAX_SEED

TAGS = ("jobs",)
_ROW_ERROR = re.compile(r"rows\[(\d+)\](.*)")

BATCH_REQUEST = api.schema("BatchRequest", {
    "type": "object",
    "required": ["campaign_id", "template_version_id", "rows"],
    "additionalProperties": False,
    "properties": {
        "campaign_id": {"type": "integer"},
        "template_version_id": {"type": "integer", "description": "A version of one of the campaign's templates."},
        "rows": {"type": "array", "items": {"type": "object", "additionalProperties": {"type": ["string", "number", "null"]}},
                 "description": "Variable rows: the version's declared variables as keys. Blank rows are skipped."},
        "seeds": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": MAX_SEED},
                  "description": "Explicit seeds; or give seed_count."},
        "seed_count": {"type": "integer", "minimum": 1, "description": "Draw this many random seeds (kept with the job)."},
        "formats": {"type": ["array", "null"], "items": {"type": "string"},
                    "description": "Channel format names; absent or null: the campaign's; []: plain width x height."},
        "params": {"type": "object", "additionalProperties": False,
                   "description": "Overrides of the template version's defaults.",
                   "properties": {"model": {"type": "string"}, "sampler": {"type": "string"},
                                  "steps": {"type": "integer"}, "cfg_scale": {"type": "number"},
                                  "width": {"type": "integer"}, "height": {"type": "integer"},
                                  "loras": {"type": "array", "description": "LoRAs of the chain, checked by the "
                                            "license policy (a LoRA carries its base model's terms).",
                                            "items": {"type": "object", "required": ["name"],
                                                      "additionalProperties": False,
                                                      "properties": {"name": {"type": "string"},
                                                                     "weight": {"type": "number"}}}},
                                  "vae": {"type": "string", "description": "A registered VAE's name."}}},
        "priority": {"type": "integer", "minimum": 0, "maximum": MAX_PRIORITY},
        "name": {"type": ["string", "null"], "maxLength": 200},
        "submission_key": {"type": "string", "minLength": 1, "maxLength": 64,
                           "description": "Any unique text per submission; sending it again returns the same job."},
    },
})
BATCH_PLAN = api.schema("BatchPlan", {
    "type": "object",
    "required": ["renders", "rows", "seeds", "formats", "model", "params", "estimate"],
    "properties": {
        "renders": {"type": "integer"},
        "rows": {"type": "integer"},
        "seeds": {"type": "integer"},
        "formats": {"type": "array", "items": {
            "type": "object",
            "required": ["name", "label", "width", "height", "generation_width", "generation_height"],
            "properties": {
                "name": {"type": ["string", "null"]}, "label": {"type": ["string", "null"]},
                "width": {"type": "integer"}, "height": {"type": "integer"},
                "generation_width": {"type": "integer"}, "generation_height": {"type": "integer"},
            },
        }},
        "model": {"type": "string"},
        "params": {"type": "object"},
        "estimate": {
            "type": "object", "required": ["seconds", "seconds_per_step_per_megapixel", "source", "samples"],
            "properties": {
                "seconds": {"type": "number", "description": "GPU seconds for the whole batch."},
                "seconds_per_step_per_megapixel": {"type": "number"},
                "source": {"type": "string", "enum": ["history", "default"],
                           "description": "history: this farm's recent renders of the model; default: per architecture."},
                "samples": {"type": "integer"},
            },
        },
    },
})
SUBMITTED_BATCH = api.schema("SubmittedBatch", {
    "type": "object", "required": ["job_id", "renders", "created"],
    "properties": {
        "job_id": {"type": "integer"},
        "renders": {"type": "integer"},
        "created": {"type": "boolean", "description": "false: this submission_key had made the job already."},
    },
})


def batch_request(body: dict) -> tuple[BatchRequest, list[int]]:
    """The request with its rows normalised as the dashboard's table's are (values as text, blank rows
    skipped), and each kept row's index in the body, to name rows as the caller sent them."""
    with db_transaction() as db:
        rows = rows_from_table(db, current_farm().settings, current_user(), body["template_version_id"], body["rows"])
    return BatchRequest.from_dict({**body, "rows": rows.rows}), rows.sources


def _renamed(error: InvalidInput, sources: list[int]) -> InvalidInput:
    match = _ROW_ERROR.fullmatch(error.field)
    if match and int(match.group(1)) < len(sources):
        return InvalidInput(f"rows[{sources[int(match.group(1))]}]{match.group(2)}", error.message)
    return error


@api.operation("POST", "/jobs/plan", summary="Count a batch's renders and estimate its GPU time; writes nothing",
               permission="jobs.submit", request=BATCH_REQUEST, response=BATCH_PLAN, tags=TAGS,
               description="Checks the request exactly as POST /jobs will.")
def plan_batch():
    request, sources = batch_request(api_body())
    try:
        with db_transaction() as db:
            plan = batch.plan_batch(db, current_farm().settings, current_user(), request)
    except InvalidInput as error:
        raise _renamed(error, sources) from None
    return plan.to_dict()


@api.operation("POST", "/jobs", summary="Submit a batch job: template version x rows x seeds x channel formats",
               permission="jobs.submit", request=BATCH_REQUEST, response=SUBMITTED_BATCH, status=201, tags=TAGS,
               description="Writes the job and its renders in one transaction and queues them. With a "
                           "submission_key already used, nothing is written: the answer names the job it made, "
                           "with created=false.")
def submit_batch():
    request, sources = batch_request(api_body())
    try:
        submitted = batch.submit_batch(current_farm(), current_user(), request)
    except InvalidInput as error:
        raise _renamed(error, sources) from None
    return submitted.to_dict(), 201
