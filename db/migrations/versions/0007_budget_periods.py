"""Budgets per period: a budget's period and what each of its periods spent.

``budgets.period_column`` / ``period_every`` (NULL: one budget over everything);
``budget_periods`` holds one row per charged period, created at its first charge.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("budgets") as batch:
        batch.add_column(sa.Column("period_column", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("period_every", sa.String(length=8), nullable=True))
    op.create_table(
        "budget_periods",
        sa.Column("budget_id", sa.Integer, sa.ForeignKey("budgets.id"), nullable=False),
        sa.Column("period_start", sa.String(length=10), nullable=False),
        sa.Column("spent_units", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("budget_id", "period_start"),
        sa.CheckConstraint("spent_units >= 0", name="ck_budget_period_nonneg"),
    )


def downgrade() -> None:
    op.drop_table("budget_periods")
    with op.batch_alter_table("budgets") as batch:
        batch.drop_column("period_every")
        batch.drop_column("period_column")
