"""Blobs: the database blob store's table

``blobs``: uploaded notebooks and executed notebooks' HTML by their sha256, for
``BLOB_STORE=database`` (``service.blobs.database``): workers on other machines read and write
them through the database instead of a shared folder. Empty until ``BLOB_STORE=database`` is set
or ``flask blobs move --to database`` copies the folder's blobs in.

Revision ID: b2d9e4f7a1c3
Revises: c8f1d3e5a7b9
Create Date: 2026-12-05 23:40:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = 'b2d9e4f7a1c3'
down_revision = 'c8f1d3e5a7b9'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'blobs',
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('sha256'),
    )


def downgrade():
    op.drop_table('blobs')
