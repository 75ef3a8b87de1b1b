"""The farm's tables, as SQLAlchemy 2 typed models.

The database is the system of record: a render row says what an image is and where it stands;
queues carry only render ids. Changing a table here needs a new Alembic migration
(tests/integration/test_migrations.py fails until the models and migrations agree).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Optional

from sqlalchemy import BigInteger, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from farm.db.base import Base, one_of, utcnow

ROLES = ("admin", "campaign_manager", "reviewer", "ops", "auditor")
COMMERCIAL_USE = ("allowed", "revenue_capped", "forbidden", "separate_license_required")
MODEL_KINDS = ("checkpoint", "lora", "vae", "upscaler")
ARCHITECTURES = ("sd1", "sd2", "sdxl", "upscaler")
MODEL_STATUSES = ("active", "suspended")
CAMPAIGN_STATUSES = ("draft", "active", "archived")
JOB_STATUSES = ("queued", "running", "paused", "succeeded", "failed", "cancelled")
RENDER_KINDS = ("txt2img", "img2img", "inpaint", "outpaint", "upscale")
# "held": waiting in the database until a license or model problem is resolved (hold_reason says
# which); workers do not lease it, the reaper does not re-send it.
RENDER_STATES = ("queued", "held", "leased", "running", "succeeded", "failed", "cancelled")
FINISHED_RENDER_STATES = ("succeeded", "failed", "cancelled")
APPROVAL_STATES = ("pending", "approved", "rejected", "changes_requested")
REVIEW_DECISIONS = ("approve", "reject", "request_changes")
WORKER_STATUSES = ("online", "draining", "offline")


class User(Base):
    __tablename__ = "users"
    __table_args__ = (one_of("role", ROLES, "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    email: Mapped[Optional[str]] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[Optional[str]] = mapped_column(String(255))
    api_token_hash: Mapped[Optional[str]] = mapped_column(String(64), unique=True)
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class License(Base):
    __tablename__ = "licenses"
    __table_args__ = (one_of("commercial_use", COMMERCIAL_USE, "commercial_use"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # SPDX identifier where one exists, else LicenseRef-...
    identifier: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    url: Mapped[Optional[str]] = mapped_column(String(500))
    text_sha256: Mapped[Optional[str]] = mapped_column(String(64))
    commercial_use: Mapped[str] = mapped_column(String(32))
    revenue_cap_usd: Mapped[Optional[int]] = mapped_column(BigInteger)
    attribution_required: Mapped[bool] = mapped_column(default=False)
    attribution_text: Mapped[Optional[str]] = mapped_column(Text)
    use_restrictions: Mapped[list[Any]] = mapped_column(default=list)
    derivatives_inherit: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[Optional[datetime]]


class RegisteredModel(Base):
    """A checkpoint, LoRA, VAE or upscaler file the farm may render with."""

    __tablename__ = "models"
    __table_args__ = (
        one_of("kind", MODEL_KINDS, "kind"),
        one_of("architecture", ARCHITECTURES, "architecture"),
        one_of("status", MODEL_STATUSES, "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    architecture: Mapped[str] = mapped_column(String(16))
    # A local path (file or diffusers folder) or a URI the workers can resolve.
    uri: Mapped[str] = mapped_column(String(1000))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    license_id: Mapped[int] = mapped_column(ForeignKey("licenses.id"))
    base_model_id: Mapped[Optional[int]] = mapped_column(ForeignKey("models.id"))
    source_url: Mapped[Optional[str]] = mapped_column(String(1000))
    status: Mapped[str] = mapped_column(String(16), default="active")
    status_reason: Mapped[Optional[str]] = mapped_column(Text)
    added_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[Optional[datetime]]
    # Raised whenever anything the license policy reads about this model changes: its status,
    # its license, that license's terms, or the same of its base model. Workers cache a model's
    # terms by (id, policy_version), so their policy re-check costs no query while nothing changed.
    policy_version: Mapped[int] = mapped_column(default=1)

    license: Mapped[License] = relationship()
    base_model: Mapped[Optional["RegisteredModel"]] = relationship(remote_side=[id])

    @property
    def short_hash(self) -> str:
        """The first 10 hex digits, as AUTOMATIC1111 and Civitai show a model's hash."""
        return self.sha256[:10]


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (one_of("status", CAMPAIGN_STATUSES, "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    brand: Mapped[str] = mapped_column(String(200))
    commercial_use: Mapped[bool] = mapped_column(default=True)
    owner_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    due_date: Mapped[Optional[date]] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="active")
    default_model_id: Mapped[Optional[int]] = mapped_column(ForeignKey("models.id"))
    style_suffix: Mapped[str] = mapped_column(Text, default="")
    style_negative: Mapped[str] = mapped_column(Text, default="")
    # Names of channel formats from configs/channels.yaml (instagram_square, linkedin, ...).
    channel_formats: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[Optional[datetime]]


class CampaignMember(Base):
    """Who may see a campaign besides its owner (admins, ops and auditors see every campaign)."""

    __tablename__ = "campaign_members"
    __table_args__ = (UniqueConstraint("campaign_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class PromptTemplate(Base):
    """A named template; its text lives in versions, so jobs keep the version they used."""

    __tablename__ = "prompt_templates"
    __table_args__ = (UniqueConstraint("campaign_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[Optional[int]] = mapped_column(ForeignKey("campaigns.id"))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    versions: Mapped[list["TemplateVersion"]] = relationship(
        back_populates="template", order_by="TemplateVersion.version"
    )


class TemplateVersion(Base):
    __tablename__ = "template_versions"
    __table_args__ = (UniqueConstraint("template_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("prompt_templates.id"))
    version: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    negative_body: Mapped[str] = mapped_column(Text, default="")
    # The variables the template declares; the body may use no others (checked when saved).
    variables: Mapped[list[Any]] = mapped_column(default=list)
    # Default generation parameters: sampler, steps, cfg_scale, width, height, model.
    default_params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    template: Mapped[PromptTemplate] = relationship(back_populates="versions")


class Job(Base):
    """A batch: template version x variable rows x seeds x formats, expanded into renders."""

    __tablename__ = "jobs"
    __table_args__ = (
        one_of("status", JOB_STATUSES, "status"),
        one_of("kind", RENDER_KINDS, "kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    name: Mapped[Optional[str]] = mapped_column(String(200))
    # The token a submitting form (or API client) sends once: a repeated submission of the same
    # form finds the job it made instead of making a second one.
    submission_key: Mapped[Optional[str]] = mapped_column(String(64), unique=True)
    template_version_id: Mapped[int] = mapped_column(ForeignKey("template_versions.id"))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    kind: Mapped[str] = mapped_column(String(16), default="txt2img")
    variable_rows: Mapped[list[Any]] = mapped_column(default=list)
    seeds: Mapped[list[Any]] = mapped_column(default=list)
    formats: Mapped[list[Any]] = mapped_column(default=list)
    # Generation parameters shared by every render of the job (steps, cfg_scale, sampler, size).
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    priority: Mapped[int] = mapped_column(default=5)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    submitted_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[Optional[datetime]]
    # The license policy decision that allowed the job at submission (farm.licenses.policy):
    # campaign, every model of the chain with its license and the rules checked.
    policy: Mapped[Optional[dict[str, Any]]] = mapped_column()

    campaign: Mapped[Campaign] = relationship()
    template_version: Mapped[TemplateVersion] = relationship()
    model: Mapped[RegisteredModel] = relationship()
    renders: Mapped[list["Render"]] = relationship(back_populates="job", order_by="Render.index")


class Render(Base):
    """One image with fully resolved parameters; the unit a worker leases and produces."""

    __tablename__ = "renders"
    __table_args__ = (
        UniqueConstraint("job_id", "index"),
        one_of("state", RENDER_STATES, "state"),
        one_of("kind", RENDER_KINDS, "kind"),
        Index("ix_renders_state_lease_expires_at", "state", "lease_expires_at"),
        # Job status after each finished render asks "any unfinished left?" of this index.
        Index("ix_renders_job_id_state", "job_id", "state"),
        # The audit sweep finds renders whose state change is not in the audit log yet.
        Index("ix_renders_audited_state_state", "audited_state", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16), default="txt2img")
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    # prompt, negative_prompt, seed, steps, cfg_scale, width, height, sampler, format
    params: Mapped[dict[str, Any]] = mapped_column()
    # The asset this render makes a new version of (re-render with changes) or upscales.
    parent_asset_id: Mapped[Optional[int]] = mapped_column(ForeignKey("assets.id", use_alter=True))
    state: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    lease_owner: Mapped[Optional[str]] = mapped_column(String(200))
    lease_expires_at: Mapped[Optional[datetime]]
    # Provenance: the worker whose result was kept.
    rendered_by: Mapped[Optional[str]] = mapped_column(String(200))
    progress_step: Mapped[int] = mapped_column(default=0)
    progress_total: Mapped[int] = mapped_column(default=0)
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The queue its last message went to and when: the reaper re-sends a render whose message
    # was lost (broker restart, enqueue failed after the commit, worker queue of a dead worker).
    queue: Mapped[Optional[str]] = mapped_column(String(200))
    last_enqueued_at: Mapped[Optional[datetime]]
    started_at: Mapped[Optional[datetime]]
    finished_at: Mapped[Optional[datetime]]
    error: Mapped[Optional[str]] = mapped_column(Text)
    # Why a held render waits (its model is suspended, or the policy refuses it now).
    hold_reason: Mapped[Optional[str]] = mapped_column(Text)
    # The state last written to the audit log for this render; farm.audit.renders records
    # held/succeeded/failed/cancelled renders in batches, off the worker's hot path.
    audited_state: Mapped[Optional[str]] = mapped_column(String(16))

    job: Mapped[Job] = relationship(back_populates="renders")
    model: Mapped[RegisteredModel] = relationship()
    asset: Mapped[Optional["Asset"]] = relationship(back_populates="render", foreign_keys="Asset.render_id")


class JobWorkerFailure(Base):
    """How often a worker failed a job's renders; past `blocklist_after` it is kept off the job."""

    __tablename__ = "job_worker_failures"
    __table_args__ = (UniqueConstraint("job_id", "worker_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    worker_name: Mapped[str] = mapped_column(String(200))
    failures: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[Optional[str]] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Asset(Base):
    __tablename__ = "assets"
    __table_args__ = (
        one_of("approval_state", APPROVAL_STATES, "approval_state"),
        # The gallery pages newest first under any one filter; each filter has an index that
        # ends in id, so a page is one index range scan even with 100,000 assets.
        Index("ix_assets_campaign_id_id", "campaign_id", "id"),
        Index("ix_assets_job_id_id", "job_id", "id"),
        Index("ix_assets_model_id_id", "model_id", "id"),
        Index("ix_assets_channel_format_id", "channel_format", "id"),
        Index("ix_assets_approval_state_id", "approval_state", "id"),
        # The asset page finds an asset's newer versions by their parent (migration 0005).
        Index("ix_assets_parent_asset_id", "parent_asset_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # unique: at most one asset per render, whatever retries or duplicate messages happen.
    render_id: Mapped[int] = mapped_column(ForeignKey("renders.id"), unique=True)
    # Copied from the render and its job when the asset is written, so gallery filters need no join.
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    channel_format: Mapped[Optional[str]] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(16))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    thumbnail_key: Mapped[str] = mapped_column(String(500))
    approval_state: Mapped[str] = mapped_column(String(32), default="pending")
    parent_asset_id: Mapped[Optional[int]] = mapped_column(ForeignKey("assets.id"))
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # Every model of the chain that made the asset, with the license it was rendered under and
    # what that license asks of whoever uses the image (attribution, restrictions to pass on):
    # [{model, kind, sha256, license, via, attribution, use_restrictions}]. Exports show it.
    license_chain: Mapped[Optional[list[Any]]] = mapped_column()
    # Set when a model of its chain is suspended or changes license after the asset was made.
    needs_rereview: Mapped[bool] = mapped_column(default=False)
    rereview_reason: Mapped[Optional[str]] = mapped_column(Text)

    render: Mapped[Render] = relationship(back_populates="asset", foreign_keys=[render_id])


class Review(Base):
    __tablename__ = "reviews"
    __table_args__ = (one_of("decision", REVIEW_DECISIONS, "decision"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    decision: Mapped[str] = mapped_column(String(32))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Worker(Base):
    __tablename__ = "workers"
    __table_args__ = (one_of("status", WORKER_STATUSES, "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    host: Mapped[str] = mapped_column(String(200))
    gpu_index: Mapped[Optional[int]]
    gpu_name: Mapped[Optional[str]] = mapped_column(String(200))
    vram_total_bytes: Mapped[Optional[int]] = mapped_column(BigInteger)
    vram_used_bytes: Mapped[Optional[int]] = mapped_column(BigInteger)
    queues: Mapped[list[Any]] = mapped_column(default=list)
    warm_models: Mapped[list[Any]] = mapped_column(default=list)
    torch_version: Mapped[Optional[str]] = mapped_column(String(50))
    diffusers_version: Mapped[Optional[str]] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(16), default="online")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEvent(Base):
    """Append-only; each event carries the hash of the one before it (see farm.audit)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    actor_name: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100), index=True)
    entity_type: Mapped[str] = mapped_column(String(50))
    entity_id: Mapped[Optional[str]] = mapped_column(String(100))
    before: Mapped[Optional[dict[str, Any]]] = mapped_column()
    after: Mapped[Optional[dict[str, Any]]] = mapped_column()
    # Unique, so two writers can never both extend the chain from the same event.
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
