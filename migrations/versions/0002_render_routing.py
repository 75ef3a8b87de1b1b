"""Renders remember the queue their last message went to and when it was sent, so the reaper
can re-send renders whose message was lost; an index on (job_id, state) keeps the job status
check after each finished render cheap.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 09:30:00
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0002'
down_revision: Union[str, None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # batch_alter_table so SQLite (the embedded default) can take the change too.
    with op.batch_alter_table('renders') as batch:
        batch.add_column(sa.Column('queue', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('last_enqueued_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_renders_job_id_state', 'renders', ['job_id', 'state'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_renders_job_id_state', table_name='renders')
    with op.batch_alter_table('renders') as batch:
        batch.drop_column('last_enqueued_at')
        batch.drop_column('queue')
