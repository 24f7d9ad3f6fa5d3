"""LTI 1.3: which course (context) of its platform each account was seen in

``lti_memberships``: an account seen in a context, by a launch or a Names and Roles sync;
grade passback sends a student's score only to the line items of their courses.

Revision ID: b7e2f4a9c610
Revises: a1d4c7e9b352
Create Date: 2026-12-05 15:10:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = 'b7e2f4a9c610'
down_revision = 'a1d4c7e9b352'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'lti_memberships',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('context_id', sa.String(length=255), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['lti_accounts.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('account_id', 'context_id',
                            name='uq_lti_memberships_account_context'),
    )
    op.create_index('ix_lti_memberships_context_id', 'lti_memberships', ['context_id'])


def downgrade():
    op.drop_index('ix_lti_memberships_context_id', table_name='lti_memberships')
    op.drop_table('lti_memberships')
