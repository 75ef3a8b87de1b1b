"""What the dashboard and the API read about jobs and their renders, live progress included.

Everything here is filtered by campaign visibility (farm.campaigns.access): a job of a campaign
the user cannot see is reported as not found.

Live progress, cheaply for a job of 10,000 renders
--------------------------------------------------
A watcher (the job page's event stream, or its polling fallback) holds a `Cursor`: the time of
its last read, the ids of the renders that were leased or running then, and how many of the
job's renders were held and finished then. There is no version column on renders; a read since a
cursor finds the renders that may have changed from what the workers already write:
1. the renders leased or running now (they report steps; about one per busy GPU), and
2. the renders that were leased or running at the cursor (they may have finished, failed back to
   the queue or been reaped since: an index lookup of a few ids).
Both come from one statement over the (job_id, state) index and the primary key. Every other
change shows in the counts per state, which the read takes anyway for the job's totals (one
GROUP BY over the same index):
3. renders that finished without having been seen running (a render shorter than a poll, a
   cancel, a job failed for a blocklist) make the finished count grow by more than the
   finishes 2. explains. Only then does a read look for renders with `finished_at` at or after
   the cursor's time less CHANGE_OVERLAP (it walks the job's finished renders: still small, and
   only on such polls). The overlap covers a transaction that set finished_at before a read and
   committed after it (a cancel, a finish waiting for its upload) and worker clocks that differ a
   little.
4. `held` renders (a license or model problem parks queued renders and releases them later) set
   no timestamp at all: when the held count differs from the cursor's, the read returns every
   render once (rare).
Not caught: a render that is leased, fails and is queued again all between two polls keeps its
old attempt count and error on the page until its next lease; its state (queued) is right.
`ProgressTracker` remembers what it sent a watcher and drops renders a read returns unchanged, so
an event carries only real changes. A poll is five statements whatever the job's size (job,
counts, renders, and while renders wait, the two of waiting_reason); bench/job_progress.py times
them on PostgreSQL and tests/integration/test_job_progress_postgres.py checks the counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, joinedload, sessionmaker

from farm.campaigns.access import visible_campaigns
from farm.campaigns.formats import load_channel_formats
from farm.db.base import utcnow
from farm.db.models import (
    FINISHED_RENDER_STATES, JOB_STATUSES, RENDER_STATES, Asset, Campaign, Job, PromptTemplate, RegisteredModel,
    Render, TemplateVersion, User,
)
from farm.db.session import transaction
from farm.errors import InvalidInput, NotFound
from farm.jobs.queries import waiting_reason

ACTIVE_RENDER_STATES = ("leased", "running")
FINISHED_JOB_STATUSES = ("succeeded", "failed", "cancelled")
CHANGE_OVERLAP = timedelta(seconds=10)
# A cancelled job's running renders end as cancelled at their next step; a watcher stops waiting
# for them after this long (their worker may have died; the reaper deals with that).
CANCEL_GRACE = timedelta(seconds=60)
JOBS_PAGE_SIZE = 50
RENDERS_PAGE_SIZE = 200
MAX_PAGE_SIZE = 1000
MAX_CURSOR_IDS = 5000
_CURSOR = re.compile(r"(\d{1,16})(?:\.(\d{1,9})\.(\d{1,9}))?(?::(\d{1,19}(?:,\d{1,19})*))?")


# -- cursors ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cursor:
    """Where a watcher stands: when it last read, which renders were active then, and how many of
    the job's renders were held and finished then (None: not known, as in a page's first read)."""

    at: datetime
    active_ids: tuple[int, ...] = ()
    held: int | None = None
    finished: int | None = None

    def encode(self) -> str:
        """Text for a URL or an event id: `MILLISECONDS[.HELD.FINISHED][:ID,ID,...]`."""
        text = str(int(self.at.timestamp() * 1000))
        if self.held is not None and self.finished is not None:
            text += f".{self.held}.{self.finished}"
        if self.active_ids:
            text += ":" + ",".join(map(str, self.active_ids))
        return text

    @classmethod
    def decode(cls, text: object, field: str = "since") -> "Cursor":
        if not isinstance(text, str) or not (match := _CURSOR.fullmatch(text.strip())):
            raise InvalidInput(field, "is not a progress cursor (as returned in `cursor`)")
        millis, held, finished, ids = match.groups()
        active_ids = tuple(int(i) for i in ids.split(",")) if ids else ()
        if len(active_ids) > MAX_CURSOR_IDS:
            raise InvalidInput(field, f"names more than {MAX_CURSOR_IDS} renders")
        try:
            at = datetime.fromtimestamp(int(millis) / 1000, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise InvalidInput(field, "is not a progress cursor (time out of range)") from None
        return cls(at=at, active_ids=active_ids, held=None if held is None else int(held),
                   finished=None if finished is None else int(finished))


# -- what is read -----------------------------------------------------------------------------

def _percent(done: float, total: float) -> float:
    return round(100.0 * min(done, total) / total, 1) if total else 0.0


@dataclass(frozen=True)
class RenderProgress:
    """A render as the job page's live view shows it."""

    id: int
    index: int
    state: str
    progress_step: int
    progress_total: int
    attempts: int
    worker: str | None  # the worker that made it, or the one holding it now
    error: str | None
    hold_reason: str | None  # why a held render waits
    asset_id: int | None
    thumbnail_key: str | None
    storage_key: str | None

    @property
    def percent(self) -> float:
        if self.state == "succeeded":
            return 100.0
        if self.state == "queued":
            return 0.0
        return _percent(self.progress_step, self.progress_total)

    @property
    def signature(self) -> tuple:
        """What a watcher has seen of the render: equal signatures need not be sent again."""
        return (self.state, self.progress_step, self.progress_total, self.attempts, self.worker, self.error,
                self.hold_reason, self.asset_id)


@dataclass(frozen=True)
class RenderInfo(RenderProgress):
    """A render with its parameters, for the job page's table and the API."""

    job_id: int = 0
    kind: str = "txt2img"
    prompt: str = ""
    negative_prompt: str = ""
    seed: int | None = None
    format: str | None = None
    width: int | None = None
    height: int | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


_PROGRESS_COLUMNS = (
    Render.id, Render.index, Render.state, Render.progress_step, Render.progress_total, Render.attempts,
    Render.lease_owner, Render.rendered_by, Render.error, Render.hold_reason,
    Asset.id.label("asset_id"), Asset.thumbnail_key, Asset.storage_key,
)
_INFO_COLUMNS = (*_PROGRESS_COLUMNS, Render.job_id, Render.kind, Render.params, Render.queued_at,
                 Render.started_at, Render.finished_at)


def _progress_fields(row) -> dict[str, Any]:
    return dict(
        id=row.id, index=row.index, state=row.state, progress_step=row.progress_step,
        progress_total=row.progress_total, attempts=row.attempts,
        worker=row.rendered_by or (row.lease_owner if row.state in ACTIVE_RENDER_STATES else None),
        error=row.error, hold_reason=row.hold_reason, asset_id=row.asset_id, thumbnail_key=row.thumbnail_key, storage_key=row.storage_key,
    )


def _progress(row) -> RenderProgress:
    return RenderProgress(**_progress_fields(row))


def _info(row) -> RenderInfo:
    params = row.params or {}
    size_w = params.get("format_width", params.get("width"))
    size_h = params.get("format_height", params.get("height"))
    return RenderInfo(
        **_progress_fields(row), job_id=row.job_id, kind=row.kind, prompt=params.get("prompt", ""),
        negative_prompt=params.get("negative_prompt", ""), seed=params.get("seed"), format=params.get("format"),
        width=size_w, height=size_h, queued_at=row.queued_at, started_at=row.started_at,
        finished_at=row.finished_at,
    )


def _render_rows(columns):
    return select(*columns).outerjoin(Asset, Asset.render_id == Render.id)


@dataclass(frozen=True)
class JobTotals:
    """A job's status and how far it is; `done` once a watcher has nothing more to wait for."""

    job_id: int
    status: str
    renders: int
    counts: dict[str, int]  # every render state, zeros included
    finished: int
    percent: float  # finished renders count whole, running ones by their steps
    done: bool
    waiting_reason: str | None


@dataclass(frozen=True)
class ProgressRead:
    totals: JobTotals
    renders: list[RenderProgress]  # those that may have changed since the cursor (all without one)
    cursor: Cursor


def _state_counts(session: Session, job_id: int) -> dict[str, int]:
    counted = dict(session.execute(
        select(Render.state, func.count()).where(Render.job_id == job_id).group_by(Render.state)).all())
    return {state: counted.get(state, 0) for state in RENDER_STATES}


def _totals(session: Session, job: Job, counts: dict[str, int], active: list[RenderProgress], at: datetime,
            heartbeat_seconds: float, queue_routes: Mapping[str, str] | None) -> JobTotals:
    renders = sum(counts.values())
    finished = sum(counts[s] for s in FINISHED_RENDER_STATES)
    running = sum(min(r.progress_step / r.progress_total, 1.0) for r in active if r.progress_total)
    ended = job.status in FINISHED_JOB_STATUSES
    done = ended and (not active or (job.finished_at is not None and job.finished_at < at - CANCEL_GRACE))
    reasons = []
    if not ended and (counts["queued"] or job.status == "paused"):
        reasons.append(waiting_reason(session, job, heartbeat_seconds, dict(queue_routes or {})))
    if not ended and counts["held"]:
        why = session.scalar(select(Render.hold_reason).where(Render.job_id == job.id, Render.state == "held")
                             .order_by(Render.index).limit(1))
        reasons.append(f"{counts['held']} held" + (f": {why}" if why else ""))
    waiting = "; ".join(r for r in reasons if r) or None
    return JobTotals(job_id=job.id, status=job.status, renders=renders, counts=counts, finished=finished,
                     percent=100.0 if done or not renders else _percent(finished + running, renders),
                     done=done, waiting_reason=waiting)


def _changed_renders(session: Session, job_id: int, since: Cursor | None, counts: dict[str, int],
                     active_only: bool) -> list[RenderProgress]:
    """The renders that may have changed since `since` (see the module docstring)."""
    rows = _render_rows(_PROGRESS_COLUMNS).where(Render.job_id == job_id).order_by(Render.index)
    if since is None or (since.held != counts["held"] and not active_only):
        return [_progress(row) for row in session.execute(rows)]
    watched = [Render.state.in_(ACTIVE_RENDER_STATES)]
    if since.active_ids:
        watched.append(Render.id.in_(since.active_ids))
    renders = [_progress(row) for row in session.execute(rows.where(or_(*watched)))]
    if active_only:
        return renders
    finished = sum(counts[s] for s in FINISHED_RENDER_STATES)
    seen = sum(1 for r in renders if r.state in FINISHED_RENDER_STATES)
    if since.finished is None or finished - since.finished != seen:
        known = {r.id for r in renders}
        unseen = session.execute(rows.where(Render.state.in_(FINISHED_RENDER_STATES),
                                            Render.finished_at >= since.at - CHANGE_OVERLAP))
        renders += [r for r in map(_progress, unseen) if r.id not in known]
        renders.sort(key=lambda r: r.index)
    return renders


def read_progress(session: Session, job_id: int, since: Cursor | None, *, heartbeat_seconds: float = 10,
                  queue_routes: Mapping[str, str] | None = None, active_only: bool = False) -> ProgressRead:
    """The job's totals and its renders that may have changed since `since` (every render without a
    cursor; with `active_only`, just those leased or running), with the cursor for the next read.
    Checks no visibility: see `progress_for`."""
    at = utcnow()  # before reading: what changes while we read shows up next time
    job = session.get(Job, job_id, options=[joinedload(Job.model)])
    if job is None:
        raise NotFound("job", job_id)
    counts = _state_counts(session, job_id)
    renders = _changed_renders(session, job_id, since or (Cursor(at) if active_only else None), counts,
                               active_only)
    active = [r for r in renders if r.state in ACTIVE_RENDER_STATES]
    totals = _totals(session, job, counts, active, at, heartbeat_seconds, queue_routes)
    cursor = Cursor(at, tuple(r.id for r in active), held=counts["held"],
                    finished=sum(counts[s] for s in FINISHED_RENDER_STATES))
    return ProgressRead(totals=totals, renders=renders, cursor=cursor)


def require_visible_job(session: Session, user: User, job_id: int) -> Job:
    """The job, or NotFound if it does not exist or its campaign is not visible to `user`."""
    job = session.scalar(select(Job).where(Job.id == job_id, visible_campaigns(user, Job.campaign_id)))
    if job is None:
        raise NotFound("job", job_id)
    return job


def progress_for(session: Session, user: User, job_id: int, since: Cursor | None, *,
                 heartbeat_seconds: float = 10, queue_routes: Mapping[str, str] | None = None) -> ProgressRead:
    """`read_progress` for a job the user may see (NotFound otherwise)."""
    require_visible_job(session, user, job_id)
    return read_progress(session, job_id, since, heartbeat_seconds=heartbeat_seconds, queue_routes=queue_routes)


class ProgressTracker:
    """Reads one job's progress again and again for one watcher (an event stream), each time in a
    short transaction of its own, and hands back only what changed since the last update."""

    def __init__(self, factory: sessionmaker[Session], job_id: int, cursor: Cursor | None, *,
                 heartbeat_seconds: float = 10, queue_routes: Mapping[str, str] | None = None):
        self.factory = factory
        self.job_id = job_id
        self.cursor = cursor
        self.heartbeat_seconds = heartbeat_seconds
        self.queue_routes = dict(queue_routes or {})
        self._sent: dict[int, tuple] = {}
        self._sent_totals: JobTotals | None = None

    def poll(self, force: bool = False) -> ProgressRead | None:
        """The renders changed since the last update and the job totals, or None if nothing
        changed (unless `force`)."""
        with transaction(self.factory) as session:
            read = read_progress(session, self.job_id, self.cursor, heartbeat_seconds=self.heartbeat_seconds,
                                 queue_routes=self.queue_routes)
        self.cursor = read.cursor
        changed = [r for r in read.renders if self._sent.get(r.id) != r.signature]
        # At most one small tuple per render of the job, for the life of the stream.
        self._sent.update((r.id, r.signature) for r in changed)
        if not force and not changed and read.totals == self._sent_totals:
            return None
        self._sent_totals = read.totals
        return replace(read, renders=changed)


# -- listing jobs -----------------------------------------------------------------------------

@dataclass(frozen=True)
class JobSummary:
    id: int
    name: str | None
    kind: str
    campaign_id: int
    campaign: str
    model: str
    status: str
    priority: int
    submitted_by: str | None
    created_at: datetime
    finished_at: datetime | None
    renders: int
    finished_renders: int

    @property
    def percent(self) -> float:
        return 100.0 if not self.renders else _percent(self.finished_renders, self.renders)

    @property
    def title(self) -> str:
        return self.name or f"Job {self.id}"


@dataclass(frozen=True)
class JobPage:
    jobs: list[JobSummary]
    next_before: int | None  # pass as `before` for the next (older) page


def _checked_limit(limit: object, default: int, field: str = "limit") -> int:
    if limit is None:
        return default
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(field, f"must be a whole number from 1 to {MAX_PAGE_SIZE}, got {limit!r}")
    return limit


def _checked_id(value: object, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(field, f"must be a positive whole number, got {value!r}")
    return value


def _job_summaries(session: Session, jobs: list[Job], campaign_names: dict[int, str],
                   user_names: dict[int, str], model_names: dict[int, str]) -> list[JobSummary]:
    ids = [job.id for job in jobs]
    counts: dict[int, dict[str, int]] = {job_id: {} for job_id in ids}
    if ids:
        for job_id, state, count in session.execute(
                select(Render.job_id, Render.state, func.count()).where(Render.job_id.in_(ids))
                .group_by(Render.job_id, Render.state)):
            counts[job_id][state] = count
    return [JobSummary(
        id=job.id, name=job.name, kind=job.kind, campaign_id=job.campaign_id,
        campaign=campaign_names.get(job.campaign_id, ""), model=model_names.get(job.model_id, ""),
        status=job.status, priority=job.priority, submitted_by=user_names.get(job.submitted_by_id),
        created_at=job.created_at, finished_at=job.finished_at, renders=sum(counts[job.id].values()),
        finished_renders=sum(n for s, n in counts[job.id].items() if s in FINISHED_RENDER_STATES),
    ) for job in jobs]


def list_jobs(session: Session, user: User, *, campaign_id: int | None = None, status: str | None = None,
              before: int | None = None, limit: int | None = None) -> JobPage:
    """Jobs of the campaigns `user` can see, newest first, `limit` at a time; `before` (a job id)
    continues after a page (keyset paging on the job id: as fast on page 100 as on page 1)."""
    limit = _checked_limit(limit, JOBS_PAGE_SIZE)
    campaign_id = _checked_id(campaign_id, "campaign_id")
    before = _checked_id(before, "before")
    if status is not None and status not in JOB_STATUSES:
        raise InvalidInput("status", f"must be one of: {', '.join(JOB_STATUSES)}")
    query = select(Job).where(visible_campaigns(user, Job.campaign_id))
    if campaign_id is not None:
        if session.scalar(select(Campaign.id).where(Campaign.id == campaign_id, visible_campaigns(user))) is None:
            raise InvalidInput("campaign_id", f"no campaign {campaign_id} that you can see")
        query = query.where(Job.campaign_id == campaign_id)
    if status is not None:
        query = query.where(Job.status == status)
    if before is not None:
        query = query.where(Job.id < before)
    jobs = list(session.scalars(query.order_by(Job.id.desc()).limit(limit + 1)))
    more = len(jobs) > limit
    jobs = jobs[:limit]

    def names(model, ids) -> dict[int, str]:
        ids = {i for i in ids if i is not None}
        return dict(session.execute(select(model.id, model.name).where(model.id.in_(ids))).all()) if ids else {}

    summaries = _job_summaries(session, jobs, names(Campaign, (j.campaign_id for j in jobs)),
                               names(User, (j.submitted_by_id for j in jobs)),
                               names(RegisteredModel, (j.model_id for j in jobs)))
    return JobPage(jobs=summaries, next_before=jobs[-1].id if more else None)


# -- one job ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class FormatInfo:
    name: str
    label: str
    width: int | None
    height: int | None


@dataclass(frozen=True)
class JobDetail:
    summary: JobSummary
    template_id: int
    template_name: str
    template_version: int
    template_version_id: int
    model_sha256: str
    license: str
    formats: list[FormatInfo]
    params: dict[str, Any]
    seeds: int
    rows: int
    totals: JobTotals
    cursor: Cursor  # for the live view to continue from what this read showed
    active: list[RenderProgress] = field(default_factory=list)


def _format_infos(names: list[str]) -> list[FormatInfo]:
    try:
        known = load_channel_formats()
    except InvalidInput:  # a broken formats file must not hide the job
        known = {}
    infos = []
    for name in names:
        channel = known.get(name)
        infos.append(FormatInfo(name, channel.label, channel.width, channel.height) if channel
                     else FormatInfo(name, name, None, None))
    return infos


def job_detail(session: Session, user: User, job_id: int, *, heartbeat_seconds: float = 10,
               queue_routes: Mapping[str, str] | None = None) -> JobDetail:
    """The job page's header: what the job is, its counts by state, why it waits, and a cursor."""
    job = require_visible_job(session, user, job_id)
    # The active renders only: the page lists its renders itself, the live view goes on from here.
    read = read_progress(session, job_id, None, heartbeat_seconds=heartbeat_seconds, queue_routes=queue_routes,
                         active_only=True)
    version = session.get(TemplateVersion, job.template_version_id)
    template = session.get(PromptTemplate, version.template_id)
    submitter = session.get(User, job.submitted_by_id) if job.submitted_by_id else None
    summary = JobSummary(
        id=job.id, name=job.name, kind=job.kind, campaign_id=job.campaign_id, campaign=job.campaign.name,
        model=job.model.name, status=read.totals.status, priority=job.priority,
        submitted_by=submitter.name if submitter else None, created_at=job.created_at,
        finished_at=job.finished_at, renders=read.totals.renders, finished_renders=read.totals.finished,
    )
    return JobDetail(
        summary=summary, template_id=template.id, template_name=template.name, template_version=version.version,
        template_version_id=version.id, model_sha256=job.model.sha256, license=job.model.license.identifier,
        formats=_format_infos(list(job.formats or [])), params=dict(job.params or {}), seeds=len(job.seeds or []),
        rows=len(job.variable_rows or []), totals=read.totals, cursor=read.cursor,
        active=[r for r in read.renders if r.state in ACTIVE_RENDER_STATES],
    )


@dataclass(frozen=True)
class RenderPage:
    renders: list[RenderInfo]
    next_after: int | None  # pass as `after` (a render index) for the next page


def list_renders(session: Session, user: User, job_id: int, *, after: int | None = None,
                 limit: int | None = None, state: str | None = None) -> RenderPage:
    """A job's renders in index order, `limit` at a time after the index `after` (keyset paging)."""
    require_visible_job(session, user, job_id)
    limit = _checked_limit(limit, RENDERS_PAGE_SIZE)
    if after is not None and (isinstance(after, bool) or not isinstance(after, int) or after < -1):
        raise InvalidInput("after", f"must be a render index (a whole number from -1), got {after!r}")
    if state is not None and state not in RENDER_STATES:
        raise InvalidInput("state", f"must be one of: {', '.join(RENDER_STATES)}")
    query = _render_rows(_INFO_COLUMNS).where(Render.job_id == job_id)
    if after is not None:
        query = query.where(Render.index > after)
    if state is not None:
        query = query.where(Render.state == state)
    rows = [_info(row) for row in session.execute(query.order_by(Render.index).limit(limit + 1))]
    more = len(rows) > limit
    rows = rows[:limit]
    return RenderPage(renders=rows, next_after=rows[-1].index if more else None)


def get_render(session: Session, user: User, render_id: int) -> RenderInfo:
    """One render of a job the user may see (NotFound otherwise)."""
    row = session.execute(
        _render_rows(_INFO_COLUMNS).join(Job, Job.id == Render.job_id)
        .where(Render.id == render_id, visible_campaigns(user, Job.campaign_id))
    ).one_or_none()
    if row is None:
        raise NotFound("render", render_id)
    return _info(row)
