"""License compliance: renders can be held (a suspended model, a license that now refuses them),
render state changes are sealed into the audit log in batches, jobs keep the policy decision that
allowed them, assets keep the license chain they were made under and can be flagged for
re-review, models carry a policy version workers cache their terms by, licenses and models
remember when they were last changed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 09:00:00
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0004'
down_revision: Union[str, None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_STATES_BEFORE = "state IN ('queued', 'leased', 'running', 'succeeded', 'failed', 'cancelled')"
_STATES_AFTER = "state IN ('queued', 'held', 'leased', 'running', 'succeeded', 'failed', 'cancelled')"


def upgrade() -> None:
    # batch_alter_table so SQLite (the embedded default) can take the changes too.
    with op.batch_alter_table('licenses') as batch:
        batch.add_column(sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('models') as batch:
        batch.add_column(sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('policy_version', sa.Integer(), nullable=False, server_default='1'))
    with op.batch_alter_table('models') as batch:
        batch.alter_column('policy_version', server_default=None)

    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('policy', sa.JSON(), nullable=True))

    with op.batch_alter_table('renders') as batch:
        batch.add_column(sa.Column('hold_reason', sa.Text(), nullable=True))
        batch.add_column(sa.Column('audited_state', sa.String(length=16), nullable=True))
        batch.drop_constraint(op.f('ck_renders_state'), type_='check')
        batch.create_check_constraint(op.f('ck_renders_state'), _STATES_AFTER)
    # Renders that finished before render events existed are not written to the log afterwards.
    op.execute("UPDATE renders SET audited_state = state WHERE state IN ('succeeded', 'failed', 'cancelled')")
    op.create_index('ix_renders_audited_state_state', 'renders', ['audited_state', 'state'], unique=False)

    with op.batch_alter_table('assets') as batch:
        batch.add_column(sa.Column('license_chain', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('needs_rereview', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column('rereview_reason', sa.Text(), nullable=True))
    with op.batch_alter_table('assets') as batch:
        batch.alter_column('needs_rereview', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('assets') as batch:
        batch.drop_column('rereview_reason')
        batch.drop_column('needs_rereview')
        batch.drop_column('license_chain')

    op.drop_index('ix_renders_audited_state_state', table_name='renders')
    # A held render becomes an ordinary queued one again (the reaper sends it).
    op.execute("UPDATE renders SET state = 'queued' WHERE state = 'held'")
    with op.batch_alter_table('renders') as batch:
        batch.drop_constraint(op.f('ck_renders_state'), type_='check')
        batch.create_check_constraint(op.f('ck_renders_state'), _STATES_BEFORE)
        batch.drop_column('audited_state')
        batch.drop_column('hold_reason')

    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('policy')

    with op.batch_alter_table('models') as batch:
        batch.drop_column('policy_version')
        batch.drop_column('updated_at')

    with op.batch_alter_table('licenses') as batch:
        batch.drop_column('updated_at')
