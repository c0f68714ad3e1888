"""Per-consumer limits: an admin's overrides of the deployment's quotas.

Each column is NULL when the deployment's default (``RUIS_...``) applies.
Minimum costs are integer units of 10^-12 ε or ρ, like budgets.

Revision ID: 0005
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consumer_limits",
        sa.Column("consumer_id", sa.Integer(), sa.ForeignKey("consumers.id"), primary_key=True),
        sa.Column("min_epsilon_units", sa.BigInteger(), nullable=True),
        sa.Column("min_rho_units", sa.BigInteger(), nullable=True),
        sa.Column("max_cells", sa.Integer(), nullable=True),
        sa.Column("max_concurrent", sa.Integer(), nullable=True),
        sa.Column("requests_per_minute", sa.Integer(), nullable=True),
        sa.Column("burst", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("consumer_limits")
