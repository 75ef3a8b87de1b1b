"""Route-access rows for the jobs area: the jobs list, a job's page, its live progress (event
stream and JSON), pause / resume / cancel, and the jobs and renders API.

The target job (two renders on the tiny model) is cancelled before the matrix runs: its event
stream answers with one final event instead of holding a thread, and every control answers 400
("already cancelled") to the roles allowed to ask, so the matrix changes nothing.
"""

from __future__ import annotations

from sqlalchemy import select

from farm.campaigns.service import add_member, create_campaign_as
from farm.db.models import ROLES, Render
from farm.db.session import transaction
from farm.jobs.batch import BatchRequest, submit_batch
from farm.jobs.control import cancel_job
from farm.templates.service import create_campaign_template
from tests.dashboard.route_tables import Route

JOB = "/jobs/{jobs_job_id}"
API_JOB = "/api/v1/jobs/{jobs_job_id}"

ROUTES = [
    Route("/jobs/", "GET", "/jobs/", "campaigns.view"),
    Route("/jobs/<int:job_id>", "GET", JOB, "campaigns.view"),
    Route("/jobs/<int:job_id>/progress.json", "GET", JOB + "/progress.json", "campaigns.view"),
    Route("/jobs/<int:job_id>/events", "GET", JOB + "/events", "campaigns.view"),
    Route("/jobs/<int:job_id>/pause", "POST", JOB + "/pause", "jobs.control"),
    Route("/jobs/<int:job_id>/resume", "POST", JOB + "/resume", "jobs.control"),
    Route("/jobs/<int:job_id>/cancel", "POST", JOB + "/cancel", "jobs.control"),
    Route("/api/v1/jobs", "GET", "/api/v1/jobs", "campaigns.view"),
    Route("/api/v1/jobs/<int:job_id>", "GET", API_JOB, "campaigns.view"),
    Route("/api/v1/jobs/<int:job_id>/renders", "GET", API_JOB + "/renders", "campaigns.view"),
    Route("/api/v1/renders/<int:render_id>", "GET", "/api/v1/renders/{jobs_render_id}", "campaigns.view"),
    Route("/api/v1/jobs/<int:job_id>/pause", "POST", API_JOB + "/pause", "jobs.control"),
    Route("/api/v1/jobs/<int:job_id>/resume", "POST", API_JOB + "/resume", "jobs.control"),
    Route("/api/v1/jobs/<int:job_id>/cancel", "POST", API_JOB + "/cancel", "jobs.control"),
]


def targets(farm, role_users) -> dict:
    owner = role_users["campaign_manager"]
    with transaction(farm.session_factory) as session:
        campaign_id = create_campaign_as(session, owner, name="Jobs access", brand="Acme").id
        for role in ROLES:
            if role_users[role].id != owner.id:
                add_member(session, owner, campaign_id, role_users[role].id)
        version_id = create_campaign_template(
            session, owner, campaign_id, name="jobs-access", body="{{ product }} on a table",
            variables=["product"], default_params={"model": "tiny-sd", "steps": 2, "width": 64, "height": 64}).id
    job_id = submit_batch(farm, owner, BatchRequest(
        campaign_id=campaign_id, template_version_id=version_id, rows=[{"product": "a cup"}, {"product": "a pot"}],
        seeds=[1], formats=[])).job_id
    with transaction(farm.session_factory) as session:
        cancel_job(session, job_id, owner)
        render_id = session.scalar(select(Render.id).where(Render.job_id == job_id).order_by(Render.index))
    return {"jobs_campaign_id": campaign_id, "jobs_job_id": job_id, "jobs_render_id": render_id}
