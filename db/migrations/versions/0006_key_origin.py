"""Key origin: which API keys came from ``RUIS_BOOTSTRAP_ADMIN_KEY``, and no prefix of them.

A key issued from the environment is chosen by the operator, not drawn at
random: start-up rotates it when the variable changes (see :mod:`db.bootstrap`),
and none of its characters are stored or shown. Keys that ``ensure_bootstrap_admin``
issued before this revision (ledgered ``key_issued`` by the actor ``system``) are
marked ``environment`` and their stored prefix is cleared. (Their ``key_issued``
ledger entries keep the prefix: the ledger is append-only. Rotate such a key.)

Revision ID: 0006
Revises: 0005
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("origin", sa.String(length=16), nullable=False, server_default="api")
        )
    connection = op.get_bind()
    issued = connection.execute(
        sa.text("SELECT details_json FROM ledger WHERE kind = 'key_issued' AND actor = 'system'")
    )
    for (details,) in issued:
        key_id = json.loads(details).get("key_id")
        if key_id:
            connection.execute(
                sa.text("UPDATE api_keys SET origin = 'environment', prefix = '' WHERE id = :id"),
                {"id": key_id},
            )


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("origin")
