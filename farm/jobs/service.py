"""Jobs: a template version x variable rows x seeds, expanded into one render row per image.

Everything is validated before anything is written; the caller's transaction either gets the
whole job with all its renders or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from farm.audit.log import record_event
from farm.db.base import utcnow
from farm.db.models import FINISHED_RENDER_STATES, Asset, Campaign, Job, Render, TemplateVersion, User
from farm.errors import InvalidInput
from farm.licenses.policy import (CHAIN_PARAMS, ChainEntry, ModelTerms, asset_chain, checked_chain_params, dedupe,
                                  enforce, render_chain, revenue_of)
from farm.models.registry import get_model, require_checkpoint
from farm.render.params import MAX_BATCH_COUNT, Txt2ImgParams, validate_txt2img
from farm.render.upscale import BUILTIN_UPSCALER, upscaled_size
from farm.templates.service import expand, with_style as _with_style

DEFAULT_PARAMS: dict[str, Any] = {
    "steps": 20, "cfg_scale": 7.0, "sampler": "Euler a", "width": 512, "height": 512,
}
PARAM_NAMES = tuple(DEFAULT_PARAMS)
MAX_RENDERS_PER_JOB = 10_000


@dataclass(frozen=True)
class JobRequest:
    campaign_id: int
    template_version_id: int
    model_name: str
    variable_rows: list[dict[str, Any]]
    seeds: list[int]
    # AUTOMATIC1111's batch count: each seed s yields images with seeds s, s+1, ..., s+count-1.
    images_per_seed: int = 1
    # Overrides of the template version's default parameters (steps, cfg_scale, sampler, ...).
    params: dict[str, Any] = field(default_factory=dict)
    priority: int = 5
    submitted_by: User | None = None


def _resolved_params(version: TemplateVersion, overrides: dict[str, Any]) -> dict[str, Any]:
    overrides = {k: v for k, v in overrides.items() if k not in CHAIN_PARAMS}  # the chain: see submit_job
    unknown = set(overrides) - set(PARAM_NAMES)
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "is not a generation parameter")
    template_defaults = {k: v for k, v in version.default_params.items() if k in PARAM_NAMES}
    return {**DEFAULT_PARAMS, **template_defaults, **overrides}


def _validate_request(request: JobRequest) -> None:
    if not 1 <= request.images_per_seed <= MAX_BATCH_COUNT:
        raise InvalidInput("count", f"must be between 1 and {MAX_BATCH_COUNT}")
    if not request.seeds:
        raise InvalidInput("seeds", "at least one seed is required")
    if not request.variable_rows:
        raise InvalidInput("variable_rows", "at least one row is required")
    if not 0 <= request.priority <= 9:
        raise InvalidInput("priority", "must be between 0 and 9")
    total = len(request.variable_rows) * len(request.seeds) * request.images_per_seed
    if total > MAX_RENDERS_PER_JOB:
        raise InvalidInput("count", f"the job would make {total} renders; the limit is {MAX_RENDERS_PER_JOB}")


def submit_job(session: Session, request: JobRequest, *, settings: Any = None) -> Job:
    """Validate and expand a job into render rows in the caller's transaction.

    The license policy checks the chain (the checkpoint, and `loras`/`vae` in request.params) for
    the campaign; a refusal raises PolicyRefused and is audited. `settings` gives the
    organisation's declared revenue (without it, revenue-capped licenses are refused in
    commercial campaigns)."""
    _validate_request(request)
    campaign = session.get(Campaign, request.campaign_id)
    if campaign is None:
        raise InvalidInput("campaign", f"unknown campaign id {request.campaign_id}")
    version = session.get(TemplateVersion, request.template_version_id)
    if version is None:
        raise InvalidInput("template_version", f"unknown template version id {request.template_version_id}")
    if campaign.status == "archived":
        raise InvalidInput("campaign", f"campaign '{campaign.name}' is archived and takes no new jobs")
    model = require_checkpoint(session, request.model_name)
    params = _resolved_params(version, request.params)
    chain_params = checked_chain_params(request.params)
    decision = enforce(session, render_chain(session, model, chain_params), campaign,
                       organisation_revenue_usd=revenue_of(settings), actor=request.submitted_by)

    renders: list[Render] = []
    for row_number, row in enumerate(request.variable_rows):
        expanded = expand(version.body, row, "prompt")
        if not expanded:
            raise InvalidInput("prompt", f"is empty (the template expands to nothing for row {row_number + 1})")
        prompt = _with_style(expanded, campaign.style_suffix)
        negative = _with_style(expand(version.negative_body, row, "negative_prompt"), campaign.style_negative)
        for base_seed in request.seeds:
            for offset in range(request.images_per_seed):
                render_params = Txt2ImgParams(
                    prompt=prompt, negative_prompt=negative, seed=base_seed + offset,
                    steps=params["steps"], cfg_scale=params["cfg_scale"], sampler=params["sampler"],
                    width=params["width"], height=params["height"],
                )
                validate_txt2img(render_params)
                renders.append(Render(
                    index=len(renders), kind="txt2img", model_id=model.id,
                    params={**render_params.__dict__, "variable_row": row_number, **chain_params},
                    progress_total=render_params.steps,
                ))

    job = Job(
        campaign_id=campaign.id, template_version_id=version.id, model=model, kind="txt2img",
        variable_rows=request.variable_rows, seeds=request.seeds, formats=[], params={**params, **chain_params},
        priority=request.priority, submitted_by_id=request.submitted_by.id if request.submitted_by else None,
        renders=renders, policy=decision.to_dict(),
    )
    session.add(job)
    session.flush()
    record_event(session, action="job.submitted", entity_type="job", entity_id=job.id,
                 actor=request.submitted_by,
                 after={"campaign": campaign.name, "model": model.name, "model_sha256": model.sha256,
                        "renders": len(renders), "params": {**params, **chain_params},
                        "policy": policy_summary(decision)})
    return job


def policy_summary(decision) -> dict[str, Any]:
    """What a job.submitted audit event says of the policy decision (the job row keeps it all)."""
    return {"decision": "allowed" if decision.allowed else "refused", "commercial": decision.campaign.commercial,
            "chain": [f"{n.model}:{n.license}" + (f" (via {n.via})" if n.via else "") for n in decision.chain],
            "attributions": decision.attributions()}


def submit_upscale(session: Session, *, source_asset_ids: list[int], scale: float,
                   upscaler_name: str = BUILTIN_UPSCALER, priority: int = 5,
                   submitted_by: User | None = None, settings: Any = None) -> Job:
    """An upscale job: one render per source asset, in the caller's transaction.

    The job belongs to the campaign and template version of the first source; each output
    asset points at its source as parent, and its render keeps the source's prompt and seed.
    The license policy checks the upscaler and each source's own chain for that campaign.
    """
    if not source_asset_ids:
        raise InvalidInput("assets", "at least one asset is required")
    if len(source_asset_ids) > MAX_RENDERS_PER_JOB:
        raise InvalidInput("assets", f"at most {MAX_RENDERS_PER_JOB} assets per job")
    if not 0 <= priority <= 9:
        raise InvalidInput("priority", "must be between 0 and 9")
    upscaler = get_model(session, upscaler_name, field="upscaler")
    if upscaler.kind != "upscaler":
        raise InvalidInput("upscaler", f"'{upscaler.name}' is a {upscaler.kind}, not an upscaler")
    renders: list[Render] = []
    chain = [ChainEntry("upscaler", "upscaler", ModelTerms.of(upscaler))]
    sources: list[tuple[Asset, Render]] = []
    for asset_id in source_asset_ids:
        asset = session.get(Asset, asset_id)
        if asset is None:
            raise InvalidInput("assets", f"no asset {asset_id}")
        width, height = upscaled_size(asset.width, asset.height, scale)
        source = asset.render
        sources.append((asset, source))
        chain += asset_chain(session, asset)
        renders.append(Render(
            index=len(renders), kind="upscale", model_id=upscaler.id, progress_total=1,
            params={"source_asset_id": asset.id, "scale": scale, "width": width, "height": height,
                    "prompt": source.params.get("prompt", ""), "seed": source.params.get("seed")},
        ))
    first = sources[0][1].job
    decision = enforce(session, dedupe(chain), first.campaign, organisation_revenue_usd=revenue_of(settings),
                       actor=submitted_by)
    job = Job(
        campaign_id=first.campaign_id, template_version_id=first.template_version_id, model=upscaler,
        kind="upscale", variable_rows=[], seeds=[], formats=[], params={"scale": scale, "upscaler": upscaler.name},
        priority=priority, submitted_by_id=submitted_by.id if submitted_by else None, renders=renders,
        policy=decision.to_dict(),
    )
    session.add(job)
    session.flush()
    record_event(session, action="job.submitted", entity_type="job", entity_id=job.id, actor=submitted_by,
                 after={"kind": "upscale", "upscaler": upscaler.name, "upscaler_sha256": upscaler.sha256,
                        "scale": scale, "sources": [a.id for a, _ in sources], "policy": policy_summary(decision)})
    return job


def refresh_job_status(session: Session, job_id: int) -> str:
    """Derive the job's status from its renders, after a render changed state.

    Runs after every render a worker finishes, so it asks cheap EXISTS questions (answered from
    the (job_id, state) index) and counts the job's renders only once they are all finished.
    """
    job = session.get(Job, job_id)
    if job.status == "cancelled":
        return job.status  # final: renders still running end as cancelled
    of_job = Render.job_id == job_id
    unfinished = session.scalar(select(exists().where(of_job, Render.state.not_in(FINISHED_RENDER_STATES))))
    if unfinished and job.status == "paused":
        status = "paused"
    elif unfinished:
        started = session.scalar(select(exists().where(of_job, Render.state != "queued")))
        status = "running" if started else "queued"
    else:
        states = set(session.scalars(select(Render.state).where(of_job).distinct()))
        status = "failed" if "failed" in states else "succeeded" if "succeeded" in states else "cancelled"
    if status != job.status:
        job.status = status
        if status in ("succeeded", "failed", "cancelled"):
            job.finished_at = utcnow()
    return status
