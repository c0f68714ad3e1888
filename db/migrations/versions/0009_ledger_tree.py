"""The ledger's Merkle tree, API key ids on entries, checkpoints and cosignatures.

``ledger_tree`` holds every perfect subtree of the RFC 9162 tree over the entries'
hashes (leaf i is the entry with seq i+1), written by each append (:mod:`db.ledger`);
this revision builds it for the entries that exist. ``ledger_head.frontier`` keeps the
tree's right edge, so an append reads no node. ``ledger.key_id`` is the API key an
entry was made with (NULL for entries made without one, and for every older entry:
their hashes do not cover it). ``ledger_checkpoints`` records the tree sizes whose
checkpoint was served or cosigned; ``ledger_cosignatures`` the witnesses' cosignatures
and ``ledger_witnesses`` which auditor holds which witness name.

Revision ID: 0009
Revises: 0008
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None
BATCH = 5000


def _build_tree() -> None:
    """Every perfect subtree over the existing entries, in seq order (O(n), streamed)."""
    bind = op.get_bind()
    tree = sa.table(
        "ledger_tree", sa.column("pos", sa.BigInteger), sa.column("hash", sa.LargeBinary)
    )
    frontier: list[bytes] = []  # the perfect subtrees on the right edge, largest first
    index, after = 0, 0
    while True:
        rows = bind.execute(
            sa.text("SELECT seq, hash FROM ledger WHERE seq > :after ORDER BY seq LIMIT :n"),
            {"after": after, "n": BATCH},
        ).all()
        if not rows:
            bind.execute(sa.text("UPDATE ledger_head SET frontier = :f"), {"f": b"".join(frontier)})
            return
        nodes = []
        for seq, entry_hash in rows:
            current = hashlib.sha256(b"\x00" + bytes.fromhex(entry_hash)).digest()
            nodes.append({"pos": index * 64, "hash": current})  # keyed by its last leaf
            level, at = 0, index
            while at & 1:
                current = hashlib.sha256(b"\x01" + frontier.pop() + current).digest()
                level, at = level + 1, at >> 1
                nodes.append({"pos": index * 64 + level, "hash": current})
            frontier.append(current)
            index, after = index + 1, seq
        op.bulk_insert(tree, nodes)


def upgrade() -> None:
    op.create_table(
        "ledger_tree",
        sa.Column("pos", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    with op.batch_alter_table("ledger") as batch:
        batch.add_column(sa.Column("key_id", sa.String(32), nullable=True))
    with op.batch_alter_table("ledger_head") as batch:
        batch.add_column(sa.Column("frontier", sa.LargeBinary, nullable=True))
    op.create_table(
        "ledger_checkpoints",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ledger_witnesses",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("consumer_id", sa.Integer, sa.ForeignKey("consumers.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ledger_cosignatures",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("witness", sa.String(128), primary_key=True),
        sa.Column("key_id", sa.String(8), primary_key=True),
        sa.Column("vkey", sa.Text, nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.Column("line", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    _build_tree()


def downgrade() -> None:
    op.drop_table("ledger_cosignatures")
    op.drop_table("ledger_witnesses")
    op.drop_table("ledger_checkpoints")
    with op.batch_alter_table("ledger_head") as batch:
        batch.drop_column("frontier")
    with op.batch_alter_table("ledger") as batch:
        batch.drop_column("key_id")
    op.drop_table("ledger_tree")
