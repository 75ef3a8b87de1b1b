"""Making campaigns and jobs on the tiny model for the jobs tests, through the farm's services."""

from __future__ import annotations

from typing import Iterable, Sequence

from sqlalchemy import select

from farm.campaigns.service import add_member, create_campaign_as
from farm.context import FarmContext
from farm.db.models import Render, User
from farm.db.session import transaction
from farm.jobs.batch import BatchRequest, submit_batch
from farm.jobs.execution import Outcome, WorkerContext, execute_render
from farm.queue.runtime import build_worker_context
from farm.templates.service import create_campaign_template

# Fast on a CPU: the tiny model, two or three steps, 64x64.
FAST = {"model": "tiny-sd", "steps": 2, "width": 64, "height": 64}


def make_campaign(farm: FarmContext, owner: User, *, name: str = "Spring", members: Iterable[User] = (),
                  channel_formats: Sequence[str] = (), steps: int = 2) -> tuple[int, int]:
    """A campaign owned by `owner` (with `members`) and a template; returns (campaign id, version id)."""
    with transaction(farm.session_factory) as session:
        campaign_id = create_campaign_as(session, owner, name=name, brand="Acme",
                                         channel_formats=list(channel_formats)).id
        for member in members:
            add_member(session, owner, campaign_id, member.id)
        version_id = create_campaign_template(
            session, owner, campaign_id, name="hero", body="{{ product }} on a wooden table",
            variables=["product"], default_params={**FAST, "steps": steps}).id
    return campaign_id, version_id


def submit(farm: FarmContext, owner: User, campaign_id: int, version_id: int, *,
           products: Sequence[str] = ("a cup", "a pot", "a pan"), seeds: Sequence[int] = (1,),
           formats: Sequence[str] | None = (), name: str | None = None, priority: int = 5) -> int:
    request = BatchRequest(campaign_id=campaign_id, template_version_id=version_id,
                           rows=[{"product": p} for p in products], seeds=list(seeds),
                           formats=None if formats is None else list(formats), name=name, priority=priority)
    return submit_batch(farm, owner, request).job_id


def render_ids(farm: FarmContext, job_id: int) -> list[int]:
    with transaction(farm.session_factory) as session:
        return list(session.scalars(select(Render.id).where(Render.job_id == job_id).order_by(Render.index)))


def worker(farm: FarmContext, name: str = "test-worker") -> WorkerContext:
    return build_worker_context(farm.settings, worker_name=name)


def render(ctx: WorkerContext, ids: Iterable[int]) -> list[Outcome]:
    """Render these ids in this thread, as a worker would (lease, tiny model, store, finish)."""
    return [execute_render(ctx, render_id) for render_id in ids]
