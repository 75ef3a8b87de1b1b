"""Initial schema: users, licenses, models, campaigns, templates, jobs, renders, assets,
reviews, workers and the audit log.

Revision ID: 0001
Revises: 
Create Date: 2026-11-26 06:51:37.143421
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0001'
down_revision: Union[str, None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('licenses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('identifier', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('url', sa.String(length=500), nullable=True),
    sa.Column('text_sha256', sa.String(length=64), nullable=True),
    sa.Column('commercial_use', sa.String(length=32), nullable=False),
    sa.Column('revenue_cap_usd', sa.BigInteger(), nullable=True),
    sa.Column('attribution_required', sa.Boolean(), nullable=False),
    sa.Column('attribution_text', sa.Text(), nullable=True),
    sa.Column('use_restrictions', sa.JSON(), nullable=False),
    sa.Column('derivatives_inherit', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("commercial_use IN ('allowed', 'revenue_capped', 'forbidden', 'separate_license_required')", name=op.f('ck_licenses_commercial_use')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_licenses')),
    sa.UniqueConstraint('identifier', name=op.f('uq_licenses_identifier'))
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('email', sa.String(length=255), nullable=True),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=True),
    sa.Column('api_token_hash', sa.String(length=64), nullable=True),
    sa.Column('disabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("role IN ('admin', 'campaign_manager', 'reviewer', 'ops', 'auditor')", name=op.f('ck_users_role')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('api_token_hash', name=op.f('uq_users_api_token_hash')),
    sa.UniqueConstraint('name', name=op.f('uq_users_name'))
    )
    op.create_table('workers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('host', sa.String(length=200), nullable=False),
    sa.Column('gpu_index', sa.Integer(), nullable=True),
    sa.Column('gpu_name', sa.String(length=200), nullable=True),
    sa.Column('vram_total_bytes', sa.BigInteger(), nullable=True),
    sa.Column('vram_used_bytes', sa.BigInteger(), nullable=True),
    sa.Column('queues', sa.JSON(), nullable=False),
    sa.Column('warm_models', sa.JSON(), nullable=False),
    sa.Column('torch_version', sa.String(length=50), nullable=True),
    sa.Column('diffusers_version', sa.String(length=50), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('online', 'draining', 'offline')", name=op.f('ck_workers_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_workers')),
    sa.UniqueConstraint('name', name=op.f('uq_workers_name'))
    )
    op.create_table('audit_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('actor_name', sa.String(length=200), nullable=False),
    sa.Column('action', sa.String(length=100), nullable=False),
    sa.Column('entity_type', sa.String(length=50), nullable=False),
    sa.Column('entity_id', sa.String(length=100), nullable=True),
    sa.Column('before', sa.JSON(), nullable=True),
    sa.Column('after', sa.JSON(), nullable=True),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_audit_events_actor_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events')),
    sa.UniqueConstraint('hash', name=op.f('uq_audit_events_hash')),
    sa.UniqueConstraint('prev_hash', name=op.f('uq_audit_events_prev_hash'))
    )
    op.create_index(op.f('ix_audit_events_action'), 'audit_events', ['action'], unique=False)
    op.create_table('models',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('architecture', sa.String(length=16), nullable=False),
    sa.Column('uri', sa.String(length=1000), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('license_id', sa.Integer(), nullable=False),
    sa.Column('base_model_id', sa.Integer(), nullable=True),
    sa.Column('source_url', sa.String(length=1000), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('status_reason', sa.Text(), nullable=True),
    sa.Column('added_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("architecture IN ('sd1', 'sd2', 'sdxl', 'upscaler')", name=op.f('ck_models_architecture')),
    sa.CheckConstraint("kind IN ('checkpoint', 'lora', 'vae', 'upscaler')", name=op.f('ck_models_kind')),
    sa.CheckConstraint("status IN ('active', 'suspended')", name=op.f('ck_models_status')),
    sa.ForeignKeyConstraint(['added_by_id'], ['users.id'], name=op.f('fk_models_added_by_id_users')),
    sa.ForeignKeyConstraint(['base_model_id'], ['models.id'], name=op.f('fk_models_base_model_id_models')),
    sa.ForeignKeyConstraint(['license_id'], ['licenses.id'], name=op.f('fk_models_license_id_licenses')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_models')),
    sa.UniqueConstraint('name', name=op.f('uq_models_name'))
    )
    op.create_index(op.f('ix_models_sha256'), 'models', ['sha256'], unique=False)
    op.create_table('campaigns',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('brand', sa.String(length=200), nullable=False),
    sa.Column('commercial_use', sa.Boolean(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=True),
    sa.Column('due_date', sa.Date(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('default_model_id', sa.Integer(), nullable=True),
    sa.Column('style_suffix', sa.Text(), nullable=False),
    sa.Column('style_negative', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('draft', 'active', 'archived')", name=op.f('ck_campaigns_status')),
    sa.ForeignKeyConstraint(['default_model_id'], ['models.id'], name=op.f('fk_campaigns_default_model_id_models')),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_campaigns_owner_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaigns')),
    sa.UniqueConstraint('name', name=op.f('uq_campaigns_name'))
    )
    op.create_table('prompt_templates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_prompt_templates_campaign_id_campaigns')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prompt_templates')),
    sa.UniqueConstraint('campaign_id', 'name', name=op.f('uq_prompt_templates_campaign_id'))
    )
    op.create_table('template_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('template_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('negative_body', sa.Text(), nullable=False),
    sa.Column('default_params', sa.JSON(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_template_versions_created_by_id_users')),
    sa.ForeignKeyConstraint(['template_id'], ['prompt_templates.id'], name=op.f('fk_template_versions_template_id_prompt_templates')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_template_versions')),
    sa.UniqueConstraint('template_id', 'version', name=op.f('uq_template_versions_template_id'))
    )
    op.create_table('jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('template_version_id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('variable_rows', sa.JSON(), nullable=False),
    sa.Column('seeds', sa.JSON(), nullable=False),
    sa.Column('formats', sa.JSON(), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('submitted_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind IN ('txt2img', 'img2img', 'inpaint', 'outpaint', 'upscale')", name=op.f('ck_jobs_kind')),
    sa.CheckConstraint("status IN ('queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled')", name=op.f('ck_jobs_status')),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_jobs_campaign_id_campaigns')),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_jobs_model_id_models')),
    sa.ForeignKeyConstraint(['submitted_by_id'], ['users.id'], name=op.f('fk_jobs_submitted_by_id_users')),
    sa.ForeignKeyConstraint(['template_version_id'], ['template_versions.id'], name=op.f('fk_jobs_template_version_id_template_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs'))
    )
    op.create_index(op.f('ix_jobs_campaign_id'), 'jobs', ['campaign_id'], unique=False)
    op.create_table('renders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('index', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('lease_owner', sa.String(length=200), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('rendered_by', sa.String(length=200), nullable=True),
    sa.Column('progress_step', sa.Integer(), nullable=False),
    sa.Column('progress_total', sa.Integer(), nullable=False),
    sa.Column('queued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.CheckConstraint("kind IN ('txt2img', 'img2img', 'inpaint', 'outpaint', 'upscale')", name=op.f('ck_renders_kind')),
    sa.CheckConstraint("state IN ('queued', 'leased', 'running', 'succeeded', 'failed', 'cancelled')", name=op.f('ck_renders_state')),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_renders_job_id_jobs')),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_renders_model_id_models')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_renders')),
    sa.UniqueConstraint('job_id', 'index', name=op.f('uq_renders_job_id'))
    )
    op.create_index(op.f('ix_renders_job_id'), 'renders', ['job_id'], unique=False)
    op.create_index('ix_renders_state_lease_expires_at', 'renders', ['state', 'lease_expires_at'], unique=False)
    op.create_table('assets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('render_id', sa.Integer(), nullable=False),
    sa.Column('storage_key', sa.String(length=500), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('format', sa.String(length=16), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('thumbnail_key', sa.String(length=500), nullable=False),
    sa.Column('approval_state', sa.String(length=32), nullable=False),
    sa.Column('parent_asset_id', sa.Integer(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("approval_state IN ('pending', 'approved', 'rejected', 'changes_requested')", name=op.f('ck_assets_approval_state')),
    sa.ForeignKeyConstraint(['parent_asset_id'], ['assets.id'], name=op.f('fk_assets_parent_asset_id_assets')),
    sa.ForeignKeyConstraint(['render_id'], ['renders.id'], name=op.f('fk_assets_render_id_renders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_assets')),
    sa.UniqueConstraint('render_id', name=op.f('uq_assets_render_id'))
    )
    op.create_index(op.f('ix_assets_approval_state'), 'assets', ['approval_state'], unique=False)
    op.create_index(op.f('ix_assets_created_at'), 'assets', ['created_at'], unique=False)
    op.create_table('reviews',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('asset_id', sa.Integer(), nullable=False),
    sa.Column('reviewer_id', sa.Integer(), nullable=False),
    sa.Column('decision', sa.String(length=32), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("decision IN ('approve', 'reject', 'request_changes')", name=op.f('ck_reviews_decision')),
    sa.ForeignKeyConstraint(['asset_id'], ['assets.id'], name=op.f('fk_reviews_asset_id_assets')),
    sa.ForeignKeyConstraint(['reviewer_id'], ['users.id'], name=op.f('fk_reviews_reviewer_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reviews'))
    )
    op.create_index(op.f('ix_reviews_asset_id'), 'reviews', ['asset_id'], unique=False)
    op.create_table('job_worker_failures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('worker_name', sa.String(length=200), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_worker_failures_job_id_jobs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_worker_failures')),
    sa.UniqueConstraint('job_id', 'worker_name', name=op.f('uq_job_worker_failures_job_id'))
    )


def downgrade() -> None:
    op.drop_table('job_worker_failures')
    op.drop_index(op.f('ix_reviews_asset_id'), table_name='reviews')
    op.drop_table('reviews')
    op.drop_index(op.f('ix_assets_created_at'), table_name='assets')
    op.drop_index(op.f('ix_assets_approval_state'), table_name='assets')
    op.drop_table('assets')
    op.drop_index('ix_renders_state_lease_expires_at', table_name='renders')
    op.drop_index(op.f('ix_renders_job_id'), table_name='renders')
    op.drop_table('renders')
    op.drop_index(op.f('ix_jobs_campaign_id'), table_name='jobs')
    op.drop_table('jobs')
    op.drop_table('template_versions')
    op.drop_table('prompt_templates')
    op.drop_table('campaigns')
    op.drop_index(op.f('ix_models_sha256'), table_name='models')
    op.drop_table('models')
    op.drop_index(op.f('ix_audit_events_action'), table_name='audit_events')
    op.drop_table('audit_events')
    op.drop_table('workers')
    op.drop_table('users')
    op.drop_table('licenses')
