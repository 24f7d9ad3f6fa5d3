"""GPU leases, and what each run asks of the GPUs

``gpu_leases``: one row per device (GPU or MIG UUID) of a grading host, with the worker and
run holding it and when that lease runs out (``service.queue.gpu_leases``); ``dirty`` marks a
device whose memory was not free after a run. ``grading_runs.gpu`` (``required``,
``preferred``, ``none``) is copied from the exercise when a run is made; the runs already in the
table asked for none.

Revision ID: d4a8f2c61b90
Revises: 7b3e9d1c4a60
Create Date: 2026-12-12 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = 'd4a8f2c61b90'
down_revision = '7b3e9d1c4a60'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'gpu_leases',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.Column('device', sa.String(length=128), nullable=False),
        sa.Column('worker', sa.String(length=200), nullable=True),
        sa.Column('run_id', sa.Integer(), nullable=True),
        sa.Column('expires_at', sa.DateTime(), nullable=True),
        sa.Column('dirty', sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column('used_mib', sa.Integer(), nullable=True),
        sa.Column('checked_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('host', 'device', name='uq_gpu_leases_host_device'),
    )
    with op.batch_alter_table('grading_runs') as batch_op:
        batch_op.add_column(sa.Column('gpu', sa.String(length=16), server_default='none',
                                      nullable=False))


def downgrade():
    with op.batch_alter_table('grading_runs') as batch_op:
        batch_op.drop_column('gpu')
    op.drop_table('gpu_leases')
