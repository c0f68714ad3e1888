"""Dataset versions, retirement and caps shared by the datasets over one file.

``datasets.version`` is the newest version (queries run on it); ``dataset_versions``
keeps every version's metadata and file fingerprint. Every dataset that exists before
this revision is version 1 (its row in ``dataset_versions`` copies its metadata and
fingerprint). ``datasets.cap_dataset_id`` names the dataset whose cap a dataset
registered over the same file shares (NULL: its own); ``retired_at`` is when it was
retired (``status`` = ``retired``). See :mod:`db.dataset_versions`.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("cap_dataset_id", sa.Integer, nullable=True))
        batch.add_column(sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_foreign_key(
            "fk_datasets_cap_dataset_id", "datasets", ["cap_dataset_id"], ["id"]
        )
    op.create_table(
        "dataset_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("metadata_json", sa.Text, nullable=False),
        sa.Column("file_json", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("dataset_id", "version", name="uq_dataset_version"),
    )
    op.create_index("ix_dataset_versions_dataset_id", "dataset_versions", ["dataset_id"])
    op.execute(
        "INSERT INTO dataset_versions (dataset_id, version, metadata_json, file_json, created_at) "
        "SELECT id, 1, metadata_json, file_json, created_at FROM datasets"
    )


def downgrade() -> None:
    op.drop_index("ix_dataset_versions_dataset_id", table_name="dataset_versions")
    op.drop_table("dataset_versions")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_constraint("fk_datasets_cap_dataset_id", type_="foreignkey")
        batch.drop_column("retired_at")
        batch.drop_column("cap_dataset_id")
        batch.drop_column("version")
