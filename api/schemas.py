"""Request and response models of the HTTP API (separate from the table models)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from api.release_body import Cumulative
from privacy.metadata import NAME_PATTERN, DatasetMetadata, PureCost, ZcdpCost
from privacy.periods import PeriodSpec

T = TypeVar("T")
Role = Literal["analyst", "admin", "auditor"]


def _absent(value: object) -> bool:
    return value is None


def _in_utc(moment: datetime) -> datetime:
    """A stored time with its zone: every time Ruis stores is UTC, and SQLite keeps none."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


UtcTime = Annotated[datetime, AfterValidator(_in_utc)]
"""A time shown as RFC 3339 with its offset (``date-time``), naive stored times as UTC."""


class Page(BaseModel, Generic[T]):
    """A page of a list: the items and the cursor of the next page (null on the last)."""

    items: list[T]
    next_cursor: str | None = None


class ConsumerCreate(BaseModel):
    """``POST /v1/consumers``."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
        description="unique slug: lowercase letters, digits and dashes",
    )
    role: Role


class ConsumerPublic(BaseModel):
    """A consumer."""

    id: int
    name: str
    role: Role
    created_at: UtcTime


class ConsumerCreated(ConsumerPublic):
    """A new consumer and its first key; ``api_key`` is shown this once only."""

    api_key: str
    key_id: str


class KeyPublic(BaseModel):
    """An API key's public facts (never the secret nor its hash)."""

    id: str
    prefix: str
    created_at: UtcTime
    revoked_at: UtcTime | None = None


class KeyCreated(KeyPublic):
    """A new key; ``api_key`` is shown this once only."""

    api_key: str


class DatasetCreate(DatasetMetadata):
    """``POST /v1/datasets``: the public metadata to register."""


class ColumnGrowth(BaseModel):
    """What a version may change about one column: the keys of a ``date`` column (all the
    current ones and more) or the ``range`` of a derived ``date``/``iso_week``/``month``
    column (containing the current one)."""

    model_config = ConfigDict(extra="forbid")
    keys: list[str] | None = Field(
        default=None, description="date columns: the new keys, a superset of the current ones"
    )
    range: tuple[str, str] | None = Field(
        default=None,
        description="derived date, iso_week, month columns: [first, last], containing the "
        "current range",
    )


class DatasetVersionCreate(BaseModel):
    """``POST /v1/datasets/{name}/versions``: the file of the new version and what grows.

    Nothing else about the metadata can change in a version (privacy unit, columns,
    types, categorical keys, bounds, contribution bounds, δ, the cap, the hierarchy):
    that needs a new dataset."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(
        min_length=1,
        max_length=1024,
        description="the new version's file, relative to the data directory (.parquet or .csv)",
    )
    columns: dict[str, ColumnGrowth] | None = Field(
        default=None, description="grown keys of date columns, grown ranges of derived ones"
    )
    max_rows: int | None = Field(
        default=None,
        ge=1,
        le=2**40,
        description="the new public upper bound on the number of rows (absent: unchanged)",
    )


class DatasetVersionPublic(BaseModel):
    """One version of a dataset."""

    version: int
    path: str
    created_at: UtcTime
    rows: int | None = Field(default=None, description="admins and auditors: the footer row count")
    sha256: str | None = Field(default=None, description="admins and auditors: the file's SHA-256")


class DatasetPublic(BaseModel):
    """A dataset's public metadata (never the data), and its cap usage."""

    model_config = ConfigDict(extra="allow")
    name: str
    path: str
    privacy_unit: str
    columns: dict[str, Any]
    max_partitions_contributed: int | Literal["auto"]
    max_contributions_per_partition: int | Literal["auto"]
    max_rows: int | None = None
    delta: float
    budget_cap: dict[str, Any] | None = Field(
        default=None, description="the cap with what all consumers together spent and remain"
    )
    created_at: UtcTime
    status: Literal["active", "suspended", "retired"] = Field(
        default="active",
        description="suspended: its data file changed or cannot be read; "
        "queries are refused (503) until an admin reinstates it; retired: no new "
        "query or preview (410), its history is kept",
    )
    version: int = Field(default=1, description="the newest version: the one queries run on")
    versions: list[DatasetVersionPublic] = Field(
        default_factory=list, description="every version, oldest first"
    )
    retired_at: UtcTime | None = None
    cap_shared_with: list[str] | None = Field(
        default=None,
        description="admins and auditors: the other datasets over the same file, which "
        "share its cap (budget_cap shows what all of them together spent)",
    )
    suspended_reason: str | None = Field(
        default=None, description="admins and auditors: why it was suspended"
    )
    file: dict[str, Any] | None = Field(
        default=None,
        description="admins and auditors: the fingerprint of the file queries "
        "read (path, size, mtime_ns, rows, schema, sha256, source)",
    )


class PeriodPublic(BaseModel):
    """One charged period of a budget per period."""

    period: str = Field(description="2026-03 (month), 2026-W10 (ISO week), 2026-03-05 (day)")
    start: str
    end: str
    total: float
    spent: float
    remaining: float


class BudgetPublic(BaseModel):
    """A budget in its unit (ε for pure, ρ for zCDP)."""

    consumer: str
    dataset: str
    model: Literal["pure", "zcdp"]
    unit: Literal["epsilon", "rho"]
    total: float
    spent: float
    remaining: float
    remaining_epsilon_delta: dict[str, float] | None = Field(
        default=None, description="for zCDP budgets: the (ε, δ) equivalent of what remains"
    )
    updated_at: UtcTime
    period: PeriodSpec | None = Field(
        default=None,
        exclude_if=_absent,
        description="a budget per period: total is each period's total, spent the most "
        "any one period spent and remaining what remains of that period (README, 'How the "
        "budget is kept'); absent for a budget over everything",
    )
    periods: list[PeriodPublic] | None = Field(
        default=None,
        exclude_if=_absent,
        description="a budget per period: each period charged so far, oldest first",
    )
    cumulative: Cumulative | None = Field(
        default=None,
        exclude_if=_absent,
        description="a budget per period: the guarantee for a unit present in all periods "
        "charged so far (the sum of what they spent)",
    )


class PureBudgetSet(PureCost):
    """A pure ε budget; with ``period``, ε per period."""

    period: PeriodSpec | None = None


class ZcdpBudgetSet(ZcdpCost):
    """A ρ-zCDP budget; with ``period``, ρ per period."""

    period: PeriodSpec | None = None


BudgetSet = Annotated[PureBudgetSet | ZcdpBudgetSet, Field(discriminator="model")]
"""``PUT /v1/budgets/{consumer}/{dataset}``: the total, and optionally a period."""


class LedgerEntryPublic(BaseModel):
    """One ledger entry, with the hash that covers all its other fields."""

    seq: int
    time: str
    kind: str
    actor: str
    consumer: str | None
    dataset: str | None
    cost: dict[str, Any] | None
    request_id: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str
    key_id: str | None = Field(
        default=None,
        description="the API key the entry was made with; absent (not null) on entries "
        "made without one, and the hash covers it only when present",
    )


class LedgerDiscrepancy(BaseModel):
    """One thing the stored amounts or releases disagree with the ledger about."""

    kind: Literal[
        "budget", "budget_total", "cap", "cap_total", "release", "release_output", "release_missing"
    ]
    detail: str
    consumer: str | None = None
    dataset: str | None = None
    release_id: str | None = None
    spent: float | None = None
    total: float | None = None
    ledgered: float | None = None


class LedgerVerification(BaseModel):
    """The hash chain re-computed, and the budgets, caps and releases reconciled with it.

    ``valid`` is ``chain_valid and reconciled and tree_valid and checkpoints_valid``.
    ``first_bad_seq`` is the first entry that breaks the chain (null when the chain
    holds); ``discrepancies`` lists at most 100 of the ``discrepancy_count``
    disagreements between the tables and the ledger.
    """

    valid: bool
    entries: int
    head: str | None = None
    first_bad_seq: int | None = None
    chain_valid: bool = True
    reconciled: bool = True
    discrepancy_count: int = 0
    discrepancies: list[LedgerDiscrepancy] = []
    tree_valid: bool = Field(
        default=True,
        description="the stored Merkle tree (what checkpoints, proofs and receipts are made "
        "of) is the one the entries give",
    )
    tree_first_bad_seq: int | None = Field(
        default=None, description="the first entry whose leaf or subtrees are stored wrong"
    )
    root: str | None = Field(
        default=None, description="base64 Merkle root of all the entries, as re-computed"
    )
    checkpoints_valid: bool = Field(
        default=True,
        description="every checkpoint served or cosigned so far still has the root the "
        "entries give at its size",
    )
    checkpoint_first_bad_size: int | None = Field(
        default=None,
        description="the smallest such checkpoint that no longer holds: history was "
        "rewritten or cut after it was shown",
    )


class InclusionProof(BaseModel):
    """RFC 9162 inclusion proof: leaf ``index`` (the entry with seq index + 1) is in the
    tree of ``size`` leaves. ``hashes`` are base64, in the RFC's order."""

    index: int
    size: int
    hashes: list[str]


class ConsistencyProof(BaseModel):
    """RFC 9162 consistency proof: the tree of ``from`` leaves is a prefix of the tree of
    ``to`` leaves. ``hashes`` are base64, in the RFC's order."""

    model_config = ConfigDict(populate_by_name=True)
    from_: int = Field(alias="from", serialization_alias="from")
    to: int
    hashes: list[str]


class CosignatureSubmission(BaseModel):
    """A witness's C2SP tlog-cosignature of one of this ledger's checkpoints."""

    model_config = ConfigDict(extra="forbid")
    witness: str = Field(
        max_length=512,
        description="the witness's verifier key: <name>+<hex key ID>+base64(0x04 ‖ Ed25519 key)",
    )
    checkpoint: str = Field(
        max_length=65536,
        description="the checkpoint note (as served by GET /v1/ledger/checkpoint) with the "
        "witness's cosignature line added",
    )


class CosignatureAccepted(BaseModel):
    """A stored cosignature: served from now on with the checkpoint at ``size``."""

    size: int
    root: str
    witness: str
    timestamp: int = Field(description="the cosignature's POSIX time")


class CheckpointSummary(BaseModel):
    """A tree size whose checkpoint was served or cosigned."""

    size: int
    root: str = Field(description="base64 Merkle root at that size")
    first_served: UtcTime
    witnesses: list[str] = Field(description="names of the witnesses that cosigned it")


class Health(BaseModel):
    """Liveness or readiness (``degraded``: ready, but some datasets are suspended)."""

    status: Literal["ok", "degraded", "unavailable"]
    checks: dict[str, str] = {}


DATASET_NAME_PATTERN = NAME_PATTERN
