"""idempotency keys of POST /api/submissions

A client's ``Idempotency-Key`` and the submission it was answered with, unique per student
(``service.models.IdempotencyKey``).

Revision ID: a7c3e9d41f60
Revises: 5e1f0a7d3b21
Create Date: 2026-12-10 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = 'a7c3e9d41f60'
down_revision = '5e1f0a7d3b21'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('idempotency_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('student_pk', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('request_sha256', sa.String(length=64), nullable=False),
    sa.Column('submission_id', sa.Integer(), nullable=False),
    sa.Column('duplicate', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['student_pk'], ['students.id'], ),
    sa.ForeignKeyConstraint(['submission_id'], ['submissions.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('student_pk', 'key', name='uq_idempotency_keys_student_key')
    )


def downgrade():
    op.drop_table('idempotency_keys')
