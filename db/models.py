"""Table models of the ledger and its metadata.

Privacy amounts are integer units (see :mod:`db.amounts`). JSON documents
(dataset metadata, ledger details, release bodies) are stored as text so the
bytes that were hashed are the bytes that are kept.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    LargeBinary,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel


class Consumer(SQLModel, table=True):
    """An API consumer: an analyst, an admin or an auditor."""

    __tablename__ = "consumers"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True, index=True)
    role: str = Field(max_length=16)
    created_at: datetime


class ApiKey(SQLModel, table=True):
    """An API key, stored only as the SHA-256 of the secret."""

    __tablename__ = "api_keys"
    id: str = Field(primary_key=True, max_length=32)
    consumer_id: int = Field(foreign_key="consumers.id", index=True)
    prefix: str = Field(max_length=16)
    key_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime
    revoked_at: datetime | None = None
    # "environment": issued from RUIS_BOOTSTRAP_ADMIN_KEY (rotated at start-up, no prefix
    # stored); "api": issued by Ruis, random.
    origin: str = Field(default="api", max_length=16, sa_column_kwargs={"server_default": "api"})


class Dataset(SQLModel, table=True):
    """A registered dataset: its public metadata and the spending against its cap."""

    __tablename__ = "datasets"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True, index=True)
    metadata_json: str = Field(sa_column=Column(Text, nullable=False))
    cap_model: str | None = Field(default=None, max_length=8)
    cap_total_units: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    cap_spent_units: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )
    created_at: datetime
    # The file queries read and its fingerprint (db.dataset_files); "suspended" when it changed.
    status: str = Field(
        default="active", max_length=16, sa_column_kwargs={"server_default": "active"}
    )
    suspended_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    file_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Versions (db.dataset_versions): the newest one is what metadata_json and file_json
    # hold. A dataset over a file another one was registered on first shares that one's
    # cap: cap_dataset_id names the dataset whose cap columns hold it (NULL: its own).
    version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    cap_dataset_id: int | None = Field(default=None, foreign_key="datasets.id")
    retired_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class DatasetVersion(SQLModel, table=True):
    """One version of a dataset: the metadata and file fingerprint it was added with."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "version", name="uq_dataset_version"),)
    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="datasets.id", index=True)
    version: int
    metadata_json: str = Field(sa_column=Column(Text, nullable=False))
    file_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class Budget(SQLModel, table=True):
    """One consumer's budget on one dataset, in one privacy model."""

    __tablename__ = "budgets"
    __table_args__ = (UniqueConstraint("consumer_id", "dataset_id", name="uq_budget"),)
    id: int | None = Field(default=None, primary_key=True)
    consumer_id: int = Field(foreign_key="consumers.id", index=True)
    dataset_id: int = Field(foreign_key="datasets.id", index=True)
    model: str = Field(max_length=8)
    total_units: int = Field(sa_column=Column(BigInteger, nullable=False))
    spent_units: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )
    updated_at: datetime
    # A budget per period (db.budgets): total_units is each period's total, spent_units
    # the most that any one period spent (so never below it, as for any budget).
    period_column: str | None = Field(default=None, max_length=64)
    period_every: str | None = Field(default=None, max_length=8)


class BudgetPeriod(SQLModel, table=True):
    """What one period of a budget per period spent (created at its first charge)."""

    __tablename__ = "budget_periods"
    __table_args__ = (CheckConstraint("spent_units >= 0", name="ck_budget_period_nonneg"),)
    budget_id: int = Field(foreign_key="budgets.id", primary_key=True)
    period_start: str = Field(primary_key=True, max_length=10)  # ISO date: its first day
    spent_units: int = Field(sa_column=Column(BigInteger, nullable=False))


class LedgerHead(SQLModel, table=True):
    """The single row that every ledger append locks: it serialises the hash chain."""

    __tablename__ = "ledger_head"
    id: int = Field(default=1, primary_key=True)
    seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    hash: str = Field(max_length=64)
    # The Merkle tree's right edge: the hashes of the perfect subtrees of the tree of
    # ``seq`` leaves, left to right (db.ledger_tree), so an append reads no node.
    frontier: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


class LedgerEntry(SQLModel, table=True):
    """One append-only, hash-chained ledger entry."""

    __tablename__ = "ledger"
    __table_args__ = (
        Index("ix_ledger_consumer_seq", "consumer", "seq"),
        Index("ix_ledger_dataset_seq", "dataset", "seq"),
        Index("ix_ledger_kind_seq", "kind", "seq"),
        Index("ix_ledger_time", "time"),
    )
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    time: str = Field(max_length=32)
    kind: str = Field(max_length=32)
    actor: str = Field(max_length=64)
    consumer: str | None = Field(default=None, max_length=64)
    dataset: str | None = Field(default=None, max_length=64)
    cost_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    request_id: str | None = Field(default=None, max_length=64)
    details_json: str = Field(sa_column=Column(Text, nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
    # The API key the entry was made with (None without one); hashed only when set.
    key_id: str | None = Field(default=None, max_length=32)


class LedgerTreeNode(SQLModel, table=True):
    """One perfect subtree of the RFC 9162 tree over the entries' hashes, written by the
    append that completes it and never changed (db.ledger_tree). ``pos`` is the node
    (level l, index i), covering leaves [i·2**l, (i+1)·2**l), keyed by the last of those
    leaves: ``pos = ((i+1)·2**l − 1)·64 + l``, so the nodes an append wrote are one
    key range and a lookup is one ``IN``."""

    __tablename__ = "ledger_tree"
    pos: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))


class LedgerCheckpoint(SQLModel, table=True):
    """A tree size whose signed checkpoint was served or cosigned (its history)."""

    __tablename__ = "ledger_checkpoints"
    size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    root: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class LedgerWitness(SQLModel, table=True):
    """A witness name and the auditor that holds it (the first to cosign under it)."""

    __tablename__ = "ledger_witnesses"
    name: str = Field(primary_key=True, max_length=128)
    consumer_id: int = Field(foreign_key="consumers.id")
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class LedgerCosignature(SQLModel, table=True):
    """A witness's C2SP tlog-cosignature of the checkpoint at ``size``."""

    __tablename__ = "ledger_cosignatures"
    size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    witness: str = Field(primary_key=True, max_length=128)
    key_id: str = Field(primary_key=True, max_length=8)
    vkey: str = Field(sa_column=Column(Text, nullable=False))
    timestamp: int = Field(sa_column=Column(BigInteger, nullable=False))
    line: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class Release(SQLModel, table=True):
    """A stored DP release: re-read at no cost, served again for the same query."""

    __tablename__ = "releases"
    __table_args__ = (
        UniqueConstraint("consumer_id", "dataset_id", "query_hash", name="uq_release_query"),
    )
    id: str = Field(primary_key=True, max_length=40)
    consumer_id: int = Field(foreign_key="consumers.id", index=True)
    dataset_id: int = Field(foreign_key="datasets.id", index=True)
    query_hash: str = Field(max_length=64)
    status: str = Field(max_length=16)  # "pending" (debited, computing), "done", "failed"
    body_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    ledger_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime
    # While pending: until when the computing request owns it (renewed as it computes);
    # a pending release past its lease was abandoned by a dead process (db.releases).
    lease_expires_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class ConsumerLimit(SQLModel, table=True):
    """An admin's per-consumer overrides of the deployment's limits (NULL: the default)."""

    __tablename__ = "consumer_limits"
    consumer_id: int = Field(foreign_key="consumers.id", primary_key=True)
    min_epsilon_units: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    min_rho_units: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    max_cells: int | None = None
    max_concurrent: int | None = None
    requests_per_minute: int | None = None
    burst: int | None = None
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
