"""Initial schema: consumers, keys, datasets, budgets, the hash-chained ledger, releases.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64


def upgrade() -> None:
    op.create_table(
        "consumers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_consumers_name", "consumers", ["name"], unique=True)
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("consumer_id", sa.Integer, sa.ForeignKey("consumers.id"), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_api_keys_consumer_id", "api_keys", ["consumer_id"])
    op.create_index("ix_api_keys_key_hash", "api_keys", ["key_hash"], unique=True)
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("metadata_json", sa.Text, nullable=False),
        sa.Column("cap_model", sa.String(8), nullable=True),
        sa.Column("cap_total_units", sa.BigInteger, nullable=True),
        sa.Column("cap_spent_units", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("cap_spent_units >= 0", name="ck_cap_spent_nonneg"),
        sa.CheckConstraint(
            "cap_total_units IS NULL OR cap_spent_units <= cap_total_units",
            name="ck_cap_not_exceeded",
        ),
    )
    op.create_index("ix_datasets_name", "datasets", ["name"], unique=True)
    op.create_table(
        "budgets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("consumer_id", sa.Integer, sa.ForeignKey("consumers.id"), nullable=False),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id"), nullable=False),
        sa.Column("model", sa.String(8), nullable=False),
        sa.Column("total_units", sa.BigInteger, nullable=False),
        sa.Column("spent_units", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("consumer_id", "dataset_id", name="uq_budget"),
        sa.CheckConstraint("spent_units >= 0", name="ck_budget_spent_nonneg"),
        sa.CheckConstraint("spent_units <= total_units", name="ck_budget_not_exceeded"),
    )
    op.create_index("ix_budgets_consumer_id", "budgets", ["consumer_id"])
    op.create_index("ix_budgets_dataset_id", "budgets", ["dataset_id"])
    ledger_head = op.create_table(
        "ledger_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(ledger_head, [{"id": 1, "seq": 0, "hash": GENESIS_HASH}])
    op.create_table(
        "ledger",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("time", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("consumer", sa.String(64), nullable=True),
        sa.Column("dataset", sa.String(64), nullable=True),
        sa.Column("cost_json", sa.Text, nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("details_json", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_ledger_consumer_seq", "ledger", ["consumer", "seq"])
    op.create_index("ix_ledger_dataset_seq", "ledger", ["dataset", "seq"])
    op.create_index("ix_ledger_kind_seq", "ledger", ["kind", "seq"])
    op.create_index("ix_ledger_time", "ledger", ["time"])
    op.create_table(
        "releases",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("consumer_id", sa.Integer, sa.ForeignKey("consumers.id"), nullable=False),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id"), nullable=False),
        sa.Column("query_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("body_json", sa.Text, nullable=True),
        sa.Column("ledger_seq", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("consumer_id", "dataset_id", "query_hash", name="uq_release_query"),
    )
    op.create_index("ix_releases_consumer_id", "releases", ["consumer_id"])
    op.create_index("ix_releases_dataset_id", "releases", ["dataset_id"])


def downgrade() -> None:
    for table in (
        "releases",
        "ledger",
        "ledger_head",
        "budgets",
        "datasets",
        "api_keys",
        "consumers",
    ):
        op.drop_table(table)
