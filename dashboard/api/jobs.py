"""API: jobs and renders (read, page), and pause / resume / cancel."""

from __future__ import annotations

from typing import Any

from dashboard.api.blueprint import api, api_query
from dashboard.auth import current_user
from dashboard.helpers import current_farm, db_transaction
from farm.db.models import JOB_STATUSES, RENDER_STATES
from farm.jobs.commands import control_job
from farm.jobs import progress
from farm.jobs.progress import JOBS_PAGE_SIZE, MAX_PAGE_SIZE, RENDERS_PAGE_SIZE, JobDetail, JobSummary, RenderInfo

TAGS = ("jobs",)
_TIME = {"type": "string", "format": "date-time"}
_OPTIONAL_TIME = {"type": ["string", "null"], "format": "date-time"}
_COUNTS = {"type": "object", "required": list(RENDER_STATES),
           "properties": {state: {"type": "integer", "minimum": 0} for state in RENDER_STATES},
           "description": "Renders in each state."}
_SUMMARY_PROPERTIES = {
    "id": {"type": "integer"},
    "name": {"type": ["string", "null"]},
    "kind": {"type": "string"},
    "campaign_id": {"type": "integer"},
    "campaign": {"type": "string"},
    "model": {"type": "string"},
    "status": {"type": "string", "enum": list(JOB_STATUSES)},
    "priority": {"type": "integer", "minimum": 0, "maximum": 9},
    "submitted_by": {"type": ["string", "null"]},
    "created_at": _TIME,
    "finished_at": _OPTIONAL_TIME,
    "renders": {"type": "integer", "minimum": 0},
    "finished_renders": {"type": "integer", "minimum": 0,
                         "description": "Renders that succeeded, failed or were cancelled."},
    "percent": {"type": "number", "minimum": 0, "maximum": 100},
}
JOB_SUMMARY = api.schema("JobSummary", {
    "type": "object", "required": list(_SUMMARY_PROPERTIES), "properties": _SUMMARY_PROPERTIES,
})
JOB = api.schema("Job", {
    "type": "object",
    "required": [*_SUMMARY_PROPERTIES, "template", "model_sha256", "license", "formats", "params", "counts",
                 "done", "waiting_reason"],
    "properties": {
        **_SUMMARY_PROPERTIES,
        "percent": {"type": "number", "minimum": 0, "maximum": 100,
                    "description": "Finished renders count whole, running ones by their steps."},
        "template": {"type": "object", "required": ["id", "name", "version", "version_id"], "properties": {
            "id": {"type": "integer"}, "name": {"type": "string"}, "version": {"type": "integer"},
            "version_id": {"type": "integer"}}},
        "model_sha256": {"type": "string"},
        "license": {"type": "string"},
        "formats": {"type": "array", "items": {"type": "object", "required": ["name", "label", "width", "height"],
                                                "properties": {"name": {"type": "string"}, "label": {"type": "string"},
                                                               "width": {"type": ["integer", "null"]},
                                                               "height": {"type": ["integer", "null"]}}}},
        "params": {"type": "object"},
        "counts": _COUNTS,
        "done": {"type": "boolean", "description": "The job has ended and no render of it is still running."},
        "waiting_reason": {"type": ["string", "null"],
                           "description": "Why its queued renders are not being picked up, when known."},
    },
})
RENDER = api.schema("Render", {
    "type": "object",
    "required": ["id", "job_id", "index", "kind", "state", "progress_step", "progress_total", "percent",
                 "attempts", "worker", "error", "hold_reason", "prompt", "negative_prompt", "seed", "format", "width", "height",
                 "queued_at", "started_at", "finished_at", "asset_id"],
    "properties": {
        "id": {"type": "integer"}, "job_id": {"type": "integer"}, "index": {"type": "integer"},
        "kind": {"type": "string"}, "state": {"type": "string", "enum": list(RENDER_STATES)},
        "progress_step": {"type": "integer"}, "progress_total": {"type": "integer"},
        "percent": {"type": "number", "minimum": 0, "maximum": 100},
        "attempts": {"type": "integer"},
        "worker": {"type": ["string", "null"], "description": "The worker that made it, or the one holding it now."},
        "error": {"type": ["string", "null"]},
        "hold_reason": {"type": ["string", "null"], "description": "Why a held render waits."},
        "prompt": {"type": "string"}, "negative_prompt": {"type": "string"},
        "seed": {"type": ["integer", "null"]}, "format": {"type": ["string", "null"]},
        "width": {"type": ["integer", "null"], "description": "The delivered size (a channel format's exact size)."},
        "height": {"type": ["integer", "null"]},
        "queued_at": _OPTIONAL_TIME, "started_at": _OPTIONAL_TIME, "finished_at": _OPTIONAL_TIME,
        "asset_id": {"type": ["integer", "null"], "description": "The image it made, once it succeeded."},
    },
})
JOB_LIST = api.schema("JobList", {
    "type": "object", "required": ["jobs", "next_before"],
    "properties": {"jobs": {"type": "array", "items": JOB_SUMMARY},
                   "next_before": {"type": ["integer", "null"],
                                   "description": "Pass as `before` for the next (older) page; null on the last."}},
})
RENDER_LIST = api.schema("RenderList", {
    "type": "object", "required": ["renders", "next_after"],
    "properties": {"renders": {"type": "array", "items": RENDER},
                   "next_after": {"type": ["integer", "null"],
                                  "description": "Pass as `after` for the next page; null on the last."}},
})
_LIMIT = {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE}


def _time(value) -> str | None:
    return value.isoformat() if value is not None else None


def summary_json(job: JobSummary) -> dict[str, Any]:
    return {"id": job.id, "name": job.name, "kind": job.kind, "campaign_id": job.campaign_id, "campaign": job.campaign,
            "model": job.model, "status": job.status, "priority": job.priority, "submitted_by": job.submitted_by,
            "created_at": _time(job.created_at), "finished_at": _time(job.finished_at), "renders": job.renders,
            "finished_renders": job.finished_renders, "percent": job.percent}


def job_json(detail: JobDetail) -> dict[str, Any]:
    totals = detail.totals
    return {
        **summary_json(detail.summary), "percent": totals.percent,
        "template": {"id": detail.template_id, "name": detail.template_name, "version": detail.template_version,
                     "version_id": detail.template_version_id},
        "model_sha256": detail.model_sha256, "license": detail.license,
        "formats": [{"name": f.name, "label": f.label, "width": f.width, "height": f.height} for f in detail.formats],
        "params": detail.params, "counts": totals.counts, "done": totals.done,
        "waiting_reason": totals.waiting_reason,
    }


def render_json(render: RenderInfo) -> dict[str, Any]:
    return {"id": render.id, "job_id": render.job_id, "index": render.index, "kind": render.kind,
            "state": render.state, "progress_step": render.progress_step, "progress_total": render.progress_total,
            "percent": render.percent, "attempts": render.attempts, "worker": render.worker, "error": render.error,
            "hold_reason": render.hold_reason, "prompt": render.prompt, "negative_prompt": render.negative_prompt,
            "seed": render.seed,            "format": render.format, "width": render.width, "height": render.height,
            "queued_at": _time(render.queued_at), "started_at": _time(render.started_at),
            "finished_at": _time(render.finished_at), "asset_id": render.asset_id}


def _job_json(job_id: int) -> dict[str, Any]:
    settings = current_farm().settings
    with db_transaction() as db:
        return job_json(progress.job_detail(db, current_user(), job_id, heartbeat_seconds=settings.heartbeat_seconds,
                                   queue_routes=settings.queue_routes))


@api.operation("GET", "/jobs", summary="Jobs of the campaigns you can see, newest first",
               permission="campaigns.view", response=JOB_LIST, tags=TAGS,
               query={"campaign_id": {"type": "integer", "minimum": 1},
                      "status": {"type": "string", "enum": list(JOB_STATUSES)},
                      "before": {"type": "integer", "minimum": 1,
                                 "description": "A job id: the jobs older than it (the `next_before` of a page)."},
                      "limit": {**_LIMIT, "default": JOBS_PAGE_SIZE}})
def list_jobs():
    query = api_query()
    with db_transaction() as db:
        page = progress.list_jobs(db, current_user(), campaign_id=query.get("campaign_id"), status=query.get("status"),
                         before=query.get("before"), limit=query["limit"])
    return {"jobs": [summary_json(job) for job in page.jobs], "next_before": page.next_before}


@api.operation("GET", "/jobs/<int:job_id>", summary="One job, with its render counts by state and progress",
               permission="campaigns.view", response=JOB, tags=TAGS)
def get_job(job_id: int):
    return _job_json(job_id)


@api.operation("GET", "/jobs/<int:job_id>/renders", summary="A job's renders in index order",
               permission="campaigns.view", response=RENDER_LIST, tags=TAGS,
               query={"after": {"type": "integer", "minimum": -1,
                                "description": "A render index: the renders after it (the `next_after` of a page)."},
                      "state": {"type": "string", "enum": list(RENDER_STATES)},
                      "limit": {**_LIMIT, "default": RENDERS_PAGE_SIZE}})
def list_job_renders(job_id: int):
    query = api_query()
    with db_transaction() as db:
        page = progress.list_renders(db, current_user(), job_id, after=query.get("after"), limit=query["limit"],
                            state=query.get("state"))
    return {"renders": [render_json(r) for r in page.renders], "next_after": page.next_after}


@api.operation("GET", "/renders/<int:render_id>", summary="One render", permission="campaigns.view",
               response=RENDER, tags=TAGS)
def get_render(render_id: int):
    with db_transaction() as db:
        return render_json(progress.get_render(db, current_user(), render_id))


def _control(job_id: int, action: str):
    control_job(current_farm(), current_user(), job_id, action)
    return _job_json(job_id)


_CONTROL_NOTE = ("Answers 400 naming `job_id` when the job's status does not allow it, 404 for a job you "
                 "cannot see.")


@api.operation("POST", "/jobs/<int:job_id>/pause", summary="Pause a queued or running job",
               permission="jobs.control", response=JOB, tags=TAGS,
               description="Renders not yet started wait; those running finish. " + _CONTROL_NOTE)
def pause_job(job_id: int):
    return _control(job_id, "pause")


@api.operation("POST", "/jobs/<int:job_id>/resume", summary="Resume a paused job",
               permission="jobs.control", response=JOB, tags=TAGS,
               description="Its waiting renders are queued again. " + _CONTROL_NOTE)
def resume_job(job_id: int):
    return _control(job_id, "resume")


@api.operation("POST", "/jobs/<int:job_id>/cancel", summary="Cancel a job",
               permission="jobs.control", response=JOB, tags=TAGS,
               description="Renders not yet running are cancelled; running ones stop at their next step. "
                           + _CONTROL_NOTE)
def cancel_job(job_id: int):
    return _control(job_id, "cancel")
