"""LTI 1.3: the platforms' users, the resource links' line items, the outbox of scores

``lti_accounts``: a platform's user (``sub``) linked to a student or an instructor.
``lti_line_items``: where one exercise's scores go in a platform (the AGS claim of a resource
link's launches). ``lti_scores``: the newest score of a student for a line item until the
platform acknowledged it (grade passback's outbox).

Revision ID: a1d4c7e9b352
Revises: f3b8d2a6c915
Create Date: 2026-12-05 15:05:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = 'a1d4c7e9b352'
down_revision = 'f3b8d2a6c915'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'lti_accounts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('platform_id', sa.Integer(), nullable=False),
        sa.Column('sub', sa.String(length=255), nullable=False),
        sa.Column('student_pk', sa.Integer(), nullable=True),
        sa.Column('instructor_id', sa.Integer(), nullable=True),
        sa.Column('name', sa.String(length=200), nullable=True),
        sa.Column('email', sa.String(length=320), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('last_launch_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['platform_id'], ['lti_platforms.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['student_pk'], ['students.id']),
        sa.ForeignKeyConstraint(['instructor_id'], ['instructors.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('platform_id', 'sub', name='uq_lti_accounts_platform_sub'),
    )
    op.create_index('ix_lti_accounts_student_pk', 'lti_accounts', ['student_pk'])
    op.create_index('ix_lti_accounts_instructor_id', 'lti_accounts', ['instructor_id'])
    op.create_table(
        'lti_line_items',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('platform_id', sa.Integer(), nullable=False),
        sa.Column('deployment_id', sa.String(length=255), nullable=False),
        sa.Column('context_id', sa.String(length=255), nullable=True),
        sa.Column('resource_link_id', sa.String(length=255), nullable=False),
        sa.Column('exercise', sa.String(length=64), nullable=False),
        sa.Column('lineitem_url', sa.String(length=2000), nullable=True),
        sa.Column('lineitems_url', sa.String(length=2000), nullable=True),
        sa.Column('scopes', sa.JSON(), nullable=False),
        sa.Column('memberships_url', sa.String(length=2000), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['platform_id'], ['lti_platforms.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('platform_id', 'deployment_id', 'resource_link_id',
                            name='uq_lti_line_items_link'),
    )
    op.create_index('ix_lti_line_items_exercise', 'lti_line_items', ['exercise'])
    op.create_table(
        'lti_scores',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('line_item_id', sa.Integer(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('score_given', sa.Float(), nullable=True),
        sa.Column('score_maximum', sa.Float(), nullable=False),
        sa.Column('activity_progress', sa.String(length=32), nullable=False),
        sa.Column('grading_progress', sa.String(length=32), nullable=False),
        sa.Column('comment', sa.Text(), nullable=True),
        sa.Column('scored_at', sa.DateTime(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
        sa.Column('last_status', sa.Integer(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('sent_at', sa.DateTime(), nullable=True),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['line_item_id'], ['lti_line_items.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['account_id'], ['lti_accounts.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('line_item_id', 'account_id', name='uq_lti_scores_line_item_account'),
    )
    op.create_index('ix_lti_scores_due', 'lti_scores', ['state', 'next_attempt_at'])
    op.create_index('ix_lti_scores_account_id', 'lti_scores', ['account_id'])


def downgrade():
    op.drop_index('ix_lti_scores_account_id', table_name='lti_scores')
    op.drop_index('ix_lti_scores_due', table_name='lti_scores')
    op.drop_table('lti_scores')
    op.drop_index('ix_lti_line_items_exercise', table_name='lti_line_items')
    op.drop_table('lti_line_items')
    op.drop_index('ix_lti_accounts_instructor_id', table_name='lti_accounts')
    op.drop_index('ix_lti_accounts_student_pk', table_name='lti_accounts')
    op.drop_table('lti_accounts')
