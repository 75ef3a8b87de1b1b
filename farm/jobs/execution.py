"""What a worker does with one render id: lease, generate, store, finish.

No database session is held open while the model works: the lease, progress updates and the
finish are each their own short transaction. A render that is finished, or leased by someone
whose lease is still live, is left alone, so a redelivered message does nothing.
"""

from __future__ import annotations

import enum
import hashlib
import io
import logging
import time
import traceback
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Callable

from PIL import Image
from sqlalchemy import and_, exists, insert, literal_column, or_, select, update
from sqlalchemy.exc import OperationalError as DatabaseUnreachable
from sqlalchemy.orm import Session, sessionmaker

from farm.db.base import utcnow
from farm.db.models import (FINISHED_RENDER_STATES, Asset, Campaign, Job, JobWorkerFailure, License, RegisteredModel,
                            Render, Worker)
from farm.db.session import transaction
from farm.audit.log import record_event
from farm.errors import InvalidInput
from farm.jobs.service import refresh_job_status
from farm.licenses.policy import (CampaignTerms, ChainEntry, ModelTermsCache, PolicyDecision, asset_chain,
                                  audit_refusal, checked_chain_params, dedupe, evaluate)
from farm.models.hashing import ModelHashMismatch
from farm.provenance import ProvenanceStamp
from farm.queue.routing import shared_queue_for
from farm.workers.registry import is_alive
from farm.render.engine import ModelSource, RenderEngine
from farm.render.params import Txt2ImgParams
from farm.render.png import PARAMETERS_KEY, THUMBNAIL_MIME_TYPE, encode_png, format_infotext, make_thumbnail, read_png_text
from farm.render.upscale import upscale_image
from farm.render.resize import FormatTarget, cover, format_target
from farm.storage import ObjectStorage, StorageUnavailable, content_key

log = logging.getLogger(__name__)
PROGRESS_WRITE_INTERVAL_SECONDS = 0.5


class Outcome(enum.Enum):
    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"      # finished, cancelled, paused, or leased by a live worker
    HANDED_BACK = "handed_back"  # this worker is draining: the message goes back to the queue
    BLOCKLISTED = "blocklisted"  # this worker failed the job too often: back to the queue for others
    RETRY = "retry"          # failed this time; back in the queue
    OUTAGE = "outage"        # a service it needs is down: back in the queue, no attempt spent
    FAILED = "failed"        # failed for good


@dataclass(frozen=True)
class WorkerContext:
    """What a worker process brings to every render it runs."""

    session_factory: sessionmaker[Session]
    storage: ObjectStorage
    engine: RenderEngine
    worker_name: str
    lease_seconds: int
    max_attempts: int
    blocklist_after: int
    # How often workers heartbeat: says which workers still live when all may be blocklisted.
    heartbeat_seconds: float = 10
    # The settings' queue_routes: which shared queue a render belongs to (farm.queue.routing).
    queue_routes: dict[str, str] = field(default_factory=dict)
    # Set while the registry says this worker drains: it takes no new render.
    draining: threading.Event = field(default_factory=threading.Event)
    # Uploads the image and its thumbnail side by side while the worker's own thread writes
    # the finishing rows (committed only once both objects are stored).
    uploads: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=2, thread_name_prefix="farm-upload"))
    # The license policy's re-check before rendering: the declared revenue (settings), and model
    # terms cached by (id, policy_version) so an unchanged registry costs no query.
    organisation_annual_revenue_usd: int | None = None
    model_terms: ModelTermsCache = field(default_factory=ModelTermsCache)
    # Watermark and signed C2PA manifest for every image (farm.provenance), built once per worker
    # process from the settings; None when both are off.
    provenance: ProvenanceStamp | None = None


@dataclass(frozen=True)
class UpscaleInput:
    source_asset_id: int
    source_key: str
    scale: float


@dataclass(frozen=True)
class RenderPlan:
    """Everything needed to produce the image, copied out of the database before work starts."""

    render_id: int
    job_id: int
    kind: str  # "txt2img" or "upscale"
    model_name: str
    model_sha256: str
    license_identifier: str
    attempt: int
    progress_total: int
    # Copied onto the asset, so the gallery filters without joins.
    campaign_id: int
    model_id: int
    channel_format: str | None = None
    target: FormatTarget | None = None      # txt2img for a channel format: resized and cropped to it
    parent_asset_id: int | None = None      # the asset this render makes a new version of
    params: Txt2ImgParams | None = None     # txt2img
    model: ModelSource | None = None        # txt2img: the checkpoint to load
    upscale: UpscaleInput | None = None     # upscale: the source image and the factor
    source_model_name: str | None = None    # upscale: the checkpoint that made the source
    source_license: str | None = None
    # The license policy's decision at lease time: the chain's licenses and obligations (kept on
    # the asset), or the refusal the render fails with.
    license_chain: list | None = None
    refused: PolicyDecision | None = None
    chain_error: InvalidInput | None = None


class _Blocklisted(Exception):
    """This worker has failed the render's job `blocklist_after` times: it leaves the render alone."""


# What a worker needs besides the render row: its model, the model's license and the job's
# campaign. They come back with the leased row (subqueries in RETURNING): one round trip instead
# of two. Written out because SQLAlchemy drops table names inside RETURNING for SQLite, which
# leaves `id` ambiguous there.
_LEASED_RENDER_DETAILS = tuple(
    literal_column(f"({subquery})").label(label) for label, subquery in {
        "model_name": "SELECT models.name FROM models WHERE models.id = renders.model_id",
        "model_sha256": "SELECT models.sha256 FROM models WHERE models.id = renders.model_id",
        "model_uri": "SELECT models.uri FROM models WHERE models.id = renders.model_id",
        "model_architecture": "SELECT models.architecture FROM models WHERE models.id = renders.model_id",
        "license_identifier": "SELECT licenses.identifier FROM models JOIN licenses ON licenses.id = models.license_id"
                              " WHERE models.id = renders.model_id",
        "campaign_id": "SELECT jobs.campaign_id FROM jobs WHERE jobs.id = renders.job_id",
        # For the policy re-check: the cached terms of the model are current while this matches.
        "model_policy_version": "SELECT models.policy_version FROM models WHERE models.id = renders.model_id",
        "campaign_commercial": "SELECT campaigns.commercial_use FROM jobs JOIN campaigns"
                               " ON campaigns.id = jobs.campaign_id WHERE jobs.id = renders.job_id",
    }.items()
)


def _lease(ctx: WorkerContext, render_id: int) -> RenderPlan | None:
    """Take the render, in one short transaction: check the blocklist, lease the row, mark the
    job running, and copy out everything the work needs. None if the render is not ours to take."""
    now = utcnow()
    with transaction(ctx.session_factory, durable=False) as session:
        # A lease of this worker's own is abandoned: a worker runs one render at a time, so it
        # is not working on it now (it restarted, or its last try lost its database connection).
        claimable = or_(
            Render.state == "queued",
            and_(Render.state.in_(("leased", "running")),
                 or_(Render.lease_expires_at < now, Render.lease_owner == ctx.worker_name)),
        )
        # A paused job's renders wait in the database; resuming queues them again.
        job_accepts_work = Render.job_id.in_(select(Job.id).where(Job.status.not_in(("paused", "cancelled"))))
        blocklisted = (select(JobWorkerFailure.id)
                       .where(JobWorkerFailure.job_id == Render.job_id, JobWorkerFailure.worker_name == ctx.worker_name,
                              JobWorkerFailure.failures >= ctx.blocklist_after).exists())
        render = session.execute(
            update(Render)
            .where(Render.id == render_id, claimable, job_accepts_work, ~blocklisted)
            .values(state="leased", lease_owner=ctx.worker_name, started_at=now, progress_step=0,
                    lease_expires_at=now + timedelta(seconds=ctx.lease_seconds),
                    attempts=Render.attempts + 1, error=None)
            .returning(Render.job_id, Render.kind, Render.params, Render.attempts, Render.progress_total,
                       Render.model_id, Render.parent_asset_id,
                       *_LEASED_RENDER_DETAILS)
            .execution_options(synchronize_session=False)
        ).one_or_none()
        if render is None:
            # Not ours to take; only now ask whether that is because we are kept off its job.
            if session.scalar(select(Render.id).where(Render.id == render_id, blocklisted)):
                raise _Blocklisted()
            return None
        # The job's first render to start makes it running (no need to look at the others).
        session.execute(update(Job).where(Job.id == render.job_id, Job.status == "queued")
                        .values(status="running").execution_options(synchronize_session=False))
        common = dict(render_id=render_id, job_id=render.job_id, kind=render.kind, model_name=render.model_name,
                      model_sha256=render.model_sha256, license_identifier=render.license_identifier,
                      attempt=render.attempts, progress_total=render.progress_total,
                      campaign_id=render.campaign_id, model_id=render.model_id,
                      channel_format=render.params.get("format"), parent_asset_id=render.parent_asset_id,
                      target=format_target(render.params))
        if render.kind == "upscale":
            source = session.get(Asset, render.params["source_asset_id"])
            return RenderPlan(
                **common, upscale=UpscaleInput(source_asset_id=source.id, source_key=source.storage_key,
                                               scale=float(render.params["scale"])),
                source_model_name=source.render.model.name,
                source_license=source.render.model.license.identifier,
                **_policy(ctx, session, render, lambda: [ChainEntry("upscaler", "upscaler", ctx.model_terms.get(
                    session, render.model_id, render.model_policy_version)), *asset_chain(session, source)]),
            )
        fields = {k: render.params[k] for k in Txt2ImgParams.__dataclass_fields__}
        return RenderPlan(
            **common, params=Txt2ImgParams(**fields),
            **_policy(ctx, session, render, lambda: _txt2img_chain(ctx, session, render)),
            model=ModelSource(name=render.model_name, path=Path(render.model_uri),
                              architecture=render.model_architecture, sha256=render.model_sha256),
        )


def _txt2img_chain(ctx: WorkerContext, session: Session, render) -> list[ChainEntry]:
    """The render's chain from the worker's cache: the checkpoint by the policy_version the lease
    returned (no query while unchanged); LoRAs and a VAE, when the render names any, by one query."""
    chain = [ChainEntry("checkpoint", "model",
                        ctx.model_terms.get(session, render.model_id, render.model_policy_version))]
    extra = checked_chain_params(render.params)
    if extra:
        named = [("lora", f"loras[{i}].name", lora["name"]) for i, lora in enumerate(extra.get("loras", []))]
        if "vae" in extra:
            named.append(("vae", "vae", extra["vae"]))
        versions = {name: (model_id, version) for model_id, name, version in session.execute(
            select(RegisteredModel.id, RegisteredModel.name, RegisteredModel.policy_version)
            .where(RegisteredModel.name.in_([name for _, _, name in named])))}
        for role, field_name, name in named:
            if name not in versions:
                raise InvalidInput(field_name, f"{role} '{name}' is no longer registered")
            chain.append(ChainEntry(role, field_name, ctx.model_terms.get(session, *versions[name])))
    return chain


def _policy(ctx: WorkerContext, session: Session, render, chain_of: Callable[[], list[ChainEntry]]) -> dict:
    """The license policy again, now (the license, a model's status or the campaign may have
    changed since the job was submitted), as RenderPlan fields. The campaign's name is read only
    for a refusal."""
    try:
        chain = dedupe(chain_of())
    except InvalidInput as error:  # a LoRA or VAE it names is gone or changed kind since
        return {"chain_error": error}
    campaign = CampaignTerms(id=render.campaign_id, name="", commercial=bool(render.campaign_commercial))
    decision = evaluate(chain, campaign, organisation_revenue_usd=ctx.organisation_annual_revenue_usd)
    if not decision.allowed:
        name = session.scalar(select(Campaign.name).where(Campaign.id == render.campaign_id))
        decision = evaluate(chain, CampaignTerms(id=render.campaign_id, name=name, commercial=campaign.commercial),
                            organisation_revenue_usd=ctx.organisation_annual_revenue_usd)
        return {"license_chain": decision.license_chain(), "refused": decision}
    return {"license_chain": decision.license_chain()}


def _refuse(ctx: WorkerContext, plan: RenderPlan) -> Outcome:
    """Fail a render the policy refuses now, before any work, with the refusal as its error; audited."""
    decision = plan.refused
    with transaction(ctx.session_factory) as session:
        failed = session.execute(
            update(Render).where(_owned(ctx, plan.render_id))
            .values(state="failed", error=f"refused by the license policy: {decision.refusal.message}",
                    finished_at=utcnow(), lease_owner=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)).rowcount
        if failed:
            refresh_job_status(session, plan.job_id)
            audit_refusal(session, decision, stage="worker", actor=None, render_id=plan.render_id,
                          job_id=plan.job_id, worker=ctx.worker_name)
    log.warning("render %s refused by the license policy: %s", plan.render_id, decision.refusal.message)
    return Outcome.FAILED


def _audit_hash_mismatch(ctx: WorkerContext, plan: RenderPlan, error: ModelHashMismatch) -> None:
    with transaction(ctx.session_factory) as session:
        record_event(session, action="model.hash_mismatch", entity_type="model", entity_id=plan.model_id,
                     after={"model": error.model_name, "registered_sha256": error.registered,
                            "found_sha256": error.found, "render_id": plan.render_id, "worker": ctx.worker_name})


def _owned(ctx: WorkerContext, render_id: int):
    """A WHERE clause matching the render only while this worker still holds its lease."""
    return and_(Render.id == render_id, Render.lease_owner == ctx.worker_name,
                Render.state.in_(("leased", "running")))


def _progress_writer(ctx: WorkerContext, render_id: int) -> Callable[[int, int], None]:
    """Record step progress and renew the lease, at most every PROGRESS_WRITE_INTERVAL_SECONDS.

    The first report moves the render from leased (the model may still have been loading) to
    running. The last step is not written: the finish records it, and checks for a cancel.
    """
    last_write: float | None = None

    def on_step(step: int, total: int) -> None:
        nonlocal last_write
        now = time.monotonic()
        if step >= total or (last_write is not None and now - last_write < PROGRESS_WRITE_INTERVAL_SECONDS):
            return
        last_write = now
        with transaction(ctx.session_factory, durable=False) as session:
            session.execute(update(Render).where(_owned(ctx, render_id))
                            .values(state="running", progress_step=step, progress_total=total,
                                    lease_expires_at=utcnow() + timedelta(seconds=ctx.lease_seconds))
                            .execution_options(synchronize_session=False))
            job_status = session.scalar(select(Job.status).join(Render, Render.job_id == Job.id)
                                        .where(Render.id == render_id))
        if job_status == "cancelled":
            raise RenderCancelled()

    return on_step


class RenderCancelled(Exception):
    """Raised from the progress callback to stop a render whose job was cancelled."""


@dataclass(frozen=True)
class StoredImage:
    """An image and its thumbnail on their way to the object store: `wait()` returns once both
    are stored, or raises _UploadFailed."""

    key: str
    sha256: str
    size_bytes: int
    thumbnail_key: str
    width: int
    height: int
    uploads: tuple[Future, ...] = ()

    def wait(self) -> None:
        errors = [upload.exception() for upload in self.uploads]
        error = next((e for e in errors if e is not None), None)
        if error is not None:
            raise _UploadFailed() from error


class _UploadFailed(Exception):
    """Storing the image or its thumbnail failed; the cause is the storage error."""


@dataclass(frozen=True)
class Produced:
    image: Image.Image
    infotext: str  # AUTOMATIC1111's "parameters" text
    provenance: dict  # the PNG's "farm" chunk


def _produce(ctx: WorkerContext, plan: RenderPlan) -> Produced:
    provenance = {"render_id": plan.render_id, "job_id": plan.job_id, "model": plan.model_name,
                  "model_sha256": plan.model_sha256, "license": plan.license_identifier}
    if plan.license_chain:
        # Every model and license of the chain, and the attribution each license asks for.
        provenance["licenses"] = [{"model": n["model"], "sha256": n["sha256"], "license": n["license"],
                                   "via": n["via"], "attribution": n["attribution"]} for n in plan.license_chain]
    if plan.kind == "upscale":
        source_png = ctx.storage.get(plan.upscale.source_key)
        with Image.open(io.BytesIO(source_png)) as source:
            image = upscale_image(source, plan.upscale.scale)
        source_info = read_png_text(source_png).get(PARAMETERS_KEY, "")
        # A1111's extras tab names its postprocessing the same way.
        postprocess = f"Postprocess upscale by: {plan.upscale.scale:g}, Postprocess upscaler: {plan.model_name}"
        _progress_writer(ctx, plan.render_id)(1, 1)
        return Produced(image, f"{source_info}, {postprocess}" if source_info else postprocess, {
            **provenance, "kind": "upscale", "source_asset_id": plan.upscale.source_asset_id,
            "source_model": plan.source_model_name, "source_license": plan.source_license,
            "scale": plan.upscale.scale,
        })
    images = ctx.engine.txt2img(plan.model, plan.params, progress=_progress_writer(ctx, plan.render_id))
    if plan.target is None:
        return Produced(images[0], format_infotext(plan.params, plan.model_name, plan.model_sha256), provenance)
    # Generated near the model's native size (farm.campaigns.formats); delivered at the format's exact size.
    target = plan.target
    return Produced(cover(images[0], target.width, target.height),
                    format_infotext(plan.params, plan.model_name, plan.model_sha256, extra=target.infotext_fields()),
                    {**provenance, "channel_format": target.name, "format_size": [target.width, target.height]})


def _store(ctx: WorkerContext, plan: RenderPlan, produced: Produced) -> StoredImage:
    image = produced.image
    if ctx.provenance is None:
        png = encode_png(image, produced.infotext, produced.provenance)
    else:  # watermark the pixels, write the text chunks, then sign the whole file
        image, png = ctx.provenance.encode(image, produced.infotext, produced.provenance, plan)
    thumbnail = make_thumbnail(image)
    key = content_key(png, ".png", namespace="images")
    thumbnail_key = content_key(thumbnail, ".webp", namespace="thumbnails")
    # Objects first, row second: the finish commits the asset row only after both uploads have
    # succeeded, so a crash leaves at most an object without a row (swept later), never a row
    # pointing at nothing. The uploads run side by side, and beside the finish's statements:
    # each is mostly waiting on the object store.
    uploads = (ctx.uploads.submit(ctx.storage.put, key, png, "image/png"),
               ctx.uploads.submit(ctx.storage.put, thumbnail_key, thumbnail, THUMBNAIL_MIME_TYPE))
    return StoredImage(key=key, sha256=hashlib.sha256(png).hexdigest(), size_bytes=len(png),
                       thumbnail_key=thumbnail_key, width=image.width, height=image.height, uploads=uploads)


def _job_cancelled(session: Session, job_id: int) -> bool:
    return session.scalar(select(Job.status).where(Job.id == job_id)) == "cancelled"


def _finish(ctx: WorkerContext, plan: RenderPlan, stored: StoredImage) -> bool:
    """Mark the render succeeded and write its asset, in one transaction that commits only once
    the uploads are done; False if it is no longer ours (our lease was taken over, or the job
    was cancelled meanwhile). Raises _UploadFailed, rolling back, if an upload failed."""
    try:
        return _finish_rows(ctx, plan, stored)
    finally:
        for upload in stored.uploads:  # never leave an upload running behind a failure
            upload.exception()


def _finish_rows(ctx: WorkerContext, plan: RenderPlan, stored: StoredImage) -> bool:
    with transaction(ctx.session_factory, durable=False) as session:
        job_not_cancelled = Render.job_id.in_(select(Job.id).where(Job.status != "cancelled"))
        finished = session.execute(
            update(Render).where(_owned(ctx, plan.render_id), job_not_cancelled)
            .values(state="succeeded", finished_at=utcnow(), progress_step=plan.progress_total,
                    rendered_by=ctx.worker_name, lease_owner=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not finished:
            if _job_cancelled(session, plan.job_id):
                _end_cancelled(session, ctx, plan)  # its objects are orphans now; the sweep removes them
            return False  # else our lease was taken over; the other worker's result stands
        stored.wait()
        session.execute(insert(Asset).values(
            render_id=plan.render_id, storage_key=stored.key, sha256=stored.sha256,
            size_bytes=stored.size_bytes, format="png", width=stored.width, height=stored.height,
            thumbnail_key=stored.thumbnail_key, created_at=utcnow(),
            campaign_id=plan.campaign_id, job_id=plan.job_id, model_id=plan.model_id,
            channel_format=plan.channel_format, license_chain=plan.license_chain, **_lineage(plan),
        ))
        # While other renders of the job are unfinished its status stays as it is (running, or
        # paused); only the job's last render works out how it ended.
        others_unfinished = session.scalar(select(exists().where(
            Render.job_id == plan.job_id, Render.state.not_in(FINISHED_RENDER_STATES))))
        if not others_unfinished:
            refresh_job_status(session, plan.job_id)
    return True


def _lineage(plan: RenderPlan) -> dict:
    """An upscale points at its source; a re-render is the next version of the asset it redoes."""
    if plan.upscale:
        return {"parent_asset_id": plan.upscale.source_asset_id}
    if plan.parent_asset_id is None:
        return {}
    next_version = select(Asset.version + 1).where(Asset.id == plan.parent_asset_id).scalar_subquery()
    return {"parent_asset_id": plan.parent_asset_id, "version": next_version}


def _end_cancelled(session: Session, ctx: WorkerContext, plan: RenderPlan) -> None:
    session.execute(
        update(Render).where(_owned(ctx, plan.render_id))
        .values(state="cancelled", finished_at=utcnow(), lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )


def _fail_if_every_worker_blocklisted(ctx: WorkerContext, render_id: int) -> bool:
    """Fail the job's waiting renders when no live worker that serves them may take them.

    Flamenco does the same: with every capable worker blocklisted, a render would otherwise
    bounce between queue and workers for ever. A worker that starts later can still be given
    the job again by resubmitting it.
    """
    with transaction(ctx.session_factory) as session:
        render = session.get(Render, render_id)
        queue = shared_queue_for(ctx.queue_routes, kind=render.kind, model_name=render.model.name,
                                 architecture=render.model.architecture)
        now = utcnow()
        serving = {w.name for w in session.scalars(select(Worker).where(Worker.status == "online"))
                   if queue in w.queues and is_alive(w, ctx.heartbeat_seconds, now)}
        failures = {entry.worker_name: entry for entry in session.scalars(
            select(JobWorkerFailure).where(JobWorkerFailure.job_id == render.job_id,
                                           JobWorkerFailure.failures >= ctx.blocklist_after))}
        if not serving or not serving <= set(failures):
            return False
        last_error = failures[ctx.worker_name].last_error if ctx.worker_name in failures else ""
        message = (f"every live worker serving queue '{queue}' failed this job {ctx.blocklist_after} times and is "
                   f"kept off it ({', '.join(sorted(serving))}); last error: {last_error}")
        session.execute(update(Render).where(Render.job_id == render.job_id, Render.state == "queued")
                        .values(state="failed", error=message, finished_at=now)
                        .execution_options(synchronize_session=False))
        refresh_job_status(session, render.job_id)
    log.warning("job %s failed: %s", render.job_id, message)
    return True


def _count_failure(session: Session, ctx: WorkerContext, job_id: int, message: str) -> None:
    # One worker runs one render at a time, so no two transactions insert the same pair.
    entry = session.scalar(select(JobWorkerFailure).where(
        JobWorkerFailure.job_id == job_id, JobWorkerFailure.worker_name == ctx.worker_name))
    if entry is None:
        entry = JobWorkerFailure(job_id=job_id, worker_name=ctx.worker_name, failures=0)
        session.add(entry)
    entry.failures += 1
    entry.last_error = message
    entry.updated_at = utcnow()


def _record_failure(ctx: WorkerContext, plan: RenderPlan, error: BaseException, retryable: bool) -> Outcome:
    give_up = not retryable or plan.attempt >= ctx.max_attempts
    message = f"{type(error).__name__}: {error}"
    with transaction(ctx.session_factory) as session:
        _count_failure(session, ctx, plan.job_id, message)
        session.execute(
            update(Render).where(_owned(ctx, plan.render_id))
            .values(state="failed" if give_up else "queued", error=message,
                    finished_at=utcnow() if give_up else None, lease_owner=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )
        refresh_job_status(session, plan.job_id)
    return Outcome.FAILED if give_up else Outcome.RETRY


def _wait_for_service(ctx: WorkerContext, plan: RenderPlan, error: BaseException) -> Outcome:
    """Give the render back without spending an attempt or counting it against this worker.

    An outage of a shared service fails every worker alike; counting it would blocklist them
    all and fail the job, and spending attempts would fail renders that only had to wait.
    """
    with transaction(ctx.session_factory) as session:
        session.execute(
            update(Render).where(_owned(ctx, plan.render_id))
            .values(state="queued", error=f"waiting for a service: {type(error).__name__}: {error}",
                    attempts=Render.attempts - 1, lease_owner=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )
    return Outcome.OUTAGE


def execute_render(ctx: WorkerContext, render_id: int) -> Outcome:
    if ctx.draining.is_set():
        return Outcome.HANDED_BACK
    try:
        plan = _lease(ctx, render_id)
    except _Blocklisted:
        return Outcome.FAILED if _fail_if_every_worker_blocklisted(ctx, render_id) else Outcome.BLOCKLISTED
    if plan is None:
        return Outcome.SKIPPED
    if plan.refused is not None:
        return _refuse(ctx, plan)
    if plan.chain_error is not None:
        return _record_failure(ctx, plan, plan.chain_error, retryable=False)
    try:
        stored = _store(ctx, plan, _produce(ctx, plan))
        return Outcome.SUCCEEDED if _finish(ctx, plan, stored) else Outcome.SKIPPED
    except RenderCancelled:
        with transaction(ctx.session_factory) as session:
            _end_cancelled(session, ctx, plan)
        return Outcome.SKIPPED
    except (StorageUnavailable, _UploadFailed) as failure:  # reading an upscale's source, or storing
        error = failure.__cause__ if isinstance(failure, _UploadFailed) else failure
        if isinstance(error, StorageUnavailable):
            log.warning("render %s: %s; it waits for the object store", render_id, error)
            return _wait_for_service(ctx, plan, error)
        log.warning("render %s attempt %s failed to store its image: %s", render_id, plan.attempt, error)
        return _record_failure(ctx, plan, error, retryable=True)
    except InvalidInput as error:
        if isinstance(error, ModelHashMismatch):
            log.error("render %s: %s", render_id, error)
            _audit_hash_mismatch(ctx, plan, error)
        return _record_failure(ctx, plan, error, retryable=False)
    except DatabaseUnreachable:
        raise  # the task puts the message back and tries again; the lease runs out meanwhile
    except Exception as error:  # any other failure may be transient (out of GPU memory, a bad node)
        log.warning("render %s attempt %s failed:\n%s", render_id, plan.attempt, traceback.format_exc())
        return _record_failure(ctx, plan, error, retryable=True)
