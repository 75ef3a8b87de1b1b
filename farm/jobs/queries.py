"""Read-only views of jobs and renders for the CLI and the dashboard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from farm.db.models import FINISHED_RENDER_STATES, Asset, Job, Render, Worker
from farm.db.session import transaction
from farm.errors import InvalidInput
from farm.queue.routing import shared_queue_for
from farm.workers.registry import is_alive


def _job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise InvalidInput("job_id", f"no job {job_id}")
    return job


@dataclass(frozen=True)
class JobProgress:
    status: str
    renders: int
    finished_renders: int
    steps_done: int
    steps_total: int

    @property
    def finished(self) -> bool:
        return self.finished_renders == self.renders

    def bar(self, width: int = 30) -> str:
        fraction = self.steps_done / self.steps_total if self.steps_total else 1.0
        filled = round(fraction * width)
        return (f"[{'#' * filled}{'-' * (width - filled)}] {self.finished_renders}/{self.renders} images, "
                f"{fraction:5.1%} {self.status}")


def job_progress(factory: sessionmaker[Session], job_id: int) -> JobProgress:
    with transaction(factory) as session:
        status = _job(session, job_id).status
        rows = session.execute(
            select(Render.state, Render.progress_step, Render.progress_total).where(Render.job_id == job_id)
        ).all()
    return JobProgress(
        status=status, renders=len(rows),
        finished_renders=sum(1 for state, _, _ in rows if state in FINISHED_RENDER_STATES),
        steps_done=sum(total if state in FINISHED_RENDER_STATES else step for state, step, total in rows),
        steps_total=sum(total for _, _, total in rows),
    )


@dataclass(frozen=True)
class AssetSummary:
    asset_id: int
    render_id: int
    render_index: int
    job_id: int
    seed: int
    prompt: str
    storage_key: str
    thumbnail_key: str
    width: int
    height: int
    approval_state: str
    parent_asset_id: int | None = None


def _summaries(rows) -> list[AssetSummary]:
    return [
        AssetSummary(asset_id=a.id, render_id=r.id, render_index=r.index, job_id=r.job_id,
                     seed=r.params["seed"], prompt=r.params["prompt"], storage_key=a.storage_key,
                     thumbnail_key=a.thumbnail_key, width=a.width, height=a.height,
                     approval_state=a.approval_state, parent_asset_id=a.parent_asset_id)
        for a, r in rows
    ]


def job_assets(factory: sessionmaker[Session], job_id: int) -> list[AssetSummary]:
    with transaction(factory) as session:
        _job(session, job_id)
        rows = session.execute(
            select(Asset, Render).join(Render, Asset.render_id == Render.id)
            .where(Render.job_id == job_id).order_by(Render.index)
        ).all()
        return _summaries(rows)


def recent_assets(factory: sessionmaker[Session], limit: int = 48) -> list[AssetSummary]:
    with transaction(factory) as session:
        rows = session.execute(
            select(Asset, Render).join(Render, Asset.render_id == Render.id)
            .order_by(Asset.id.desc()).limit(limit)
        ).all()
        return _summaries(rows)


def render_counts(factory: sessionmaker[Session]) -> dict[str, int]:
    with transaction(factory) as session:
        return dict(session.execute(select(Render.state, func.count()).group_by(Render.state)).all())


def waiting_reason(session: Session, job: Job, heartbeat_seconds: float,
                   queue_routes: dict[str, str] | None = None) -> str | None:
    """Why a job's queued renders are not being picked up, when the registry can tell."""
    if job.status == "paused":
        return "the job is paused"
    # An EXISTS on the (job_id, state) index, not a walk over job.renders: the job page and its
    # live progress ask this of jobs with 10,000 renders.
    if not session.scalar(select(exists().where(Render.job_id == job.id, Render.state == "queued"))):
        return None
    queue = shared_queue_for(queue_routes or {}, kind=job.kind, model_name=job.model.name,
                             architecture=job.model.architecture)
    serving = [w for w in session.scalars(select(Worker)) if queue in w.queues and is_alive(w, heartbeat_seconds)]
    if not serving:
        return f"no live worker serves queue '{queue}' (model {job.model.name}, {job.model.architecture})"
    if all(w.status == "draining" for w in serving):
        return f"every worker serving queue '{queue}' is draining"
    return None


def job_report(factory: sessionmaker[Session], job_id: int, heartbeat_seconds: float = 10,
               queue_routes: dict[str, str] | None = None) -> dict[str, Any]:
    with transaction(factory) as session:
        job = session.scalar(
            select(Job).where(Job.id == job_id)
            .options(selectinload(Job.renders).selectinload(Render.asset))
        )
        if job is None:
            raise InvalidInput("job_id", f"no job {job_id}")
        return {
            "id": job.id, "kind": job.kind, "status": job.status, "campaign": job.campaign.name, "model": job.model.name,
            "model_sha256": job.model.sha256, "license": job.model.license.identifier,
            "priority": job.priority, "params": job.params, "created_at": job.created_at,
            "waiting_reason": waiting_reason(session, job, heartbeat_seconds, queue_routes),
            "finished_at": job.finished_at,
            "renders": [
                {"id": r.id, "index": r.index, "state": r.state, "attempts": r.attempts,
                 "progress_step": r.progress_step, "progress_total": r.progress_total,
                 "rendered_by": r.rendered_by, "kind": r.kind, "queue": r.queue,
                 "params": r.params, "error": r.error, "started_at": r.started_at,
                 "finished_at": r.finished_at,
                 "asset": None if r.asset is None else {
                     "id": r.asset.id, "storage_key": r.asset.storage_key, "sha256": r.asset.sha256,
                     "thumbnail_key": r.asset.thumbnail_key, "approval_state": r.asset.approval_state,
                     "width": r.asset.width, "height": r.asset.height,
                     "parent_asset_id": r.asset.parent_asset_id}}
                for r in job.renders
            ],
        }
