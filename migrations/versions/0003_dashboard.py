"""What the dashboard needs: campaign channel formats and members, template versions' declared
variables, job names and submission
keys (a repeated form submission makes no second job), the asset a render re-renders, and assets
that carry their campaign, job, model and channel format so the gallery filters without joins.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 12:20:00
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0003'
down_revision: Union[str, None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_GALLERY_INDEXES = {
    'ix_assets_campaign_id_id': ['campaign_id', 'id'],
    'ix_assets_job_id_id': ['job_id', 'id'],
    'ix_assets_model_id_id': ['model_id', 'id'],
    'ix_assets_channel_format_id': ['channel_format', 'id'],
    'ix_assets_approval_state_id': ['approval_state', 'id'],
}


def upgrade() -> None:
    # batch_alter_table so SQLite (the embedded default) can take the changes too.
    with op.batch_alter_table('campaigns') as batch:
        batch.add_column(sa.Column('channel_formats', sa.JSON(), nullable=False, server_default='[]'))
        batch.add_column(sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('campaigns') as batch:
        batch.alter_column('channel_formats', server_default=None)

    op.create_table(
        'campaign_members',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('campaign_id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_campaign_members_campaign_id_campaigns')),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_campaign_members_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_campaign_members')),
        sa.UniqueConstraint('campaign_id', 'user_id', name=op.f('uq_campaign_members_campaign_id')),
    )
    op.create_index(op.f('ix_campaign_members_user_id'), 'campaign_members', ['user_id'], unique=False)

    with op.batch_alter_table('template_versions') as batch:
        batch.add_column(sa.Column('variables', sa.JSON(), nullable=False, server_default='[]'))
    with op.batch_alter_table('template_versions') as batch:
        batch.alter_column('variables', server_default=None)

    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('name', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('submission_key', sa.String(length=64), nullable=True))
        batch.create_unique_constraint(op.f('uq_jobs_submission_key'), ['submission_key'])

    with op.batch_alter_table('renders') as batch:
        batch.add_column(sa.Column('parent_asset_id', sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f('fk_renders_parent_asset_id_assets'), 'assets', ['parent_asset_id'], ['id'])

    with op.batch_alter_table('assets') as batch:
        batch.add_column(sa.Column('campaign_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('job_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('model_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('channel_format', sa.String(length=64), nullable=True))
    # Existing assets take their values from their render and its job.
    op.execute("UPDATE assets SET job_id = (SELECT renders.job_id FROM renders WHERE renders.id = assets.render_id), "
               "model_id = (SELECT renders.model_id FROM renders WHERE renders.id = assets.render_id)")
    op.execute("UPDATE assets SET campaign_id = (SELECT jobs.campaign_id FROM jobs WHERE jobs.id = assets.job_id)")
    with op.batch_alter_table('assets') as batch:
        batch.alter_column('campaign_id', existing_type=sa.Integer(), nullable=False)
        batch.alter_column('job_id', existing_type=sa.Integer(), nullable=False)
        batch.alter_column('model_id', existing_type=sa.Integer(), nullable=False)
        batch.create_foreign_key(op.f('fk_assets_campaign_id_campaigns'), 'campaigns', ['campaign_id'], ['id'])
        batch.create_foreign_key(op.f('fk_assets_job_id_jobs'), 'jobs', ['job_id'], ['id'])
        batch.create_foreign_key(op.f('fk_assets_model_id_models'), 'models', ['model_id'], ['id'])
    # (approval_state, id) serves everything the single-column index did, and the gallery's paging.
    op.drop_index(op.f('ix_assets_approval_state'), table_name='assets')
    for name, columns in _GALLERY_INDEXES.items():
        op.create_index(name, 'assets', columns, unique=False)


def downgrade() -> None:
    for name in _GALLERY_INDEXES:
        op.drop_index(name, table_name='assets')
    op.create_index(op.f('ix_assets_approval_state'), 'assets', ['approval_state'], unique=False)
    with op.batch_alter_table('assets') as batch:
        batch.drop_constraint(op.f('fk_assets_model_id_models'), type_='foreignkey')
        batch.drop_constraint(op.f('fk_assets_job_id_jobs'), type_='foreignkey')
        batch.drop_constraint(op.f('fk_assets_campaign_id_campaigns'), type_='foreignkey')
        batch.drop_column('channel_format')
        batch.drop_column('model_id')
        batch.drop_column('job_id')
        batch.drop_column('campaign_id')
    with op.batch_alter_table('renders') as batch:
        batch.drop_constraint(op.f('fk_renders_parent_asset_id_assets'), type_='foreignkey')
        batch.drop_column('parent_asset_id')
    with op.batch_alter_table('jobs') as batch:
        batch.drop_constraint(op.f('uq_jobs_submission_key'), type_='unique')
        batch.drop_column('submission_key')
        batch.drop_column('name')
    with op.batch_alter_table('template_versions') as batch:
        batch.drop_column('variables')
    op.drop_index(op.f('ix_campaign_members_user_id'), table_name='campaign_members')
    op.drop_table('campaign_members')
    with op.batch_alter_table('campaigns') as batch:
        batch.drop_column('updated_at')
        batch.drop_column('channel_formats')
