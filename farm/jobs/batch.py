"""Batch jobs: a template version x variable rows x seeds x channel formats, planned and submitted.

`plan_batch` validates a request exactly as `submit_batch` will and says how many renders it makes
and about how much GPU time they take, writing nothing. `submit_batch` writes the job and all its
renders in one transaction, then publishes their ids after the commit (farm.queue.routing, as
farm.jobs.dispatch does). A request that carries a `submission_key` (the token a form or an API
client sends once per submission) is idempotent: a repeat, even one racing the first in another
process, finds the job the first one made; the unique constraint on jobs.submission_key decides
the race.

Each render is one image: its params hold the prompt (template expanded for its row, with the
campaign's brand style), the seed, the generation parameters, `width` x `height` (the size the
model generates at, see farm.campaigns.formats), and for a channel format its name (`format`) and
exact size (`format_width` x `format_height`), to which the worker resizes and crops the image.

GPU time estimate: seconds = sum over renders of steps x generated megapixels x rate, where rate
(seconds per step per megapixel) is the median over the model's latest successful renders on this
farm (lease to finish, so it includes loading, decoding and storing, as the farm really spends it)
once there are at least HISTORY_MIN_SAMPLES of them; otherwise a default per architecture,
DEFAULT_SECONDS_PER_STEP_PER_MEGAPIXEL. The plan says which one it used.
"""

from __future__ import annotations

import secrets
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from farm.audit.log import record_event
from farm.campaigns.access import can_see_campaign
from farm.campaigns.formats import ChannelFormat, generation_size, native_size, resolve_formats, side_multiple
from farm.campaigns.service import require_open_campaign
from farm.context import FarmContext
from farm.db.models import Campaign, Job, RegisteredModel, Render, TemplateVersion, User
from farm.db.session import transaction
from farm.errors import InvalidInput
from farm.jobs.service import DEFAULT_PARAMS, policy_summary
from farm.licenses.policy import CHAIN_PARAMS, PolicyDecision, checked_chain_params, enforce, render_chain, revenue_of
from farm.models.registry import require_checkpoint
from farm.queue.routing import MAX_PRIORITY, publish, route_renders
from farm.render.params import MAX_SEED, Txt2ImgParams, validate_txt2img
from farm.settings import Settings
from farm.templates.csv_rows import VariableRows, parse_csv_rows, table_rows
from farm.templates.service import DEFAULT_PARAM_NAMES, RowExpander, declared_variables, visible_template_version

# Seconds per sampling step per generated megapixel on one GPU, when the farm has no history for
# the model yet. sd1: measured on an H100 (docs/performance.md: SD 1.5, 512x512, 25 steps,
# batch 1, 1.19 images/s -> 0.84 s / 25 steps / 0.262 MP = 0.128). sd2 and sdxl are assumed to
# cost about the same per pixel-step, sdxl's larger UNet a little more; the farm's own history
# replaces these as soon as it has renders of the model.
DEFAULT_SECONDS_PER_STEP_PER_MEGAPIXEL = {"sd1": 0.13, "sd2": 0.13, "sdxl": 0.17}
HISTORY_SAMPLES = 100
HISTORY_MIN_SAMPLES = 5
MAX_NAME_CHARS = 200
MAX_SUBMISSION_KEY_CHARS = 64
ROUTE_SLICE = 5_000


@dataclass(frozen=True)
class BatchRequest:
    campaign_id: int
    template_version_id: int
    # Variable rows: the template's declared variables as keys (farm.templates.csv_rows makes
    # these from a CSV upload or the dashboard's table).
    rows: list[dict[str, Any]]
    # Explicit seeds, or `seed_count` random seeds drawn at submission (and recorded).
    seeds: list[int] | None = None
    seed_count: int | None = None
    # Channel format names; None takes the campaign's. No formats at all: plain width x height.
    formats: list[str] | None = None
    # Overrides of the template version's defaults: model, sampler, steps, cfg_scale, width, height;
    # and the rest of the chain the license policy checks: loras ([{name, weight}]) and vae (a name).
    params: dict[str, Any] = field(default_factory=dict)
    priority: int = 5
    name: str | None = None
    submission_key: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BatchRequest":
        """A request from JSON (the API); InvalidInput naming an unknown or mistyped field."""
        if not isinstance(data, Mapping):
            raise InvalidInput("request", "must be a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput(unknown[0], "is not a batch field")
        for required in ("campaign_id", "template_version_id", "rows"):
            if required not in data:
                raise InvalidInput(required, "is required")
        for name in ("campaign_id", "template_version_id"):
            if not _is_int(data[name]):
                raise InvalidInput(name, f"must be an id, got {data[name]!r}")
        if "params" in data and not isinstance(data["params"], Mapping):
            raise InvalidInput("params", "must be an object")
        return cls(**{**data, "params": dict(data.get("params") or {})})


@dataclass(frozen=True)
class FormatPlan:
    name: str | None  # None: no channel format, the image is kept at its generated size
    label: str | None
    width: int
    height: int
    generation_width: int
    generation_height: int


@dataclass(frozen=True)
class GpuEstimate:
    seconds: float
    seconds_per_step_per_megapixel: float
    source: str  # "history" (this farm's renders of the model) or "default" (per architecture)
    samples: int  # renders the rate was measured on (0 for a default)


@dataclass(frozen=True)
class BatchPlan:
    renders: int
    rows: int
    seeds: int
    formats: list[FormatPlan]
    model: str
    params: dict[str, Any]  # model, sampler, steps, cfg_scale, width, height (the base size)
    estimate: GpuEstimate

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SubmittedBatch:
    job_id: int
    renders: int
    created: bool  # False: the submission key had made this job already

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class _Checked:
    campaign: Campaign
    version: TemplateVersion
    model: RegisteredModel
    params: dict[str, Any]
    formats: list[FormatPlan]
    seeds: list[int] | None
    seed_count: int
    rows: list[dict[str, Any]]
    renders: int
    policy: PolicyDecision


def _check_seeds(request: BatchRequest) -> tuple[list[int] | None, int]:
    if request.seeds is not None and request.seed_count is not None:
        raise InvalidInput("seeds", "give seeds or a seed count, not both")
    if request.seeds is None and request.seed_count is None:
        raise InvalidInput("seeds", "give seeds or a seed count")
    if request.seed_count is not None:
        if not _is_int(request.seed_count) or request.seed_count < 1:
            raise InvalidInput("seed_count", f"must be a whole number of at least 1, got {request.seed_count!r}")
        return None, request.seed_count
    if isinstance(request.seeds, (str, bytes)) or not isinstance(request.seeds, Sequence) or not request.seeds:
        raise InvalidInput("seeds", "must be a list of at least one seed")
    seen: set[int] = set()
    for index, seed in enumerate(request.seeds):
        if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
            raise InvalidInput(f"seeds[{index}]", f"must be a whole number from 0 to {MAX_SEED}, got {seed!r}")
        if seed in seen:
            raise InvalidInput(f"seeds[{index}]", f"seed {seed} is listed twice")
        seen.add(seed)
    return list(request.seeds), len(request.seeds)


def _check_scalars(request: BatchRequest) -> None:
    if not _is_int(request.priority) or not 0 <= request.priority <= MAX_PRIORITY:
        raise InvalidInput("priority", f"must be a whole number from 0 to {MAX_PRIORITY}, got {request.priority!r}")
    if request.name is not None and (not isinstance(request.name, str) or len(request.name.strip()) > MAX_NAME_CHARS):
        raise InvalidInput("name", f"must be text of at most {MAX_NAME_CHARS} characters")
    key = request.submission_key
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= MAX_SUBMISSION_KEY_CHARS):
        raise InvalidInput("submission_key", f"must be text of 1 to {MAX_SUBMISSION_KEY_CHARS} characters")


def _resolved_params(session: Session, settings: Settings, campaign: Campaign, version: TemplateVersion,
                     overrides: object) -> tuple[RegisteredModel, dict[str, Any]]:
    if not isinstance(overrides, Mapping):
        raise InvalidInput("params", "must be a mapping of parameter names to values")
    unknown = sorted(set(overrides) - set(DEFAULT_PARAM_NAMES) - set(CHAIN_PARAMS))
    if unknown:
        raise InvalidInput(unknown[0], f"is not a generation parameter ({', '.join(DEFAULT_PARAM_NAMES)})")
    template = dict(version.default_params)
    if "model" in overrides:
        model = require_checkpoint(session, overrides["model"], field="model")
    elif "model" in template:
        model = require_checkpoint(session, template["model"], field="model")
    elif campaign.default_model_id is not None:
        model = require_checkpoint(session, session.get(RegisteredModel, campaign.default_model_id).name,
                                   field="model")
    else:
        model = require_checkpoint(session, settings.default_model, field="model")
    native_width, native_height = native_size(model.architecture)
    params = {
        "steps": DEFAULT_PARAMS["steps"], "cfg_scale": DEFAULT_PARAMS["cfg_scale"],
        "sampler": DEFAULT_PARAMS["sampler"], "width": native_width, "height": native_height,
        **{k: v for k, v in template.items() if k in DEFAULT_PARAM_NAMES and k != "model"},
        **{k: v for k, v in overrides.items() if k != "model" and k not in CHAIN_PARAMS},
    }
    if _is_int(params["cfg_scale"]):
        params["cfg_scale"] = float(params["cfg_scale"])
    validate_txt2img(Txt2ImgParams(prompt="", negative_prompt="", seed=0, **params))
    return model, {"model": model.name, **params, **checked_chain_params(overrides)}


def _format_plans(formats: list[ChannelFormat], params: dict[str, Any], architecture: str) -> list[FormatPlan]:
    if not formats:
        return [FormatPlan(None, None, params["width"], params["height"], params["width"], params["height"])]
    plans = []
    for channel in formats:
        width, height = generation_size(channel.width, channel.height, base_width=params["width"],
                                        base_height=params["height"], multiple=side_multiple(architecture))
        plans.append(FormatPlan(channel.name, channel.label, channel.width, channel.height, width, height))
    return plans


def _check(session: Session, settings: Settings, user: User, request: BatchRequest,
           stage: str = "submission") -> _Checked:
    """Everything a submission checks, cheapest first: the render count is known (and refused if
    too large) before a single row is expanded."""
    if not isinstance(request, BatchRequest):
        raise InvalidInput("request", f"expected a BatchRequest, got {type(request).__name__}")
    campaign = require_open_campaign(session, user, request.campaign_id)
    version = visible_template_version(session, user, request.template_version_id)
    if version.template.campaign_id != campaign.id:
        raise InvalidInput("template_version_id", "belongs to another campaign")
    _check_scalars(request)
    seeds, seed_count = _check_seeds(request)
    formats = resolve_formats(campaign.channel_formats if request.formats is None else request.formats,
                              field="formats")
    rows = request.rows
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
        raise InvalidInput("rows", "must be a list of variable rows")
    if not rows:
        raise InvalidInput("rows", "at least one row is required")
    if len(rows) > settings.max_rows_per_job:
        raise InvalidInput("rows", f"{len(rows):,} rows; the limit is {settings.max_rows_per_job:,} rows per job")
    renders = len(rows) * seed_count * max(1, len(formats))
    if renders > settings.max_renders_per_job:
        # Name the larger factor: the one to cut.
        raise InvalidInput("rows" if len(rows) >= seed_count else "seeds",
                           f"{len(rows):,} rows x {seed_count:,} seeds x {max(1, len(formats))} formats make "
                           f"{renders:,} renders; the limit is {settings.max_renders_per_job:,} per job")
    model, params = _resolved_params(session, settings, campaign, version, request.params)
    # The license policy, last: a refusal is audited, so only requests that are otherwise fine get one.
    policy = enforce(session, render_chain(session, model, params), campaign,
                     organisation_revenue_usd=revenue_of(settings), actor=user, stage=stage)
    return _Checked(campaign=campaign, version=version, model=model, params=params,
                    formats=_format_plans(formats, params, model.architecture), seeds=seeds,
                    seed_count=seed_count, rows=list(rows), renders=renders, policy=policy)


def _expanded_rows(checked: _Checked) -> list[tuple[str, str]]:
    expander = RowExpander.for_version(checked.version, checked.campaign)
    return [expander.expand(index, row) for index, row in enumerate(checked.rows)]


# -- the GPU time estimate ------------------------------------------------------------------------

def seconds_per_step_per_megapixel(session: Session, model: RegisteredModel) -> tuple[float, str, int]:
    """(rate, "history" | "default", samples) for a model, as the module docstring explains."""
    history = session.execute(
        select(Render.params, Render.started_at, Render.finished_at)
        .where(Render.model_id == model.id, Render.kind == "txt2img", Render.state == "succeeded",
               Render.started_at.is_not(None), Render.finished_at.is_not(None))
        .order_by(Render.finished_at.desc()).limit(HISTORY_SAMPLES)
    ).all()
    rates = []
    for params, started, finished in history:
        seconds = (finished - started).total_seconds()
        try:
            work = int(params["steps"]) * int(params["width"]) * int(params["height"]) / 1e6
        except (KeyError, TypeError, ValueError):
            continue
        if seconds > 0 and work > 0:
            rates.append(seconds / work)
    if len(rates) >= HISTORY_MIN_SAMPLES:
        return statistics.median(rates), "history", len(rates)
    return DEFAULT_SECONDS_PER_STEP_PER_MEGAPIXEL.get(model.architecture, 0.15), "default", 0


def _estimate(session: Session, checked: _Checked) -> GpuEstimate:
    rate, source, samples = seconds_per_step_per_megapixel(session, checked.model)
    per_format = len(checked.rows) * checked.seed_count
    megapixel_steps = sum(per_format * checked.params["steps"] * f.generation_width * f.generation_height / 1e6
                          for f in checked.formats)
    return GpuEstimate(seconds=round(megapixel_steps * rate, 1), seconds_per_step_per_megapixel=round(rate, 4),
                       source=source, samples=samples)


# -- what the dashboard and the API call ---------------------------------------------------------------

def plan_batch(session: Session, settings: Settings, user: User, request: BatchRequest) -> BatchPlan:
    """Validate the request as a submission would and count its renders and GPU time; writes nothing."""
    checked = _check(session, settings, user, request, stage="plan")
    _expanded_rows(checked)
    return BatchPlan(renders=checked.renders, rows=len(checked.rows), seeds=checked.seed_count,
                     formats=checked.formats, model=checked.model.name, params=checked.params,
                     estimate=_estimate(session, checked))


def rows_from_csv(session: Session, settings: Settings, user: User, template_version_id: int,
                  data: bytes) -> VariableRows:
    """Variable rows for a template version from an uploaded CSV file (its declared variables are
    the required columns; the settings' size and row limits apply)."""
    version = visible_template_version(session, user, template_version_id)
    return parse_csv_rows(data, required=declared_variables(version), max_bytes=settings.max_csv_bytes,
                          max_rows=settings.max_rows_per_job)


def rows_from_table(session: Session, settings: Settings, user: User, template_version_id: int,
                    rows: object) -> VariableRows:
    """Variable rows for a template version as typed into the dashboard's table (list of dicts)."""
    version = visible_template_version(session, user, template_version_id)
    return table_rows(rows, required=declared_variables(version), max_rows=settings.max_rows_per_job)


def _already_submitted(session: Session, user: User, submission_key: str) -> SubmittedBatch | None:
    job = session.scalar(select(Job).where(Job.submission_key == submission_key))
    if job is None:
        return None
    if not can_see_campaign(session, user, job.campaign_id):
        raise InvalidInput("submission_key", "was used for another job")
    renders = session.scalar(select(func.count(Render.id)).where(Render.job_id == job.id))
    return SubmittedBatch(job_id=job.id, renders=renders, created=False)


def submit_batch(ctx: FarmContext, user: User, request: BatchRequest) -> SubmittedBatch:
    """Write the job and its renders in one transaction, then queue the renders.

    With a `submission_key` already used, nothing is written or queued: the job it made is returned.
    """
    if isinstance(request, BatchRequest) and isinstance(request.submission_key, str):
        with transaction(ctx.session_factory) as session:
            existing = _already_submitted(session, user, request.submission_key)
        if existing is not None:
            return existing
    try:
        with transaction(ctx.session_factory) as session:
            job, renders, messages = _write_job(session, ctx, user, request)
            submitted = SubmittedBatch(job_id=job.id, renders=renders, created=True)
    except IntegrityError:
        # Lost a race with the same submission key: the other transaction's job stands.
        if request.submission_key is None:
            raise
        with transaction(ctx.session_factory) as session:
            existing = _already_submitted(session, user, request.submission_key)
        if existing is None:
            raise
        return existing
    publish(ctx.celery, ctx.session_factory, messages)
    return submitted


def _write_job(session: Session, ctx: FarmContext, user: User, request: BatchRequest) -> tuple[Job, int, list]:
    """Write the job, its renders and the audit event; return the job, its render count and the
    routed messages to publish once the caller's transaction has committed."""
    checked = _check(session, ctx.settings, user, request)
    expanded = _expanded_rows(checked)
    seeds = checked.seeds or _random_seeds(checked.seed_count)
    params = checked.params
    # The job row first: with a submission key already taken, its unique constraint stops the
    # transaction here (a concurrent submission waits here until the other one commits).
    job = Job(
        campaign_id=checked.campaign.id, template_version_id=checked.version.id, model_id=checked.model.id,
        kind="txt2img", name=request.name.strip() if request.name else None, submission_key=request.submission_key,
        variable_rows=checked.rows, seeds=seeds, formats=[f.name for f in checked.formats if f.name],
        params=params, priority=request.priority, submitted_by_id=user.id, policy=checked.policy.to_dict(),
    )
    session.add(job)
    session.flush()
    renders = []
    for row_number, (prompt, negative) in enumerate(expanded):
        for seed in seeds:
            for channel in checked.formats:
                render_params = {
                    "prompt": prompt, "negative_prompt": negative, "seed": seed, "steps": params["steps"],
                    "cfg_scale": params["cfg_scale"], "sampler": params["sampler"],
                    "width": channel.generation_width, "height": channel.generation_height,
                    "variable_row": row_number, **{k: params[k] for k in CHAIN_PARAMS if k in params},
                }
                if channel.name is not None:
                    render_params.update(format=channel.name, format_width=channel.width,
                                         format_height=channel.height)
                renders.append({"job_id": job.id, "index": len(renders), "kind": "txt2img",
                                "model_id": checked.model.id, "params": render_params,
                                "progress_total": params["steps"]})
    # One multi-row INSERT per batch of rows, not a unit-of-work object per render (10,000 renders
    # are written in about a second).
    render_ids = session.scalars(insert(Render).returning(Render.id, sort_by_parameter_order=True), renders).all()
    record_event(session, action="job.submitted", entity_type="job", entity_id=job.id, actor=user, after={
        "campaign": checked.campaign.name, "template_version_id": checked.version.id, "name": job.name,
        "model": checked.model.name, "model_sha256": checked.model.sha256, "renders": len(render_ids),
        "rows": len(checked.rows), "seeds": len(seeds), "random_seeds": checked.seeds is None,
        "formats": job.formats, "params": params, "submission_key": request.submission_key,
        "policy": policy_summary(checked.policy),
    })
    # Routed in slices: one IN list per slice stays within every database's parameter limit.
    messages = []
    for start in range(0, len(render_ids), ROUTE_SLICE):
        messages += route_renders(session, ctx.settings, render_ids[start:start + ROUTE_SLICE])
    return job, len(render_ids), messages


def _random_seeds(count: int) -> list[int]:
    seeds: dict[int, None] = {}
    while len(seeds) < count:
        seeds[secrets.randbelow(MAX_SEED + 1)] = None
    return list(seeds)
