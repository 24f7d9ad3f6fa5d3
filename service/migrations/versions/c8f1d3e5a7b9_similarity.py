"""Similarity: trained models' fingerprints, similarity runs, their pairs, reviews

``run_fingerprints``: per graded run, the hash of the trained values and the predicted classes;
``similarity_runs`` (a job on the queue), ``similarity_pairs`` (its result),
``similarity_reviews`` (instructors' decisions on a pair, append-only).

Revision ID: c8f1d3e5a7b9
Revises: b7e2f4a9c610
Create Date: 2026-12-05 18:20:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = 'c8f1d3e5a7b9'
down_revision = 'b7e2f4a9c610'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'run_fingerprints',
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('weights', sa.String(length=64), nullable=False),
        sa.Column('images', sa.JSON(), nullable=False),
        sa.Column('predictions', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['run_id'], ['grading_runs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('run_id'),
    )
    op.create_index('ix_run_fingerprints_weights', 'run_fingerprints', ['weights'])
    op.create_table(
        'similarity_runs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('exercise', sa.String(length=64), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('requested_by', sa.String(length=64), nullable=False),
        sa.Column('queued_at', sa.DateTime(), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=True),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.Column('worker', sa.String(length=200), nullable=True),
        sa.Column('lease_expires_at', sa.DateTime(), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('task_id', sa.String(length=200), nullable=True),
        sa.Column('dispatched_at', sa.DateTime(), nullable=True),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('submissions', sa.JSON(), nullable=True),
        sa.Column('summary', sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_similarity_runs_exercise', 'similarity_runs', ['exercise', 'id'])
    op.create_index('ix_similarity_runs_state', 'similarity_runs', ['state', 'id'])
    op.create_table(
        'similarity_pairs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('rank', sa.Integer(), nullable=False),
        sa.Column('student_a_pk', sa.Integer(), nullable=False),
        sa.Column('student_b_pk', sa.Integer(), nullable=False),
        sa.Column('submission_a_id', sa.Integer(), nullable=False),
        sa.Column('submission_b_id', sa.Integer(), nullable=False),
        sa.Column('code', sa.Float(), nullable=True),
        sa.Column('distinctive', sa.Integer(), nullable=True),
        sa.Column('model', sa.Float(), nullable=True),
        sa.Column('identical_weights', sa.Boolean(), nullable=False),
        sa.Column('code_flagged', sa.Boolean(), nullable=False),
        sa.Column('model_flagged', sa.Boolean(), nullable=False),
        sa.Column('flagged', sa.Boolean(), nullable=False),
        sa.Column('spans', sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(['run_id'], ['similarity_runs.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['student_a_pk'], ['students.id']),
        sa.ForeignKeyConstraint(['student_b_pk'], ['students.id']),
        sa.ForeignKeyConstraint(['submission_a_id'], ['submissions.id']),
        sa.ForeignKeyConstraint(['submission_b_id'], ['submissions.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_similarity_pairs_run_rank', 'similarity_pairs', ['run_id', 'rank'])
    for column in ('student_a_pk', 'student_b_pk', 'submission_a_id', 'submission_b_id'):
        op.create_index(f'ix_similarity_pairs_{column}', 'similarity_pairs', [column])
    op.create_table(
        'similarity_reviews',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('exercise', sa.String(length=64), nullable=False),
        sa.Column('student_a_pk', sa.Integer(), nullable=False),
        sa.Column('student_b_pk', sa.Integer(), nullable=False),
        sa.Column('decision', sa.String(length=16), nullable=False),
        sa.Column('comment', sa.Text(), nullable=False),
        sa.Column('author', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['student_a_pk'], ['students.id']),
        sa.ForeignKeyConstraint(['student_b_pk'], ['students.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_similarity_reviews_pair', 'similarity_reviews',
                    ['exercise', 'student_a_pk', 'student_b_pk', 'id'])
    for column in ('student_a_pk', 'student_b_pk'):
        op.create_index(f'ix_similarity_reviews_{column}', 'similarity_reviews', [column])


def downgrade():
    for column in ('student_a_pk', 'student_b_pk'):
        op.drop_index(f'ix_similarity_reviews_{column}', table_name='similarity_reviews')
    op.drop_index('ix_similarity_reviews_pair', table_name='similarity_reviews')
    op.drop_table('similarity_reviews')
    for column in ('student_a_pk', 'student_b_pk', 'submission_a_id', 'submission_b_id'):
        op.drop_index(f'ix_similarity_pairs_{column}', table_name='similarity_pairs')
    op.drop_index('ix_similarity_pairs_run_rank', table_name='similarity_pairs')
    op.drop_table('similarity_pairs')
    op.drop_index('ix_similarity_runs_state', table_name='similarity_runs')
    op.drop_index('ix_similarity_runs_exercise', table_name='similarity_runs')
    op.drop_table('similarity_runs')
    op.drop_index('ix_run_fingerprints_weights', table_name='run_fingerprints')
    op.drop_table('run_fingerprints')
