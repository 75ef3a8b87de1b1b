"""Read-only summaries the campaign, template and batch pages show: counts per campaign, a
campaign's recent jobs, its templates' versions, the checkpoints a campaign or a batch may pick,
and the users who may be added as members.

Every function that takes a `user` shows only what farm.campaigns.access lets that user see. A
page makes a fixed number of queries whatever the number of campaigns, jobs or templates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from farm.campaigns.access import require_visible_campaign, visible_campaigns
from farm.db.models import (
    APPROVAL_STATES, Asset, Campaign, CampaignMember, Job, License, PromptTemplate, RegisteredModel, Render,
    TemplateVersion, User,
)
from farm.templates.service import declared_variables

# Roles whose campaign visibility depends on membership; the others see every campaign.
MEMBER_ROLES = ("campaign_manager", "reviewer")


@dataclass(frozen=True)
class CampaignCounts:
    jobs: int = 0
    # Assets by approval state (every state of APPROVAL_STATES is present).
    assets: dict[str, int] = field(default_factory=lambda: dict.fromkeys(APPROVAL_STATES, 0))

    @property
    def total_assets(self) -> int:
        return sum(self.assets.values())


def campaign_counts(session: Session, campaign_ids: Iterable[int]) -> dict[int, CampaignCounts]:
    """Jobs and assets (by approval state) of each campaign: two grouped queries."""
    ids = sorted(set(campaign_ids))
    if not ids:
        return {}
    jobs = dict(session.execute(
        select(Job.campaign_id, func.count(Job.id)).where(Job.campaign_id.in_(ids)).group_by(Job.campaign_id)
    ).all())
    assets: dict[int, dict[str, int]] = {campaign_id: dict.fromkeys(APPROVAL_STATES, 0) for campaign_id in ids}
    for campaign_id, state, count in session.execute(
        select(Asset.campaign_id, Asset.approval_state, func.count(Asset.id))
        .where(Asset.campaign_id.in_(ids)).group_by(Asset.campaign_id, Asset.approval_state)
    ):
        assets[campaign_id][state] = count
    return {campaign_id: CampaignCounts(jobs=jobs.get(campaign_id, 0), assets=assets[campaign_id])
            for campaign_id in ids}


@dataclass(frozen=True)
class JobSummary:
    id: int
    name: str | None
    status: str
    renders: int
    finished_renders: int
    succeeded_renders: int
    model: str
    template_name: str
    template_version: int
    submitted_by: str | None
    created_at: datetime


def recent_jobs(session: Session, user: User, campaign_id: int, limit: int = 10) -> list[JobSummary]:
    """The campaign's latest jobs, newest first, with render counts (three queries)."""
    require_visible_campaign(session, user, campaign_id)
    rows = session.execute(
        select(Job, RegisteredModel.name, PromptTemplate.name, TemplateVersion.version, User.name)
        .join(RegisteredModel, RegisteredModel.id == Job.model_id)
        .join(TemplateVersion, TemplateVersion.id == Job.template_version_id)
        .join(PromptTemplate, PromptTemplate.id == TemplateVersion.template_id)
        .outerjoin(User, User.id == Job.submitted_by_id)
        .where(Job.campaign_id == campaign_id)
        .order_by(Job.id.desc()).limit(limit)
    ).all()
    job_ids = [job.id for job, *_ in rows]
    counts: dict[int, dict[str, int]] = {job_id: {} for job_id in job_ids}
    if job_ids:
        for job_id, state, count in session.execute(
            select(Render.job_id, Render.state, func.count(Render.id))
            .where(Render.job_id.in_(job_ids)).group_by(Render.job_id, Render.state)
        ):
            counts[job_id][state] = count
    return [
        JobSummary(
            id=job.id, name=job.name, status=job.status, renders=sum(counts[job.id].values()),
            finished_renders=sum(n for state, n in counts[job.id].items()
                                 if state in ("succeeded", "failed", "cancelled")),
            succeeded_renders=counts[job.id].get("succeeded", 0), model=model, template_name=template,
            template_version=version, submitted_by=submitter, created_at=job.created_at,
        )
        for job, model, template, version, submitter in rows
    ]


@dataclass(frozen=True)
class ModelChoice:
    name: str
    architecture: str
    license: str


def active_checkpoints(session: Session) -> list[ModelChoice]:
    """Checkpoints renders may use now (what a campaign's default model or a batch's model can be)."""
    rows = session.execute(
        select(RegisteredModel.name, RegisteredModel.architecture, License.identifier)
        .join(License, License.id == RegisteredModel.license_id)
        .where(RegisteredModel.kind == "checkpoint", RegisteredModel.status == "active")
        .order_by(RegisteredModel.name)
    ).all()
    return [ModelChoice(name, architecture, license_) for name, architecture, license_ in rows]


@dataclass(frozen=True)
class UserChoice:
    id: int
    name: str
    role: str


def member_candidates(session: Session, user: User, campaign_id: int) -> list[UserChoice]:
    """Active campaign managers and reviewers who are not yet members (nor the owner): the people
    membership would let see the campaign. Admins, ops and auditors see every campaign anyway."""
    campaign = require_visible_campaign(session, user, campaign_id)
    members = select(CampaignMember.user_id).where(CampaignMember.campaign_id == campaign.id)
    query = (select(User.id, User.name, User.role)
             .where(User.role.in_(MEMBER_ROLES), User.disabled.is_(False), User.id.not_in(members))
             .order_by(User.name))
    if campaign.owner_id is not None:
        query = query.where(User.id != campaign.owner_id)
    return [UserChoice(*row) for row in session.execute(query).all()]


def user_names(session: Session, user_ids: Iterable[int | None]) -> dict[int, str]:
    """Names of the given users (e.g. who saved each template version), by id."""
    ids = {user_id for user_id in user_ids if user_id is not None}
    if not ids:
        return {}
    return dict(session.execute(select(User.id, User.name).where(User.id.in_(ids))).all())


@dataclass(frozen=True)
class VersionChoice:
    template_id: int
    template_name: str
    version_id: int
    version: int
    latest: bool
    variables: list[str]
    body: str
    negative_body: str
    default_params: dict


def template_version_choices(session: Session, user: User, campaign_id: int) -> list[VersionChoice]:
    """Every version of the campaign's templates, by template name then newest version first."""
    require_visible_campaign(session, user, campaign_id)
    versions = session.execute(
        select(TemplateVersion, PromptTemplate.name)
        .join(PromptTemplate, PromptTemplate.id == TemplateVersion.template_id)
        .where(PromptTemplate.campaign_id == campaign_id)
        .order_by(PromptTemplate.name, PromptTemplate.id, TemplateVersion.version.desc())
    ).all()
    choices: list[VersionChoice] = []
    seen: set[int] = set()
    for version, name in versions:
        choices.append(VersionChoice(template_id=version.template_id, template_name=name, version_id=version.id,
                                     version=version.version, latest=version.template_id not in seen,
                                     variables=declared_variables(version), body=version.body,
                                     negative_body=version.negative_body,
                                     default_params=dict(version.default_params)))
        seen.add(version.template_id)
    return choices


@dataclass(frozen=True)
class TemplateRow:
    id: int
    name: str
    campaign_id: int
    campaign_name: str
    campaign_status: str
    latest_version: int
    latest_version_id: int
    variables: list[str]
    updated_at: datetime  # when the latest version was saved


def visible_templates(session: Session, user: User, include_archived: bool = False) -> list[TemplateRow]:
    """The templates of every campaign the user can see, with their latest version (one query)."""
    latest = (select(TemplateVersion.template_id, func.max(TemplateVersion.version).label("version"))
              .group_by(TemplateVersion.template_id).subquery())
    query = (
        select(PromptTemplate, TemplateVersion, Campaign.name, Campaign.status)
        .join(latest, latest.c.template_id == PromptTemplate.id)
        .join(TemplateVersion, (TemplateVersion.template_id == PromptTemplate.id)
              & (TemplateVersion.version == latest.c.version))
        .join(Campaign, Campaign.id == PromptTemplate.campaign_id)
        .where(visible_campaigns(user))
        .order_by(Campaign.name, PromptTemplate.name)
    )
    if not include_archived:
        query = query.where(Campaign.status != "archived")
    return [
        TemplateRow(id=template.id, name=template.name, campaign_id=template.campaign_id, campaign_name=campaign,
                    campaign_status=status, latest_version=version.version, latest_version_id=version.id,
                    variables=declared_variables(version), updated_at=version.created_at)
        for template, version, campaign, status in session.execute(query).all()
    ]
