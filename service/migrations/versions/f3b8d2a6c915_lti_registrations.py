"""LTI 1.3: platform registrations, deployments, the tool's keys, used launch nonces, launch data

``lti_platforms``: one row per (issuer, client id) the tool is registered with, with the
platform's login, token and key set URLs. ``lti_deployments``: the deployment ids of each
registration. ``lti_keys``: the tool's RSA keys (the newest not retired signs; the others stay
published in /lti/jwks until retired). ``lti_nonces``: launch nonces already accepted, kept
until they expire (``service.domain.lti_registrations``, ``lti_keys``, ``lti_nonces``).
``lti_launch_data``: what pylti1p3 keeps between the login and the launch, and the launch's
claims (``service.lti.launch_storage``).

Revision ID: f3b8d2a6c915
Revises: e5c1a9b7d203
Create Date: 2026-12-05 15:00:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = 'f3b8d2a6c915'
down_revision = 'e5c1a9b7d203'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'lti_platforms',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('issuer', sa.String(length=255), nullable=False),
        sa.Column('client_id', sa.String(length=255), nullable=False),
        sa.Column('auth_login_url', sa.String(length=2000), nullable=False),
        sa.Column('auth_token_url', sa.String(length=2000), nullable=False),
        sa.Column('key_set_url', sa.String(length=2000), nullable=False),
        sa.Column('audience', sa.String(length=2000), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('issuer', 'client_id', name='uq_lti_platforms_issuer_client'),
    )
    op.create_table(
        'lti_deployments',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('platform_id', sa.Integer(), nullable=False),
        sa.Column('deployment_id', sa.String(length=255), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['platform_id'], ['lti_platforms.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('platform_id', 'deployment_id',
                            name='uq_lti_deployments_platform_deployment'),
    )
    op.create_table(
        'lti_keys',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kid', sa.String(length=64), nullable=False),
        sa.Column('private_pem', sa.Text(), nullable=True),
        sa.Column('public_jwk', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('retired_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('kid', name='uq_lti_keys_kid'),
    )
    op.create_table(
        'lti_nonces',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('issuer', sa.String(length=255), nullable=False),
        sa.Column('nonce', sa.String(length=255), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('issuer', 'nonce', name='uq_lti_nonces_issuer_nonce'),
    )
    op.create_index('ix_lti_nonces_expires_at', 'lti_nonces', ['expires_at'])
    op.create_table(
        'lti_launch_data',
        sa.Column('key_hash', sa.String(length=64), nullable=False),
        sa.Column('value', sa.JSON(), nullable=True),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('key_hash'),
    )
    op.create_index('ix_lti_launch_data_expires_at', 'lti_launch_data', ['expires_at'])


def downgrade():
    op.drop_index('ix_lti_launch_data_expires_at', table_name='lti_launch_data')
    op.drop_table('lti_launch_data')
    op.drop_index('ix_lti_nonces_expires_at', table_name='lti_nonces')
    op.drop_table('lti_nonces')
    op.drop_table('lti_keys')
    op.drop_table('lti_deployments')
    op.drop_table('lti_platforms')
