"""indexes on the foreign keys and columns the pages query by

``grading_runs.submission_id`` had none, so every read of a submission's runs (each page and
API answer about a submission) scanned the whole table; ``submissions.exercise`` is what the
gradebook, the statistics and "regrade all" select by. ``submissions.student_pk`` (leading
``ix_submissions_student_created``) and ``item_scores.run_id`` were already indexed;
``idempotency_keys.submission_id`` gets one too (its foreign key is checked on deletes).

Revision ID: 7b3e9d1c4a60
Revises: a7c3e9d41f60
Create Date: 2026-12-10 10:00:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '7b3e9d1c4a60'
down_revision = 'a7c3e9d41f60'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_grading_runs_submission', 'grading_runs', ['submission_id', 'id'],
                    unique=False)
    op.create_index('ix_submissions_exercise_created', 'submissions', ['exercise', 'created_at'],
                    unique=False)
    op.create_index('ix_idempotency_keys_submission', 'idempotency_keys', ['submission_id'],
                    unique=False)


def downgrade():
    op.drop_index('ix_idempotency_keys_submission', table_name='idempotency_keys')
    op.drop_index('ix_submissions_exercise_created', table_name='submissions')
    op.drop_index('ix_grading_runs_submission', table_name='grading_runs')
