"""The course's rules: schedules, extensions, adjustments

``schedules``: one row per exercise with its dates, late penalty, what counts, daily limit,
time zone, weight and release rules (``service.domain.course_rules``). ``extension_grants``: one
student's own dates for one exercise. ``adjustments``: instructors' changes to a score, never
updated or deleted (the latest per student, exercise and item is in force; the rest is the audit
trail).

Revision ID: e5c1a9b7d203
Revises: d4a8f2c61b90
Create Date: 2026-12-05 12:00:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = 'e5c1a9b7d203'
down_revision = 'd4a8f2c61b90'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'schedules',
        sa.Column('exercise', sa.String(length=64), nullable=False),
        sa.Column('opens_at', sa.DateTime(), nullable=True),
        sa.Column('due_at', sa.DateTime(), nullable=True),
        sa.Column('late_until', sa.DateTime(), nullable=True),
        sa.Column('late_penalty', sa.String(length=32), nullable=False),
        sa.Column('counts', sa.String(length=16), nullable=False),
        sa.Column('attempts_per_day', sa.Integer(), nullable=True),
        sa.Column('timezone', sa.String(length=64), nullable=False),
        sa.Column('weight', sa.Double(), nullable=False),
        sa.Column('release', sa.JSON(), nullable=True),
        sa.Column('published_at', sa.DateTime(), nullable=True),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.Column('updated_by', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('exercise'),
    )
    op.create_table(
        'extension_grants',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('student_pk', sa.Integer(), nullable=False),
        sa.Column('exercise', sa.String(length=64), nullable=False),
        sa.Column('due_at', sa.DateTime(), nullable=False),
        sa.Column('late_until', sa.DateTime(), nullable=True),
        sa.Column('extra_attempts', sa.Integer(), nullable=False),
        sa.Column('comment', sa.Text(), nullable=False),
        sa.Column('granted_by', sa.String(length=64), nullable=False),
        sa.Column('granted_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['student_pk'], ['students.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('student_pk', 'exercise',
                            name='uq_extension_grants_student_exercise'),
    )
    op.create_table(
        'adjustments',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('student_pk', sa.Integer(), nullable=False),
        sa.Column('exercise', sa.String(length=64), nullable=False),
        sa.Column('item_id', sa.String(length=64), nullable=True),
        sa.Column('mode', sa.String(length=8), nullable=False),
        sa.Column('points', sa.Double(), nullable=False),
        sa.Column('comment', sa.Text(), nullable=False),
        sa.Column('author', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('before', sa.Double(), nullable=True),
        sa.Column('after', sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(['student_pk'], ['students.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_adjustments_student_exercise', 'adjustments',
                    ['student_pk', 'exercise', 'id'])


def downgrade():
    op.drop_index('ix_adjustments_student_exercise', table_name='adjustments')
    op.drop_table('adjustments')
    op.drop_table('extension_grants')
    op.drop_table('schedules')
