"""Re-render with changes: a new version of an asset, with some of its parameters changed.

The new job belongs to the asset's campaign and uses its model and template version; its one
render keeps every parameter of the source render except those changed, and points at the asset
as its parent. The worker writes the new asset with version = parent's version + 1
(farm.jobs.execution). Like every submission, the job is written in one transaction and its
render is queued after the commit (farm.jobs.dispatch, farm.queue.routing).
"""

from __future__ import annotations

from typing import Any, Mapping

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from farm.assets.lookup import visible_asset
from farm.audit.log import record_event
from farm.campaigns.access import visible_campaigns
from farm.context import FarmContext
from farm.db.models import Job, Render, User
from farm.db.session import transaction
from farm.errors import InvalidInput
from farm.licenses.policy import CHAIN_PARAMS, enforce, render_chain, revenue_of
from farm.queue.routing import publish, route_renders
from farm.render.params import Txt2ImgParams, validate_txt2img

# What a re-render may change; size, model and format stay those of the asset it redoes.
CHANGEABLE_PARAMS = ("prompt", "negative_prompt", "seed", "steps", "cfg_scale", "sampler")
JOB_LEVEL_PARAMS = ("steps", "cfg_scale", "sampler", "width", "height")


def _coerced(name: str, value: Any) -> Any:
    """Form fields arrive as text; numbers are read here, everything else is validated as given."""
    if isinstance(value, str) and name in ("seed", "steps"):
        text = value.strip()
        return int(text) if text.lstrip("-").isdigit() else value
    if isinstance(value, str) and name == "cfg_scale":
        try:
            return float(value.strip())
        except ValueError:
            return value
    if isinstance(value, str) and name in ("prompt", "negative_prompt"):
        return value.strip()
    return value


def rerendered_params(source: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The source render's parameters with `changes` applied and validated (InvalidInput names the field)."""
    if not isinstance(changes, Mapping):
        raise InvalidInput("changes", "must be a mapping of parameter names to new values")
    for name in changes:
        if name not in CHANGEABLE_PARAMS:
            raise InvalidInput(str(name), f"cannot be changed in a re-render; change {', '.join(CHANGEABLE_PARAMS)}")
    params = {**source, **{name: _coerced(name, value) for name, value in changes.items()}}
    txt2img = Txt2ImgParams(**{name: params.get(name) for name in Txt2ImgParams.__dataclass_fields__})
    validate_txt2img(txt2img)
    if not txt2img.prompt.strip():
        raise InvalidInput("prompt", "is required")
    if all(params[name] == source.get(name) for name in CHANGEABLE_PARAMS):
        raise InvalidInput("changes", "change at least one parameter: the same parameters give the same image")
    return params


def _job_with_key(session: Session, user: User, submission_key: str) -> Job | None:
    job = session.scalar(select(Job).where(Job.submission_key == submission_key))
    if job is not None and session.scalar(select(Job.id).where(Job.id == job.id,
                                                               visible_campaigns(user, Job.campaign_id))) is None:
        raise InvalidInput("submission_key", "is already used")
    return job


def rerender(session: Session, user: User, asset_id: int, changes: Mapping[str, Any], *,
             submission_key: str | None = None, priority: int | None = None, settings: Any = None) -> Job:
    """Write the re-render job (one render, parent_asset_id = the asset) in the caller's transaction.

    The caller queues its render after the commit: `farm.jobs.dispatch.enqueue_job(ctx, job.id)`,
    or use `submit_rerender`, which does both. A `submission_key` already used returns that job
    (a form sent twice makes one job).
    """
    if submission_key is not None:
        existing = _job_with_key(session, user, submission_key)
        if existing is not None:
            return existing
    asset = visible_asset(session, user, asset_id)
    source = asset.render
    if source.kind != "txt2img":
        raise InvalidInput("asset_id", f"asset {asset.id} is an {source.kind} of asset {asset.parent_asset_id}; "
                                       "re-render that asset instead")
    source_job = source.job
    if source_job.campaign.status == "archived":
        raise InvalidInput("campaign", f"campaign '{source_job.campaign.name}' is archived")
    model = source.model
    if priority is None:
        priority = source_job.priority
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 9:
        raise InvalidInput("priority", "must be between 0 and 9")
    params = rerendered_params(source.params, changes)
    # The license policy for the chain as it stands now (a suspended model, a changed license, a
    # campaign turned commercial since the asset was made all refuse it; audited).
    decision = enforce(session, render_chain(session, model, params), source_job.campaign,
                       organisation_revenue_usd=revenue_of(settings), actor=user)

    render = Render(index=0, kind="txt2img", model_id=model.id, params=params, parent_asset_id=asset.id,
                    progress_total=params["steps"])
    row = params.get("variable_row")
    job = Job(
        campaign_id=source_job.campaign_id, name=f"Re-render of asset {asset.id}", submission_key=submission_key,
        template_version_id=source_job.template_version_id, model_id=model.id, kind="txt2img",
        variable_rows=[source_job.variable_rows[row]] if isinstance(row, int) and row < len(source_job.variable_rows) else [],
        seeds=[params["seed"]], formats=[params["format"]] if params.get("format") else [],
        params={**{name: params[name] for name in JOB_LEVEL_PARAMS},
                **{name: params[name] for name in CHAIN_PARAMS if name in params}},
        priority=priority, submitted_by_id=user.id, renders=[render], policy=decision.to_dict(),
    )
    session.add(job)
    session.flush()
    changed = {name: {"from": source.params.get(name), "to": params[name]}
               for name in CHANGEABLE_PARAMS if params[name] != source.params.get(name)}
    record_event(session, action="job.submitted", entity_type="job", entity_id=job.id, actor=user,
                 after={"kind": "rerender", "campaign": source_job.campaign.name, "parent_asset_id": asset.id,
                        "parent_version": asset.version, "model": model.name, "model_sha256": model.sha256,
                        "renders": 1, "changes": changed})
    return job


def submit_rerender(ctx: FarmContext, user: User, asset_id: int, changes: Mapping[str, Any], *,
                    submission_key: str | None = None, priority: int | None = None) -> int:
    """Re-render the asset with `changes`: write the job, commit, queue its render; return the job id."""
    try:
        with transaction(ctx.session_factory) as session:
            existing = _job_with_key(session, user, submission_key) if submission_key is not None else None
            if existing is not None:
                return existing.id  # queued when it was made; the reaper sends it again if that failed
            job = rerender(session, user, asset_id, changes, submission_key=submission_key, priority=priority,
                           settings=ctx.settings)
            job_id = job.id
            messages = route_renders(session, ctx.settings, [render.id for render in job.renders])
    except IntegrityError:
        # The same form, sent twice at once: the other request made the job.
        if submission_key is None:
            raise
        with transaction(ctx.session_factory) as session:
            job = _job_with_key(session, user, submission_key)
            if job is None:
                raise
            return job.id
    publish(ctx.celery, ctx.session_factory, messages)
    return job_id

