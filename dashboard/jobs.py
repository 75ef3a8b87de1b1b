"""Jobs: the list, a job's page with live progress, pause / resume / cancel.

Live progress reaches the page two ways, from the same read (farm.jobs.progress):
- /jobs/<id>/events, Server-Sent Events: the server reads the job every JOB_EVENTS_POLL_SECONDS
  in a short transaction of its own and sends an event with the renders that changed and the
  job totals whenever something changed, a comment as a heartbeat, and ends once the job is done.
  Each event's id is a progress cursor, so a browser that reconnects (EventSource does so by
  itself, sending Last-Event-ID) continues where it was.
- /jobs/<id>/progress.json?since=CURSOR, the same snapshot for polling: static/jobs.js falls back
  to it when EventSource fails (no slot, a proxy that buffers, an old browser).
A stream holds one server thread for its life (gunicorn gthread and waitress, which `farm up`
serves with, both run a request per thread). So a process serves at most JOB_EVENT_STREAMS streams
at once (default 4 of its 8 threads) and answers 503 beyond that, which sends the page to
polling, and a stream ends after JOB_EVENTS_MAX_SECONDS (the browser reconnects): other requests
always find a free thread.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from typing import Any, Iterator

from flask import (
    Blueprint, Response, current_app, flash, redirect, render_template, request, stream_with_context, url_for,
)

from dashboard.auth import current_user, requires
from dashboard.helpers import current_farm, db_transaction, optional_url
from farm.campaigns.service import list_campaigns
from farm.db.models import JOB_STATUSES, RENDER_STATES
from farm.errors import InvalidInput
from farm.jobs.commands import control_job
from farm.jobs.progress import (
    ACTIVE_RENDER_STATES, FINISHED_JOB_STATUSES, Cursor, ProgressRead, ProgressTracker, RenderProgress,
    job_detail, list_jobs, list_renders, progress_for, require_visible_job,
)

log = logging.getLogger(__name__)
blueprint = Blueprint("jobs", __name__, url_prefix="/jobs")

DEFAULTS = {
    "JOB_EVENT_STREAMS": 4,  # per process; waitress (farm up) and gunicorn (farm web) run 8 threads
    "JOB_EVENTS_POLL_SECONDS": 0.5,
    "JOB_EVENTS_HEARTBEAT_SECONDS": 15.0,
    "JOB_EVENTS_MAX_SECONDS": 300.0,
    "JOB_EVENTS_RETRY_MS": 2000,
}
STREAM_SLOTS = "jobs.event_stream_slots"
CONTROL_LABELS = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}
# Which control each job status offers (the services refuse the others anyway).
CONTROLS_FOR_STATUS = {"pause": ("queued", "running"), "resume": ("paused",),
                       "cancel": ("queued", "running", "paused")}


@blueprint.record_once
def _init(state) -> None:
    app = state.app
    for key, value in DEFAULTS.items():
        app.config.setdefault(key, value)
    app.extensions[STREAM_SLOTS] = threading.BoundedSemaphore(int(app.config["JOB_EVENT_STREAMS"]))
    app.add_template_global(optional_url)
    app.add_template_global(CONTROLS_FOR_STATUS, "job_controls_for_status")
    app.add_template_filter(percent_text, "pct")
    app.add_template_filter(bar_value, "bar_value")


def bar_value(value: float) -> int:
    """A progress bar's aria-valuenow: whole percent, rounded down, so 100 means finished."""
    return int(math.floor(float(value)))


def percent_text(value: float) -> str:
    """42.5 -> "42.5", 100.0 -> "100" (as static/jobs.js writes aria-valuenow)."""
    value = round(float(value), 1)
    return str(int(value)) if value.is_integer() else str(value)


def _settings():
    return current_farm().settings


# -- JSON for the live view ---------------------------------------------------------------------

def render_links(render: RenderProgress) -> dict[str, str | None]:
    """The thumbnail of a finished render and where clicking it goes (its asset page if the app
    has one, else the full image)."""
    if render.asset_id is None or not render.thumbnail_key:
        return {"thumbnail_url": None, "link_url": None}
    link = optional_url("assets.view", asset_id=render.asset_id)
    if link is None and render.storage_key:
        link = url_for("pages.stored_object", key=render.storage_key)
    return {"thumbnail_url": url_for("pages.stored_object", key=render.thumbnail_key), "link_url": link}


def render_progress_json(render: RenderProgress) -> dict[str, Any]:
    return {"id": render.id, "index": render.index, "state": render.state,
            "progress_step": render.progress_step, "progress_total": render.progress_total,
            "percent": render.percent, "attempts": render.attempts, "worker": render.worker,
            "error": render.error, "hold_reason": render.hold_reason, "asset_id": render.asset_id,
            **render_links(render)}


def progress_json(read: ProgressRead) -> dict[str, Any]:
    totals = read.totals
    return {
        "job": {"id": totals.job_id, "status": totals.status, "renders": totals.renders,
                "finished": totals.finished, "percent": totals.percent, "counts": totals.counts,
                "done": totals.done, "waiting_reason": totals.waiting_reason},
        "renders": [render_progress_json(r) for r in read.renders],
        "cursor": read.cursor.encode(),
    }


def _since() -> Cursor | None:
    # EventSource sends the id of the last event it got when it reconnects: newer than the URL's.
    text = request.headers.get("Last-Event-ID") or request.args.get("since")
    return Cursor.decode(text, "since") if text else None


# -- pages --------------------------------------------------------------------------------------

def _int_arg(name: str, errors: dict[str, str], minimum: int = 1) -> int | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        errors[name] = "must be a whole number"
        return None
    if value < minimum:
        errors[name] = f"must be at least {minimum}"
        return None
    return value


@blueprint.get("/")
@requires("campaigns.view")
def index():
    user = current_user()
    errors: dict[str, str] = {}
    filters = {"campaign_id": _int_arg("campaign_id", errors), "status": request.args.get("status", "").strip() or None,
               "before": _int_arg("before", errors)}
    if filters["status"] is not None and filters["status"] not in JOB_STATUSES:
        errors["status"] = f"must be one of: {', '.join(JOB_STATUSES)}"
    page = None
    with db_transaction() as db:
        campaigns = list_campaigns(db, user, include_archived=True)
        if not errors:
            try:
                page = list_jobs(db, user, **filters)
            except InvalidInput as error:
                errors[error.field] = error.message
    form = {key: request.args.get(key, "") for key in ("campaign_id", "status")}
    return render_template("jobs/index.html", page=page, campaigns=campaigns, statuses=JOB_STATUSES,
                           form=form, errors=errors, filters=filters), (400 if errors else 200)


def _render_job_page(job_id: int, control_error: InvalidInput | None = None, status: int = 200):
    user = current_user()
    settings = _settings()
    errors: dict[str, str] = {}
    after = _int_arg("after", errors, minimum=-1)
    with db_transaction() as db:
        detail = job_detail(db, user, job_id, heartbeat_seconds=settings.heartbeat_seconds,
                            queue_routes=settings.queue_routes)
        renders = list_renders(db, user, job_id, after=None if errors else after)
    if errors and status == 200:
        status = 400
    return render_template(
        "jobs/view.html", job=detail, summary=detail.summary, totals=detail.totals, renders=renders,
        render_states=RENDER_STATES, active_states=ACTIVE_RENDER_STATES, errors=errors,
        control_error=control_error, after=after, finished_statuses=FINISHED_JOB_STATUSES,
        render_links=render_links,
    ), status


@blueprint.get("/<int:job_id>")
@requires("campaigns.view")
def view(job_id: int):
    return _render_job_page(job_id)


def _control(job_id: int, action: str):
    try:
        status = control_job(current_farm(), current_user(), job_id, action)
    except InvalidInput as error:
        return _render_job_page(job_id, control_error=error, status=400)
    flash(f"Job {job_id} {CONTROL_LABELS[action]}; it is {status} now.", "success")
    return redirect(url_for("jobs.view", job_id=job_id), code=303)


@blueprint.post("/<int:job_id>/pause")
@requires("jobs.control")
def pause(job_id: int):
    return _control(job_id, "pause")


@blueprint.post("/<int:job_id>/resume")
@requires("jobs.control")
def resume(job_id: int):
    return _control(job_id, "resume")


@blueprint.post("/<int:job_id>/cancel")
@requires("jobs.control")
def cancel(job_id: int):
    return _control(job_id, "cancel")


# -- live progress ------------------------------------------------------------------------------

@blueprint.get("/<int:job_id>/progress.json")
@requires("campaigns.view")
def progress(job_id: int):
    settings = _settings()
    since = _since()
    with db_transaction() as db:
        read = progress_for(db, current_user(), job_id, since, heartbeat_seconds=settings.heartbeat_seconds,
                            queue_routes=settings.queue_routes)
    response = current_app.json.response(progress_json(read))
    response.headers["Cache-Control"] = "no-store"
    return response


def _event(data: dict[str, Any], event_id: str, name: str = "progress") -> str:
    return f"id: {event_id}\nevent: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _event_response(body, status: int = 200) -> Response:
    response = Response(body, status=status, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass events on as they come
    return response


@blueprint.get("/<int:job_id>/events")
@requires("campaigns.view")
def events(job_id: int):
    config = current_app.config
    settings = _settings()
    since = _since()
    with db_transaction() as db:
        require_visible_job(db, current_user(), job_id)  # checked once, at the start of the stream
    tracker = ProgressTracker(current_farm().session_factory, job_id, since,
                              heartbeat_seconds=settings.heartbeat_seconds, queue_routes=settings.queue_routes)
    first = tracker.poll(force=True)
    retry = f"retry: {int(config['JOB_EVENTS_RETRY_MS'])}\n\n"
    opening = retry + _event(progress_json(first), first.cursor.encode())
    if first.totals.done:
        return _event_response(opening)  # nothing to follow: no thread is held
    slots: threading.BoundedSemaphore = current_app.extensions[STREAM_SLOTS]
    if not slots.acquire(blocking=False):
        response = _event_response("busy: too many live streams in this server process; poll progress.json\n",
                                   status=503)
        response.mimetype = "text/plain"
        response.headers["Retry-After"] = "5"
        return response
    release = _once(slots.release)
    stream = _stream(tracker, opening, release, poll=float(config["JOB_EVENTS_POLL_SECONDS"]),
                     heartbeat=float(config["JOB_EVENTS_HEARTBEAT_SECONDS"]),
                     lifetime=float(config["JOB_EVENTS_MAX_SECONDS"]))
    response = _event_response(stream_with_context(stream))
    # The server closes the response when the stream ends or the client goes, even if the body
    # was never iterated (the generator's own `finally` would not run then).
    response.call_on_close(release)
    return response


def _once(action):
    lock = threading.Lock()
    done = False

    def run() -> None:
        nonlocal done
        with lock:
            if not done:
                done = True
                action()

    return run


def _stream(tracker: ProgressTracker, opening: str, release, *, poll: float, heartbeat: float,
            lifetime: float) -> Iterator[str]:
    started = last_sent = time.monotonic()
    try:
        yield opening
        while time.monotonic() - started < lifetime:
            time.sleep(poll)
            try:
                read = tracker.poll()
            except Exception:  # noqa: BLE001  (a database blip ends this stream; the browser reconnects)
                log.warning("progress stream of job %s stopped", tracker.job_id, exc_info=True)
                return
            if read is not None:
                yield _event(progress_json(read), read.cursor.encode())
                last_sent = time.monotonic()
                if read.totals.done:
                    return
            elif time.monotonic() - last_sent >= heartbeat:
                yield ": keep-alive\n\n"  # also how a closed connection is noticed
                last_sent = time.monotonic()
    finally:
        release()
