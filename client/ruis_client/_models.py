"""What the client returns: small frozen values built from the server's JSON.

Each model names the schema of ``openapi/openapi.json`` it is read from (``_schema``): its
fields are that schema's properties (``read_as`` maps a field to the properties it is made
of where the names differ), and ``ignored`` lists, with the reason, the schema's required
properties it does not read. Fields marked ``local`` are not the server's (the document
itself, whether the client verified it). ``tests/client/test_models.py`` holds them to the
schema.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple, cast

import polars as pl

if TYPE_CHECKING:
    import pandas

Model = Literal["pure", "zcdp"]
Unit = Literal["epsilon", "rho"]
Role = Literal["analyst", "admin", "auditor"]
_UNITS: dict[str, Unit] = {"pure": "epsilon", "zcdp": "rho"}
LOCAL: dict[str, bool] = {"local": True}
"""Field metadata: not read from the server's document."""


class Schema(NamedTuple):
    """Where a model comes from: ``name`` is a component schema of the OpenAPI document, or
    ``Component.property`` for an inline object; ``read_as`` maps fields whose names are not
    property names to the properties they are read from; ``ignored`` names the required
    properties not read, each with why."""

    name: str
    read_as: Mapping[str, tuple[str, ...]] = {}
    ignored: Mapping[str, str] = {}


class PandasMissing(ImportError):
    """:meth:`Release.to_pandas` needs pandas and pyarrow: ``pip install ruis-client[pandas]``."""


def _time(value: Any) -> datetime:
    return datetime.fromisoformat(str(value))


def _optional_time(value: Any) -> datetime | None:
    return None if value is None else _time(value)


def _amount(document: Mapping[str, Any]) -> float:
    """The one amount in ``{"epsilon": x}`` or ``{"rho": x}``."""
    for unit in ("epsilon", "rho"):
        if unit in document:
            return float(document[unit])
    raise ValueError(f"no epsilon or rho in {dict(document)!r}")


@dataclass(frozen=True)
class Cost:
    """A privacy loss: ``amount`` of ε (``model="pure"``) or of ρ (``model="zcdp"``)."""

    _schema: ClassVar[Schema] = Schema("QueryResponse.cost", read_as={"amount": ("epsilon", "rho")})
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
    bound of each level (:class:`LevelAccuracy`), and ``error_bound`` is the largest.
    With automatic bounds, a preview's ``error_bound_range`` is the bound at the smallest
    and at the largest candidates."""

    _schema: ClassVar[Schema] = Schema("Accuracy")
    alpha: float
    error_bound: float | None
    covers: str = "noise"
    noise_error_bound: float | None = None
    bias_bound: float | None = None
    rank_error_bound: float | None = None
    levels: tuple[LevelAccuracy, ...] = ()
    error_bound_range: tuple[float, float] | None = None

    def interval(self, value: float, level: str | None = None) -> tuple[float, float] | None:
        """Where the exact value ``covers`` names lies, with probability at least
        ``1 - alpha``, for a released ``value`` (of ``level`` in a rollup): ``value ±
        error_bound``, or with ``noise_and_bias`` ``[value - noise_error_bound, value +
        noise_error_bound + bias_bound]`` (the bounds only drop data). None for a quantile
        (its error is in ranks)."""
        bound: LevelAccuracy | Accuracy = self
        for each in self.levels:
            if each.level == level:
                bound = each
        if bound.error_bound is None:
            return None
        if self.covers == "noise_and_bias" and bound.noise_error_bound is not None:
            noise, bias = bound.noise_error_bound, bound.bias_bound or 0.0
            return value - noise, value + noise + bias
        return value - bound.error_bound, value + bound.error_bound

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
            levels=tuple(
                LevelAccuracy.from_document(level) for level in document.get("levels") or ()
            ),
            error_bound_range=_pair(document.get("error_bound_range")),
        )


@dataclass(frozen=True)
class LevelAccuracy:
    """One level of a ``rollup`` release: with probability at least ``1 - alpha`` every
    cell of that level (its rows' ``level`` value) is within ``error_bound``."""

    _schema: ClassVar[Schema] = Schema("LevelAccuracy")
    level: str
    error_bound: float
    noise_error_bound: float | None = None
    bias_bound: float | None = None

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> LevelAccuracy:
        """From an item of an accuracy's ``levels``."""
        return cls(
            level=str(document["level"]),
            error_bound=float(document["error_bound"]),
            noise_error_bound=_optional_float(document.get("noise_error_bound")),
            bias_bound=_optional_float(document.get("bias_bound")),
        )


def _pair(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    low, high = value
    return float(low), float(high)


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
    mean and quantile). ``cost`` is the part of the query's cost the estimates took."""

    _schema: ClassVar[Schema] = Schema("Truncation")
    kept_share: float
    kept_share_error_bound: float
    cost: float
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
            cost=_amount(document["cost"]),
            clamped_share=_optional_float(document.get("clamped_share")),
            clamped_share_error_bound=_optional_float(document.get("clamped_share_error_bound")),
        )


@dataclass(frozen=True)
class Cumulative:
    """With a budget per period: the guarantee for a unit present in every period charged
    so far, the sum over those periods of what they spent (budgets of different periods
    add up for such a unit: ε 1 per month for twelve months is ε 12)."""

    _schema: ClassVar[Schema] = Schema(
        "Cumulative", read_as={"model": ("epsilon", "rho"), "amount": ("epsilon", "rho")}
    )
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

    _schema: ClassVar[Schema] = Schema("PeriodPublic")
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
    """A dataset's public metadata (never its data). ``file``, ``cap_shared_with``,
    ``suspended_reason`` and the versions' ``rows`` and ``sha256`` are shown to admins and
    auditors only."""

    _schema: ClassVar[Schema] = Schema("DatasetPublic")
    name: str
    path: str
    privacy_unit: str
    columns: Mapping[str, Mapping[str, Any]]
    max_partitions_contributed: int | str
    """The default ``k``, or ``"auto"`` (chosen per query)."""
    max_contributions_per_partition: int | str
    """The default ``c``, or ``"auto"``."""
    delta: float
    created_at: datetime
    document: Mapping[str, Any] = field(repr=False, metadata=LOCAL)
    version: int = 1
    """The newest version: the one queries run on."""
    status: str = "active"
    """``active``, ``suspended`` (queries refused until reinstated) or ``retired``."""
    max_rows: int | None = None
    budget_cap: Mapping[str, Any] | None = None
    """The dataset's cap with what all consumers together spent and what remains."""
    versions: tuple[DatasetVersion, ...] = ()
    """Every version, oldest first."""
    retired_at: datetime | None = None
    suspended_reason: str | None = None
    file: Mapping[str, Any] | None = None
    cap_shared_with: tuple[str, ...] = ()

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Dataset:
        """From an item of ``GET /v1/datasets`` (or ``GET /v1/datasets/{name}``)."""
        return cls(
            name=document["name"],
            path=str(document["path"]),
            privacy_unit=document["privacy_unit"],
            columns=document["columns"],
            max_partitions_contributed=_bound(document["max_partitions_contributed"]),
            max_contributions_per_partition=_bound(document["max_contributions_per_partition"]),
            delta=float(document["delta"]),
            created_at=_time(document["created_at"]),
            document=dict(document),
            version=int(document.get("version", 1)),
            status=str(document.get("status", "active")),
            max_rows=document.get("max_rows"),
            budget_cap=document.get("budget_cap"),
            versions=tuple(DatasetVersion.from_document(v) for v in document.get("versions") or ()),
            retired_at=_optional_time(document.get("retired_at")),
            suspended_reason=document.get("suspended_reason"),
            file=document.get("file"),
            cap_shared_with=tuple(document.get("cap_shared_with") or ()),
        )


@dataclass(frozen=True)
class DatasetVersion:
    """One version of a dataset: its file (``rows`` and ``sha256`` for admins and
    auditors)."""

    _schema: ClassVar[Schema] = Schema("DatasetVersionPublic")
    version: int
    path: str
    created_at: datetime
    rows: int | None = None
    sha256: str | None = None

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> DatasetVersion:
        """From an item of a dataset's ``versions``."""
        return cls(
            version=int(document["version"]),
            path=str(document["path"]),
            created_at=_time(document["created_at"]),
            rows=document.get("rows"),
            sha256=document.get("sha256"),
        )


@dataclass(frozen=True)
class Budget:
    """A consumer's budget on one dataset, in its unit (ε for ``pure``, ρ for ``zcdp``).

    With a :attr:`period` (``{"column": "day", "every": "month"}``), :attr:`total` is each
    period's total, :attr:`spent` the most any one period spent, :attr:`periods` the
    periods charged so far and :attr:`cumulative` their sum."""

    _schema: ClassVar[Schema] = Schema(
        "BudgetPublic", ignored={"unit": "the unit property, derived from model"}
    )
    consumer: str
    dataset: str
    model: Model
    total: float
    spent: float
    remaining: float
    updated_at: datetime
    document: Mapping[str, Any] = field(repr=False, metadata=LOCAL)
    period: Mapping[str, str] | None = None
    periods: tuple[BudgetPeriod, ...] = ()
    cumulative: Cumulative | None = None
    remaining_epsilon_delta: Mapping[str, float] | None = None
    """For a zCDP budget: the (ε, δ) equivalent of what remains."""

    @property
    def unit(self) -> Unit:
        """``"epsilon"`` or ``"rho"``."""
        return _UNITS[self.model]

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Budget:
        """From an item of ``GET /v1/budgets`` (or the answer of setting one)."""
        return cls(
            consumer=str(document["consumer"]),
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
            remaining_epsilon_delta=document.get("remaining_epsilon_delta"),
        )


@dataclass(frozen=True)
class Preview:
    """What a query would cost and how accurate it would be; nothing was read or spent."""

    _schema: ClassVar[Schema] = Schema("QueryPreview")
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
    """The canonical query that would run."""
    bounds: Mapping[str, Any] = field(repr=False)
    """The contribution and clamping bounds the query would use (``"auto"`` where chosen
    per query)."""
    document: Mapping[str, Any] = field(repr=False, metadata=LOCAL)
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
    auto: Mapping[str, Any] | None = field(default=None, repr=False)
    """With automatic bounds: the cost split between choosing them and the statistic
    (``share``), the candidates and the selection steps."""
    truncation_cost: float | None = None
    """The part of the cost that estimates what the bounds keep (None where none)."""
    epsilon_delta: Mapping[str, float] | None = None
    """For a zCDP cost: the equivalent (ε, δ)."""

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Preview:
        """From the answer of ``POST /v1/queries/preview``."""
        truncation_cost = document.get("truncation_cost")
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
            bounds=document.get("bounds") or {},
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
            auto=document.get("auto"),
            truncation_cost=_amount(truncation_cost) if truncation_cost else None,
            epsilon_delta=document.get("epsilon_delta"),
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

    _schema: ClassVar[Schema] = Schema("Receipt")
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


VALUE_COLUMNS = ("value", "lower", "upper")


def release_frame(columns: list[str], rows: list[list[Any]], accuracy: Accuracy) -> pl.DataFrame:
    """The release's table: its group columns, ``value``, and ``lower`` and ``upper``.

    A ``mean``'s rows carry their own interval; for the others it is the accuracy's
    (:meth:`Accuracy.interval`, per level in a rollup), and null for a quantile, whose
    error is in ranks (``accuracy.rank_error_bound``)."""
    frame = pl.DataFrame(rows, schema=list(columns), orient="row", infer_schema_length=None)
    if "value" not in frame.columns:
        return frame
    if frame["value"].dtype.is_numeric():
        frame = frame.with_columns(pl.col("value").cast(pl.Float64))
    if "lower" not in frame.columns or "upper" not in frame.columns:
        levels: list[str | None] = (
            [str(level) for level in frame["level"].to_list()]
            if "level" in frame.columns
            else [None] * frame.height
        )
        intervals = [
            accuracy.interval(value, level) if value is not None else None
            for value, level in zip(frame["value"].to_list(), levels, strict=True)
        ]
        frame = frame.with_columns(
            pl.Series("lower", [i[0] if i else None for i in intervals], dtype=pl.Float64),
            pl.Series("upper", [i[1] if i else None for i in intervals], dtype=pl.Float64),
        )
    groups = [c for c in frame.columns if c not in VALUE_COLUMNS]
    return frame.select(*groups, *VALUE_COLUMNS)


@dataclass(frozen=True, eq=False)
class Release:
    """A differentially private release: the noisy table and what it cost.

    :attr:`frame` has one row per combination of the ``group_by`` keys (all of
    them, including combinations without data), the noisy ``value`` and its interval
    ``lower``, ``upper``: where the exact value lies with probability at least ``1 -
    alpha`` (each cell on its own; see :meth:`Accuracy.interval`; null for a quantile).
    :attr:`accuracy` applies to every cell; :attr:`truncation` says what share of the
    contributions the bounds kept. ``cached`` is True when the server
    served a stored answer to the same query, at no cost.
    """

    _schema: ClassVar[Schema] = Schema(
        "QueryResponse",
        read_as={"frame": ("columns", "rows")},
    )
    id: str
    dataset: str
    statistic: str
    frame: pl.DataFrame
    columns: tuple[str, ...]
    """The columns of the server's rows (:attr:`frame` adds ``lower`` and ``upper``)."""
    cost: Cost
    accuracy: Accuracy
    mechanism: str
    noise_scale: float
    cached: bool
    budget_remaining: float
    ledger_seq: int
    created_at: datetime
    query: Mapping[str, Any] = field(repr=False)
    bounds: Mapping[str, Any] = field(repr=False)
    """The contribution and clamping bounds of the query (``"auto"`` where chosen; then see
    :attr:`bounds_chosen`)."""
    document: Mapping[str, Any] = field(repr=False, metadata=LOCAL)
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
    bounds_chosen: Mapping[str, Any] | None = None
    """With automatic bounds: the contribution and clamping bounds chosen (a DP choice)."""
    auto: Mapping[str, Any] | None = field(default=None, repr=False)
    """With automatic bounds: the cost split, the candidates and the selection steps."""
    epsilon_delta: Mapping[str, float] | None = None
    """For a zCDP cost: the equivalent (ε, δ)."""
    verified: bool = field(default=False, metadata=LOCAL)
    """Whether :class:`ruis_client.Ruis` checked :attr:`receipt` and it checked out: signed
    by the ledger's key, this release's entry, included in the checkpoint, and that
    checkpoint consistent with the last one the client saw. False without the
    ``cryptography`` package (``ruis-client[verify]``): the entry's hash and inclusion are
    checked, not the signature."""

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Release:
        """From the answer of ``POST /v1/queries`` or ``GET /v1/queries/{id}``."""
        accuracy = Accuracy.from_document(document["accuracy"])
        columns = list(document["columns"])
        return cls(
            id=document["id"],
            dataset=document["dataset"],
            statistic=document["statistic"],
            frame=release_frame(columns, document["rows"], accuracy),
            columns=tuple(columns),
            cost=Cost.from_document(document["cost"]),
            accuracy=accuracy,
            mechanism=document["mechanism"],
            noise_scale=float(document["noise_scale"]),
            cached=bool(document["cached"]),
            budget_remaining=_amount(document["budget_remaining"]),
            ledger_seq=int(document["ledger_seq"]),
            created_at=_time(document["created_at"]),
            query=document["query"],
            bounds=document.get("bounds") or {},
            document=dict(document),
            truncation=Truncation.from_document(document.get("truncation")),
            keys_selected=document.get("keys_selected"),
            threshold=document.get("threshold"),
            delta=document.get("delta"),
            period=document.get("period"),
            cumulative=Cumulative.from_document(document.get("cumulative")),
            dataset_version=int(document.get("dataset_version", 1)),
            receipt=Receipt.from_document(document.get("receipt")),
            bounds_chosen=document.get("bounds_chosen"),
            auto=document.get("auto"),
            epsilon_delta=document.get("epsilon_delta"),
        )

    def to_pandas(self) -> pandas.DataFrame:
        """:attr:`frame` as a pandas DataFrame. Needs pandas and pyarrow (``pip install
        ruis-client[pandas]``); :class:`PandasMissing` (an ImportError) says so otherwise."""
        return to_pandas(self.frame)


def to_pandas(frame: pl.DataFrame) -> pandas.DataFrame:
    """``frame`` as a pandas DataFrame; :class:`PandasMissing` without pandas and pyarrow."""
    for module in ("pandas", "pyarrow"):
        try:
            __import__(module)
        except ImportError as exc:
            raise PandasMissing(
                f'to_pandas() needs {module}: pip install "ruis-client[pandas]" '
                '(from a Ruis checkout: pip install "./client[pandas]")'
            ) from exc
    return frame.to_pandas()


@dataclass(frozen=True)
class ReleaseSummary:
    """One of your earlier releases, without its values (:meth:`ruis_client.Ruis.release`
    re-reads it at no cost)."""

    _schema: ClassVar[Schema] = Schema("QuerySummary")
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
