"""Submitting work: write the job in one transaction, then, after the commit, queue its renders.

Enqueueing after the commit means a worker never receives an id it cannot see yet. If the
broker is down at that moment the renders stay `queued` in the database, the system of record,
and are queued again by the reaper.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from farm.campaigns.service import adhoc_campaign, get_campaign
from farm.context import FarmContext
from farm.db.models import Render
from farm.db.session import transaction
from farm.jobs.service import JobRequest, submit_job, submit_upscale
from farm.queue.routing import Message, publish, route_new_job, route_renders
from farm.templates.service import get_or_create_template

# `farm render PROMPT` goes through a template like any other job: this one passes the prompt on.
DIRECT_PROMPT_TEMPLATE = "Direct prompt"


def enqueue_job(ctx: FarmContext, job_id: int) -> int:
    """Send every queued render of a committed job to its queue; return how many were sent."""
    with transaction(ctx.session_factory) as session:
        render_ids = session.scalars(select(Render.id).where(Render.job_id == job_id, Render.state == "queued"))
        messages = route_renders(session, ctx.settings, render_ids)
    return publish(ctx.celery, ctx.session_factory, messages)


def _route_job(ctx: FarmContext, session, job) -> list[Message]:
    """Route a new job's renders inside the transaction that writes it (one transaction, not
    three); the messages go out with `publish` after the commit."""
    return route_new_job(session, ctx.settings, job)


def submit_prompt(
    ctx: FarmContext,
    *,
    prompt: str,
    negative_prompt: str = "",
    seed: int,
    count: int = 1,
    params: dict[str, Any] | None = None,
    model_name: str | None = None,
    campaign_name: str | None = None,
    priority: int = 5,
) -> int:
    """Submit one prompt as a job of `count` images (seeds seed..seed+count-1); return the job id."""
    with transaction(ctx.session_factory) as session:
        campaign = get_campaign(session, campaign_name) if campaign_name else adhoc_campaign(session)
        version = get_or_create_template(
            session, name=DIRECT_PROMPT_TEMPLATE, body="{{ prompt }}", negative_body="{{ negative_prompt }}"
        )
        job = submit_job(session, JobRequest(
            campaign_id=campaign.id, template_version_id=version.id,
            model_name=model_name or ctx.settings.default_model,
            variable_rows=[{"prompt": prompt, "negative_prompt": negative_prompt}],
            seeds=[seed], images_per_seed=count, params=params or {}, priority=priority,
        ), settings=ctx.settings)
        job_id = job.id
        messages = _route_job(ctx, session, job)
    publish(ctx.celery, ctx.session_factory, messages)
    return job_id


def submit_upscale_job(ctx: FarmContext, *, asset_ids: list[int], scale: float, upscaler: str | None = None,
                       priority: int = 5) -> int:
    """Upscale existing assets (one render each) by `scale`; return the job id."""
    with transaction(ctx.session_factory) as session:
        options = {"upscaler_name": upscaler} if upscaler else {}
        job = submit_upscale(session, source_asset_ids=asset_ids, scale=scale, priority=priority,
                             settings=ctx.settings, **options)
        job_id = job.id
        messages = _route_job(ctx, session, job)
    publish(ctx.celery, ctx.session_factory, messages)
    return job_id
