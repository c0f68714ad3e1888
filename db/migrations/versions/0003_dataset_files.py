"""Dataset files: the fingerprint of the file queries read, and a suspended status.

At registration Ruis records the fingerprint of the file queries read (for a
CSV: the Parquet file it was converted to) in ``file_json``; before each
release it compares the file's size, modification time, footer row count and
schema with it. A mismatch suspends the dataset (``status`` = ``suspended``,
with ``suspended_reason``) until an admin reinstates it (see
:mod:`db.dataset_files`). Datasets registered before this revision have no
fingerprint: it is recorded at their first release.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(
            sa.Column("status", sa.String(16), nullable=False, server_default="active")
        )
        batch.add_column(sa.Column("suspended_reason", sa.Text, nullable=True))
        batch.add_column(sa.Column("file_json", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("file_json")
        batch.drop_column("suspended_reason")
        batch.drop_column("status")
