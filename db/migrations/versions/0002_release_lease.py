"""Release leases: a pending release is owned by the request computing it until its lease ends.

A release is debited and left ``pending`` before the data is read. If the
process computing it dies (SIGKILL, OOM, power loss), nothing would ever mark
it finished, and the same query would wait for it forever. The owner now keeps
``lease_expires_at`` in the future while it computes; a pending release whose
lease has run out is abandoned and is failed (no refund) by the next request
for the same query (see :mod:`db.releases`).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("releases") as batch:
        # Pending rows written before this revision have no lease: they count as abandoned.
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("releases") as batch:
        batch.drop_column("lease_expires_at")
