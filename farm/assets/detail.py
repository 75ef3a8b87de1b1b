"""The asset page: the image, its parameters, where it came from, its reviews and versions.

A constant four queries whatever the asset: the visibility check, one join for the asset with
its render, job, campaign, template version, model and license, the reviews, the lineage.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from farm.assets.lookup import visible_asset
from farm.assets.versions import VersionEntry, lineage
from farm.db.models import Campaign, Job, License, PromptTemplate, RegisteredModel, Render, TemplateVersion, User
from farm.review.service import ReviewRecord, reviews_of


@dataclass(frozen=True)
class Provenance:
    campaign_id: int
    campaign_name: str
    brand: str
    job_id: int
    job_name: str | None
    job_kind: str
    template_id: int
    template_name: str
    template_version: int
    template_body: str
    template_negative_body: str
    variables: dict[str, Any] | None  # the job's variable row this render expanded, if any
    model_id: int
    model_name: str
    model_kind: str
    model_architecture: str
    model_sha256: str
    model_short_hash: str
    license_identifier: str
    license_name: str
    license_url: str | None
    commercial_use: str
    render_id: int
    rendered_by: str | None
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    # For an upscale: the asset it enlarges (also parent_asset_id).
    source_asset_id: int | None


@dataclass(frozen=True)
class AssetDetail:
    asset_id: int
    storage_key: str
    thumbnail_key: str
    sha256: str
    size_bytes: int
    format: str
    width: int
    height: int
    channel_format: str | None
    approval_state: str
    version: int
    parent_asset_id: int | None
    created_at: datetime
    kind: str                    # txt2img or upscale
    params: dict[str, Any]       # the render's full parameters
    provenance: Provenance
    reviews: list[ReviewRecord]  # oldest first
    versions: list[VersionEntry]  # the lineage, by version
    # Every model of the chain under the license it was rendered under, with the attribution and
    # restrictions to pass on (assets.license_chain; None for assets made before chains were kept).
    license_chain: list[dict[str, Any]] | None = None
    needs_rereview: bool = False
    rereview_reason: str | None = None


def asset_detail(session: Session, user: User, asset_id: int) -> AssetDetail:
    """Everything the asset page shows. NotFound if the user cannot see the asset."""
    asset = visible_asset(session, user, asset_id)
    render, job, campaign, version, template_name, model, license_ = session.execute(
        select(Render, Job, Campaign, TemplateVersion, PromptTemplate.name, RegisteredModel, License)
        .join(Job, Job.id == Render.job_id)
        .join(Campaign, Campaign.id == Job.campaign_id)
        .join(TemplateVersion, TemplateVersion.id == Job.template_version_id)
        .join(PromptTemplate, PromptTemplate.id == TemplateVersion.template_id)
        .join(RegisteredModel, RegisteredModel.id == Render.model_id)
        .join(License, License.id == RegisteredModel.license_id)
        .where(Render.id == asset.render_id)
    ).one()
    row = render.params.get("variable_row")
    variables = job.variable_rows[row] if isinstance(row, int) and 0 <= row < len(job.variable_rows) else None
    provenance = Provenance(
        campaign_id=campaign.id, campaign_name=campaign.name, brand=campaign.brand,
        job_id=job.id, job_name=job.name, job_kind=job.kind,
        template_id=version.template_id, template_name=template_name, template_version=version.version,
        template_body=version.body, template_negative_body=version.negative_body, variables=variables,
        model_id=model.id, model_name=model.name, model_kind=model.kind, model_architecture=model.architecture,
        model_sha256=model.sha256, model_short_hash=model.short_hash,
        license_identifier=license_.identifier, license_name=license_.name, license_url=license_.url,
        commercial_use=license_.commercial_use,
        render_id=render.id, rendered_by=render.rendered_by, attempts=render.attempts,
        started_at=render.started_at, finished_at=render.finished_at,
        source_asset_id=render.params.get("source_asset_id") if render.kind == "upscale" else None,
    )
    return AssetDetail(
        asset_id=asset.id, storage_key=asset.storage_key, thumbnail_key=asset.thumbnail_key, sha256=asset.sha256,
        size_bytes=asset.size_bytes, format=asset.format, width=asset.width, height=asset.height,
        channel_format=asset.channel_format, approval_state=asset.approval_state, version=asset.version,
        parent_asset_id=asset.parent_asset_id, created_at=asset.created_at, kind=render.kind,
        params=dict(render.params), provenance=provenance,
        reviews=reviews_of(session, [asset.id])[asset.id], versions=lineage(session, asset),
        license_chain=list(asset.license_chain) if asset.license_chain else None,
        needs_rereview=asset.needs_rereview, rereview_reason=asset.rereview_reason,
    )
