"""What the client returns: small frozen values built from the server's JSON."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, cast

import polars as pl

if TYPE_CHECKING:
    import pandas

Model = Literal["pure", "zcdp"]
Unit = Literal["epsilon", "rho"]
_UNITS: dict[str, Unit] = {"pure": "epsilon", "zcdp": "rho"}


def _time(value: Any) -> datetime:
    return datetime.fromisoformat(str(value))


def _amount(document: Mapping[str, Any]) -> float:
    """The one amount in ``{"epsilon": x}`` or ``{"rho": x}``."""
    for unit in ("epsilon", "rho"):
        if unit in document:
            return float(document[unit])
    raise ValueError(f"no epsilon or rho in {dict(document)!r}")


@dataclass(frozen=True)
class Cost:
    """A privacy loss: ``amount`` of ε (``model="pure"``) or of ρ (``model="zcdp"``)."""

    model: Model
    amount: float

    @property
    def unit(self) -> Unit:
        """``"epsilon"`` or ``"rho"``."""
        return _UNITS[self.model]

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Cost:
        """From ``{"model": "pure", "epsilon": 0.5}``."""
        return cls(model=cast(Model, document["model"]), amount=_amount(document))


@dataclass(frozen=True)
class Accuracy:
    """With probability at least ``1 - alpha`` each released cell is within
    ``error_bound`` of the exact value that ``covers`` names: ``"noise"``, the value on
    the truncated, clamped data; ``"noise_and_bias"``, the value on the whole data (it
    then lies in ``[value - noise_error_bound, value + noise_error_bound + bias_bound]``).
    For a ``mean`` it is in the column's units (the largest per-cell half-width; each row
    has its ``lower``, ``upper``). For a ``quantile`` ``error_bound`` is None and
    ``rank_error_bound`` is r, in rows of the cell. A ``rollup`` has ``levels``: the
    bound of each level (``{"level": "municipality", "error_bound": ...}``), and
    ``error_bound`` is the largest."""

    alpha: float
    error_bound: float | None
    covers: str = "noise"
    noise_error_bound: float | None = None
    bias_bound: float | None = None
    rank_error_bound: float | None = None
    levels: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Accuracy:
        """From ``{"alpha": 0.05, "error_bound": 18.0, "covers": "noise"}``."""
        return cls(
            alpha=float(document["alpha"]),
            error_bound=_optional_float(document.get("error_bound")),
            covers=str(document.get("covers", "noise")),
            noise_error_bound=_optional_float(document.get("noise_error_bound")),
            bias_bound=_optional_float(document.get("bias_bound")),
            rank_error_bound=_optional_float(document.get("rank_error_bound")),
            levels=tuple(dict(level) for level in document.get("levels") or ()),
        )


def _bound(value: Any) -> int | str:
    """A contribution bound as declared: an integer, or ``"auto"``."""
    return value if value == "auto" else int(value)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class Truncation:
    """What the contribution bounds kept, estimated with DP from the query's own cost:
    with probability at least ``1 - alpha`` ``kept_share`` is within
    ``kept_share_error_bound`` of the true share (``clamped_share`` likewise, for sum,
    mean and quantile)."""

    kept_share: float
    kept_share_error_bound: float
    clamped_share: float | None = None
    clamped_share_error_bound: float | None = None

    @classmethod
    def from_document(cls, document: Mapping[str, Any] | None) -> Truncation | None:
        """From a release's ``truncation`` object (None where there is none)."""
        if document is None:
            return None
        return cls(
            kept_share=float(document["kept_share"]),
            kept_share_error_bound=float(document["kept_share_error_bound"]),
            clamped_share=_optional_float(document.get("clamped_share")),
            clamped_share_error_bound=_optional_float(document.get("clamped_share_error_bound")),
        )


@dataclass(frozen=True)
class Cumulative:
    """With a budget per period: the guarantee for a unit present in every period charged
    so far, the sum over those periods of what they spent (budgets of different periods
    add up for such a unit: ε 1 per month for twelve months is ε 12)."""

    model: Model
    amount: float
    """ε (``pure``) or ρ (``zcdp``), summed over the charged periods."""
    epsilon_delta: Mapping[str, float] | None = None
    """For zCDP: the (ε, δ) equivalent of :attr:`amount`."""

    @classmethod
    def from_document(cls, document: Mapping[str, Any] | None) -> Cumulative | None:
        """From a ``cumulative`` object (None when absent: a budget without periods)."""
        if not document:
            return None
        if "rho" in document:
            return cls("zcdp", float(document["rho"]), document.get("epsilon_delta"))
        return cls("pure", float(document["epsilon"]))


@dataclass(frozen=True)
class BudgetPeriod:
    """One charged period of a budget per period (``2026-03``, ``2026-W10``, a date)."""

    period: str
    start: str
    end: str
    total: float
    spent: float
    remaining: float

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> BudgetPeriod:
        """From an item of a budget's ``periods``."""
        return cls(
            period=str(document["period"]),
            start=str(document["start"]),
            end=str(document["end"]),
            total=float(document["total"]),
            spent=float(document["spent"]),
            remaining=float(document["remaining"]),
        )


@dataclass(frozen=True)
class Dataset:
    """A dataset's public metadata (never its data)."""

    name: str
    privacy_unit: str
    columns: Mapping[str, Mapping[str, Any]]
    max_partitions_contributed: int | str
    """The default ``k``, or ``"auto"`` (chosen per query)."""
    max_contributions_per_partition: int | str
    """The default ``c``, or ``"auto"``."""
    document: Mapping[str, Any] = field(repr=False)
    version: int = 1
    """The newest version: the one queries run on."""
    status: str = "active"
    """``active``, ``suspended`` (queries refused until reinstated) or ``retired``."""

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Dataset:
        """From an item of ``GET /v1/datasets``."""
        return cls(
            name=document["name"],
            privacy_unit=document["privacy_unit"],
            columns=document["columns"],
            max_partitions_contributed=_bound(document["max_partitions_contributed"]),
            max_contributions_per_partition=_bound(document["max_contributions_per_partition"]),
            document=dict(document),
            version=int(document.get("version", 1)),
            status=str(document.get("status", "active")),
        )


@dataclass(frozen=True)
class Budget:
    """Your budget on one dataset, in its unit (ε for ``pure``, ρ for ``zcdp``).

    With a :attr:`period` (``{"column": "day", "every": "month"}``), :attr:`total` is each
    period's total, :attr:`spent` the most any one period spent, :attr:`periods` the
    periods charged so far and :attr:`cumulative` their sum."""

    dataset: str
    model: Model
    total: float
    spent: float
    remaining: float
    updated_at: datetime
    document: Mapping[str, Any] = field(repr=False)
    period: Mapping[str, str] | None = None
    periods: tuple[BudgetPeriod, ...] = ()
    cumulative: Cumulative | None = None

    @property
    def unit(self) -> Unit:
        """``"epsilon"`` or ``"rho"``."""
        return _UNITS[self.model]

    @property
    def remaining_epsilon_delta(self) -> Mapping[str, float] | None:
        """For a zCDP budget: the (ε, δ) equivalent of what remains."""
        value: Mapping[str, float] | None = self.document.get("remaining_epsilon_delta")
        return value

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Budget:
        """From an item of ``GET /v1/budgets``."""
        return cls(
            dataset=document["dataset"],
            model=document["model"],
            total=float(document["total"]),
            spent=float(document["spent"]),
            remaining=float(document["remaining"]),
            updated_at=_time(document["updated_at"]),
            document=dict(document),
            period=document.get("period"),
            periods=tuple(BudgetPeriod.from_document(p) for p in document.get("periods") or ()),
            cumulative=Cumulative.from_document(document.get("cumulative")),
        )


@dataclass(frozen=True)
class Preview:
    """What a query would cost and how accurate it would be; nothing was read or spent."""

    dataset: str
    statistic: str
    columns: list[str]
    cost: Cost
    accuracy: Accuracy
    mechanism: str
    noise_scale: float
    budget_remaining: float
    fits_budget: bool
    query: Mapping[str, Any] = field(repr=False)
    document: Mapping[str, Any] = field(repr=False)
    dataset_cap_remaining: float | None = None
    """What remains under the dataset's cap (None without a cap); ``fits_budget`` is
    false when the cost exceeds it or the budget."""
    threshold: int | None = None
    """Grouping on private keys: OpenDP's key-selection threshold (None otherwise)."""
    delta: float | None = None
    """Grouping on private keys: OpenDP's δ of the key selection (None otherwise)."""
    period: Mapping[str, str] | None = None
    """With a budget per period: the period the query would be charged in."""
    cumulative: Cumulative | None = None
    """With a budget per period: the cumulative guarantee before this query."""

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Preview:
        """From the answer of ``POST /v1/queries/preview``."""
        return cls(
            dataset=document["dataset"],
            statistic=document["statistic"],
            columns=list(document["columns"]),
            cost=Cost.from_document(document["cost"]),
            accuracy=Accuracy.from_document(document["accuracy"]),
            mechanism=document["mechanism"],
            noise_scale=float(document["noise_scale"]),
            budget_remaining=_amount(document["budget_remaining"]),
            fits_budget=bool(document["fits_budget"]),
            query=document["query"],
            document=dict(document),
            dataset_cap_remaining=(
                _amount(document["dataset_cap_remaining"])
                if document.get("dataset_cap_remaining")
                else None
            ),
            threshold=document.get("threshold"),
            delta=document.get("delta"),
            period=document.get("period"),
            cumulative=Cumulative.from_document(document.get("cumulative")),
        )


@dataclass(frozen=True)
class Checkpoint:
    """A signed checkpoint of the ledger's Merkle tree: its ``size`` (entries), its
    ``root`` hash and the signed note (C2SP tlog-checkpoint) they were read from."""

    size: int
    root: bytes
    note: str = field(repr=False)

    @property
    def root_base64(self) -> str:
        """The root hash in base64, as the note writes it."""
        return base64.b64encode(self.root).decode("ascii")

    def __str__(self) -> str:
        return f"size {self.size}, root {self.root_base64}"


@dataclass(frozen=True)
class Receipt:
    """Proof that a release's ledger entry is in the ledger's signed Merkle tree:
    ``entry`` (the release's debit, seq ``index + 1``), the RFC 9162 ``inclusion`` proof
    (base64 hashes) of its leaf under the root of ``checkpoint`` (a signed note)."""

    checkpoint: str = field(repr=False)
    index: int
    inclusion: tuple[str, ...] = field(repr=False)
    entry: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_document(cls, document: Any) -> Receipt | None:
        """From a release's ``receipt`` object; None when it is absent or malformed (the
        client then reports the release as unverified)."""
        if not isinstance(document, Mapping):
            return None
        checkpoint, index = document.get("checkpoint"), document.get("index")
        inclusion, entry = document.get("inclusion"), document.get("entry")
        if (
            not isinstance(checkpoint, str)
            or not isinstance(index, int)
            or isinstance(index, bool)
            or not isinstance(inclusion, list)
            or not all(isinstance(h, str) for h in inclusion)
            or not isinstance(entry, Mapping)
        ):
            return None
        return cls(checkpoint=checkpoint, index=index, inclusion=tuple(inclusion), entry=entry)


@dataclass(frozen=True, eq=False)
class Release:
    """A differentially private release: the noisy table and what it cost.

    :attr:`frame` has one row per combination of the ``group_by`` keys (all of
    them, including combinations without data) and the noisy ``value``;
    :attr:`accuracy` applies to every cell; :attr:`truncation` says what share of the
    contributions the bounds kept. ``cached`` is True when the server
    served a stored answer to the same query, at no cost.
    """

    id: str
    dataset: str
    statistic: str
    frame: pl.DataFrame
    cost: Cost
    accuracy: Accuracy
    mechanism: str
    noise_scale: float
    cached: bool
    budget_remaining: float
    ledger_seq: int
    query: Mapping[str, Any] = field(repr=False)
    document: Mapping[str, Any] = field(repr=False)
    truncation: Truncation | None = None
    keys_selected: int | None = None
    """Grouping on private keys: how many groups OpenDP's key selection released (the rows
    of :attr:`frame`, sorted by key; not every combination then)."""
    threshold: int | None = None
    """Grouping on private keys: OpenDP's key-selection threshold."""
    delta: float | None = None
    """Grouping on private keys: OpenDP's δ of the key selection."""
    period: Mapping[str, str] | None = None
    """With a budget per period: the period it was charged in (``period``, ``start``,
    ``end``, and the budget's ``column`` and ``every``)."""
    cumulative: Cumulative | None = None
    """With a budget per period: the cumulative guarantee as of this answer."""
    dataset_version: int = 1
    """The version of the dataset the release was computed on."""
    receipt: Receipt | None = None
    """Proof that its ledger entry is in the signed ledger, as of this answer."""
    verified: bool = False
    """Whether :class:`ruis_client.Ruis` checked :attr:`receipt` and it checked out: signed by
    the ledger's key, this release's entry, included in the checkpoint, and that
    checkpoint consistent with the last one the client saw."""

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Release:
        """From the answer of ``POST /v1/queries`` or ``GET /v1/queries/{id}``."""
        frame = pl.DataFrame(
            document["rows"],
            schema=list(document["columns"]),
            orient="row",
            infer_schema_length=None,
        )
        return cls(
            id=document["id"],
            dataset=document["dataset"],
            statistic=document["statistic"],
            frame=frame,
            cost=Cost.from_document(document["cost"]),
            accuracy=Accuracy.from_document(document["accuracy"]),
            mechanism=document["mechanism"],
            noise_scale=float(document["noise_scale"]),
            cached=bool(document["cached"]),
            budget_remaining=_amount(document["budget_remaining"]),
            ledger_seq=int(document["ledger_seq"]),
            query=document["query"],
            document=dict(document),
            truncation=Truncation.from_document(document.get("truncation")),
            keys_selected=document.get("keys_selected"),
            threshold=document.get("threshold"),
            delta=document.get("delta"),
            period=document.get("period"),
            cumulative=Cumulative.from_document(document.get("cumulative")),
            dataset_version=int(document.get("dataset_version", 1)),
            receipt=Receipt.from_document(document.get("receipt")),
        )

    def to_pandas(self) -> pandas.DataFrame:
        """:attr:`frame` as a pandas DataFrame (needs ``pandas`` and ``pyarrow`` installed)."""
        return self.frame.to_pandas()


@dataclass(frozen=True)
class ReleaseSummary:
    """One of your earlier releases, without its values (:meth:`ruis_client.Ruis.release` re-reads
    it at no cost)."""

    id: str
    dataset: str
    statistic: str
    cost: Cost
    mechanism: str
    ledger_seq: int
    created_at: datetime
    query: Mapping[str, Any] = field(repr=False)
    dataset_version: int = 1

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> ReleaseSummary:
        """From an item of ``GET /v1/queries``."""
        return cls(
            id=document["id"],
            dataset=document["dataset"],
            statistic=document["statistic"],
            cost=Cost.from_document(document["cost"]),
            mechanism=document["mechanism"],
            ledger_seq=int(document["ledger_seq"]),
            created_at=_time(document["created_at"]),
            query=document["query"],
            dataset_version=int(document.get("dataset_version", 1)),
        )
