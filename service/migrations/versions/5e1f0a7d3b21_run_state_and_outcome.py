"""grading runs: status -> state, run_status -> outcome

One name per concept: ``state`` is the queue's (``service.states.RunState``), ``outcome`` the
grader's (``grader.RunStatus``); the index on the queue state follows its column. The values
are unchanged (the enums of ``service.states`` store their strings), so only names move.

Revision ID: 5e1f0a7d3b21
Revises: c0042c5721b2
Create Date: 2026-12-06 10:00:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '5e1f0a7d3b21'
down_revision = 'c0042c5721b2'
branch_labels = None
depends_on = None


def upgrade():
    # The index is dropped before and made after the renames: SQLite's batch mode copies the
    # table, and an index naming a column that is being renamed would not survive the copy.
    with op.batch_alter_table('grading_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_grading_runs_status')
    with op.batch_alter_table('grading_runs', schema=None) as batch_op:
        batch_op.alter_column('status', new_column_name='state')
        batch_op.alter_column('run_status', new_column_name='outcome')
    op.create_index('ix_grading_runs_state', 'grading_runs', ['state', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('grading_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_grading_runs_state')
    with op.batch_alter_table('grading_runs', schema=None) as batch_op:
        batch_op.alter_column('state', new_column_name='status')
        batch_op.alter_column('outcome', new_column_name='run_status')
    op.create_index('ix_grading_runs_status', 'grading_runs', ['status', 'id'], unique=False)
