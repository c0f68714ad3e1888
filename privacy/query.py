"""The query a client sends, its validation against public metadata, and its canonical form.

A :class:`QueryRequest` is an immutable value checked in two steps: its shape by
pydantic (types, lengths, finite numbers), then its meaning against the
dataset's public metadata by :func:`resolve_query` (columns exist and are
declared, grouping columns have public keys or are declared ``"keys": "private"``,
bounds are sensible, ...).
Nothing here reads data: every check uses only the query and public metadata.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from privacy.amount import MAX_PRIVACY_AMOUNT, PrivacyAmount
from privacy.candidates import ClampCandidates, clamp_candidates, integer_candidates
from privacy.errors import InvalidQuery
from privacy.metadata import (
    AUTO,
    COLUMN_PATTERN,
    NAME_PATTERN,
    Auto,
    AutoLimits,
    ColumnSpec,
    DatasetMetadata,
)

Statistic = Literal["count", "unit_count", "sum", "mean", "quantile"]
PostProcess = Literal["non_negative"]
"""Post-processing of released counts (public, data-independent)."""
FilterOp = Literal["eq", "in", "between", "lt", "le", "gt", "ge"]

MAX_GROUP_BY = 8
MAX_FILTERS = 32
MAX_IN_VALUES = 10_000
MAX_STRING_LENGTH = 256
MAX_CELLS = 1_000_000
"""Largest number of key combinations (release rows) one query may ask for."""
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""Integer columns are read as Int64: filter values outside it are refused (422)."""
MAX_ABS_BOUND = 2.0**52
"""Clamping bounds must lie within ±2^52 (exact integers in a float)."""
DEFAULT_AUTO_SHARE = Decimal("0.1")
"""Share of a query's cost spent on choosing its automatic bounds, unless it says otherwise."""
MAX_AUTO_SHARE = Decimal("0.5")

ColumnName = Annotated[str, Field(pattern=COLUMN_PATTERN)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
ExactAmount = Annotated[
    Decimal,
    Field(gt=0, le=MAX_PRIVACY_AMOUNT, allow_inf_nan=False, max_digits=24, decimal_places=12),
]


def _check_scalar(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"filter values must be strings or numbers, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("filter values must be finite numbers")
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise ValueError("integer filter values must fit in 64 bits (Int64)")
    if isinstance(value, str) and len(value) > MAX_STRING_LENGTH:
        raise ValueError(f"filter strings must be at most {MAX_STRING_LENGTH} characters")


class Filter(BaseModel):
    """One row-wise condition; ``where`` filters are ANDed and applied before truncation.

    ``value`` is a scalar for ``eq``/``lt``/``le``/``gt``/``ge``, a non-empty list
    for ``in`` and a two-element list ``[low, high]`` for ``between`` (inclusive
    at both ends). Dates and datetimes are given as ISO 8601 strings.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    column: ColumnName
    op: FilterOp
    value: Any

    @model_validator(mode="after")
    def _check_value_shape(self) -> Filter:
        if self.op == "in":
            if not isinstance(self.value, list) or not 1 <= len(self.value) <= MAX_IN_VALUES:
                raise ValueError(f"'in' needs a list of 1 to {MAX_IN_VALUES} values")
            for item in self.value:
                _check_scalar(item)
        elif self.op == "between":
            if not isinstance(self.value, list) or len(self.value) != 2:
                raise ValueError("'between' needs a list [low, high]")
            for item in self.value:
                _check_scalar(item)
        else:
            _check_scalar(self.value)
        return self


class EpsilonLoss(BaseModel):
    """An explicit pure-DP cost ε (debited from a ``pure`` budget)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    epsilon: ExactAmount

    def amount(self) -> PrivacyAmount:
        """This cost as a :class:`~privacy.amount.PrivacyAmount` (model ``pure``)."""
        return PrivacyAmount.of("pure", self.epsilon)


class RhoLoss(BaseModel):
    """An explicit zCDP cost ρ (debited from a ``zcdp`` budget)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rho: ExactAmount

    def amount(self) -> PrivacyAmount:
        """This cost as a :class:`~privacy.amount.PrivacyAmount` (model ``zcdp``)."""
        return PrivacyAmount.of("zcdp", self.rho)


MAX_MIN_CELL_ROWS = 2**32 - 1
"""The largest ``min_cell_rows`` (OpenDP counts rows in a u32)."""


class AccuracyTarget(BaseModel):
    """Accuracy-first: the smallest cost whose per-cell error is ≤ ``max_error`` w.p. 1 − α."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_error: float = Field(gt=0, allow_inf_nan=False)
    alpha: float = Field(default=0.05, gt=0, lt=1, allow_inf_nan=False)
    min_cell_rows: int | None = Field(
        default=None,
        ge=1,
        le=MAX_MIN_CELL_ROWS,
        description="mean only (required there): the target holds for every cell with at "
        "least this many rows; the cost does not depend on the data",
    )


PrivacyRequest = EpsilonLoss | RhoLoss | AccuracyTarget


class UnitLocation(BaseModel):
    """Count each unit once, at its most frequent value of ``column`` (``unit_count`` only).

    Among the unit's rows that match ``where`` and hold a public key of ``column``, the
    key with the most rows; ties go to the smallest key. "Residents per neighbourhood":
    ``{"column": "neighbourhood", "rule": "most_frequent"}`` with ``group_by``
    ``["neighbourhood"]``, or a coarser column of a declared hierarchy (then each unit
    counts at the parent of its most frequent neighbourhood).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    column: ColumnName
    rule: Literal["most_frequent"] = "most_frequent"


def explicit_cost(amount: PrivacyAmount) -> EpsilonLoss | RhoLoss:
    """The explicit-cost request for ``amount``: ``{"epsilon": ...}`` (pure) or ``{"rho": ...}``."""
    if amount.model == "pure":
        return EpsilonLoss(epsilon=amount.value)
    return RhoLoss(rho=amount.value)


class QueryRequest(BaseModel):
    """An aggregate query (SPEC.md, "Queries"); validated for meaning by :func:`resolve_query`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    dataset: str = Field(pattern=NAME_PATTERN)
    statistic: Statistic
    column: ColumnName | None = None
    q: float | None = Field(default=None, allow_inf_nan=False)
    bounds: tuple[FiniteFloat, FiniteFloat] | Auto | None = None
    group_by: list[ColumnName] = Field(default_factory=list, max_length=MAX_GROUP_BY)
    where: list[Filter] = Field(default_factory=list, max_length=MAX_FILTERS)
    max_partitions_contributed: Annotated[int, Field(ge=1, le=10_000)] | Auto | None = None
    max_contributions_per_partition: Annotated[int, Field(ge=1, le=100_000)] | Auto | None = None
    auto_share: Decimal | None = Field(
        default=None,
        gt=0,
        le=MAX_AUTO_SHARE,
        allow_inf_nan=False,
        max_digits=7,
        decimal_places=6,
        description="share of the cost spent choosing 'auto' bounds (default 0.1, at most 0.5)",
    )
    post_process: list[PostProcess] = Field(
        default_factory=list,
        max_length=1,
        description="'non_negative' (count and unit_count only): negative noisy values are "
        "released as 0. The true count is never negative, so this never increases a cell's "
        "error and the stated bound still holds; cells near 0 are then biased upwards",
    )
    contribution_bounds_per: list[ColumnName] = Field(
        default_factory=list,
        max_length=MAX_GROUP_BY - 1,
        description="grouping columns (some, not all, of group_by) per value of which the "
        "contribution bounds apply: with ['day'], a unit contributes to at most "
        "max_partitions_contributed groups per day and max_contributions_per_partition rows "
        "per group, on every day. The sensitivity grows with the number of public keys of "
        "these columns (see README, 'Additions to the contract')",
    )
    unit_location: UnitLocation | None = Field(
        default=None,
        description="unit_count only: count each unit once, at its most frequent value of "
        "this column (ties: the smallest key); group_by is that column or a coarser one of "
        "a declared hierarchy",
    )
    rollup: list[ColumnName] = Field(
        default_factory=list,
        max_length=1,
        description="a coarser column of a declared hierarchy above one group_by column: "
        "the release also holds that level's rows (column 'level'), made consistent so that "
        "each parent is exactly the sum of its children (README, 'The crowd model')",
    )
    privacy: PrivacyRequest


@dataclass(frozen=True)
class Rollup:
    """A release with a coarser level: ``child`` (a column of ``group_by``) rolled up to
    ``parent`` (a coarser column of the declared hierarchy) by the public ``mapping``."""

    child: str
    parent: str
    mapping: tuple[tuple[str, str], ...]
    """Every public key of ``child`` with its key of ``parent``, in ``child``'s key order."""

    def parent_group_by(self, group_by: tuple[str, ...]) -> tuple[str, ...]:
        """``group_by`` at the parent level: ``child`` replaced by ``parent``."""
        return tuple(self.parent if name == self.child else name for name in group_by)

    def largest_family(self) -> int:
        """The most children any one parent key has."""
        sizes: dict[str, int] = {}
        for _, parent in self.mapping:
            sizes[parent] = sizes.get(parent, 0) + 1
        return max(sizes.values())


@dataclass(frozen=True)
class ResolvedFilter:
    """A filter whose value was checked against the column type.

    ``value`` is the canonical JSON form (dates as ISO strings), ``typed`` the
    Python value(s) compared with the column (``date``/``datetime`` objects).
    """

    column: str
    op: FilterOp
    value: Any
    typed: Any


@dataclass(frozen=True)
class AutoSpec:
    """What a query leaves to Ruis to choose, and among which public candidates.

    ``partitions`` / ``contributions`` are the candidates for ``k`` / ``c``
    (None when fixed); ``clamp`` the clamping candidates (None when fixed).
    ``share`` of the cost is spent on the choice (see :mod:`privacy.auto`).
    """

    share: Decimal
    limits: AutoLimits
    partitions: tuple[int, ...] | None
    contributions: tuple[int, ...] | None
    clamp: ClampCandidates | None

    def canonical(self) -> dict[str, Any]:
        """The JSON-able description stored in the canonical query."""
        described: dict[str, Any] = {"share": decimal_text(self.share)}
        if self.partitions is not None or self.contributions is not None:
            described["limits"] = self.limits.model_dump(mode="json")
        return described


@dataclass(frozen=True)
class ResolvedQuery:
    """A query validated against public metadata, with every default filled in.

    ``max_partitions_contributed`` is the effective k: at most the number of key
    combinations, and 1 without ``group_by`` (there is only one partition).
    ``max_contributions_per_partition`` is 1 for ``unit_count`` (a unit is
    counted once per group). With automatic bounds (``auto``), the fields hold
    the largest candidates (the widest clamp: the public bounds): a plan built
    from them is the worst case, and :meth:`with_bounds` gives the query at
    the bounds chosen.
    """

    dataset: str
    statistic: Statistic
    column: str | None
    column_type: str | None
    q: float | None
    bounds: tuple[float, float] | tuple[int, int] | None
    group_by: tuple[str, ...]
    filters: tuple[ResolvedFilter, ...]
    max_partitions_contributed: int
    max_contributions_per_partition: int
    privacy: PrivacyRequest
    cells: int
    auto: AutoSpec | None = None
    post_process: tuple[PostProcess, ...] = ()
    bounds_per: tuple[str, ...] = ()
    """``contribution_bounds_per``: the grouping columns per value of which k and c apply
    (in ``group_by`` order; empty: k and c hold over the whole dataset)."""
    bounds_per_cells: int = 1
    """D, the number of public key combinations of ``bounds_per`` that the ``where``
    filters on those columns let through (1 without ``bounds_per``): a unit may
    contribute k groups on each of them."""
    location: str | None = None
    """``unit_location``: the column whose most frequent value places each unit (then
    ``group_by`` is that column or a coarser one, and k = c = 1)."""
    rollup: Rollup | None = None
    private_keys: tuple[str, ...] = ()
    """The ``group_by`` columns with private keys (in ``group_by`` order): their released
    keys are selected from the data by OpenDP's thresholded key release (zCDP only)."""

    def unit_groups(self, k: int) -> int:
        """The most groups of ``group_by`` one unit has after truncation at ``k``: ``k·D``."""
        return k * self.bounds_per_cells

    def unit_rows(self, k: int, c: int) -> int:
        """The most rows one unit has after truncation at (k, c): ``k·c·D``."""
        return k * c * self.bounds_per_cells

    def with_bounds(
        self,
        k: int,
        c: int,
        bounds: tuple[float, float] | tuple[int, int] | None,
        privacy: PrivacyRequest,
    ) -> ResolvedQuery:
        """This query with fixed contribution and clamping bounds and cost (no ``auto``)."""
        return replace(
            self,
            max_partitions_contributed=k,
            max_contributions_per_partition=c,
            bounds=bounds,
            privacy=privacy,
            auto=None,
        )

    def canonical(self) -> dict[str, Any]:
        """The JSON-able canonical form: the cache key and what the ledger stores."""
        privacy: dict[str, Any]
        if not isinstance(self.privacy, AccuracyTarget):
            amount = self.privacy.amount()
            privacy = {amount.unit: decimal_text(amount.value)}
        else:
            privacy = {
                "max_error": float(self.privacy.max_error),
                "alpha": float(self.privacy.alpha),
            }
            if self.privacy.min_cell_rows is not None:  # absent when unset: forms stay the same
                privacy["min_cell_rows"] = self.privacy.min_cell_rows
        auto = self.auto
        canonical: dict[str, Any] = {
            "dataset": self.dataset,
            "statistic": self.statistic,
            "column": self.column,
            "q": self.q,
            "bounds": (
                AUTO
                if auto is not None and auto.clamp is not None
                else list(self.bounds)
                if self.bounds is not None
                else None
            ),
            "group_by": list(self.group_by),
            "where": [{"column": f.column, "op": f.op, "value": f.value} for f in self.filters],
            "max_partitions_contributed": (
                AUTO
                if auto is not None and auto.partitions is not None
                else self.max_partitions_contributed
            ),
            "max_contributions_per_partition": (
                AUTO
                if auto is not None and auto.contributions is not None
                else self.max_contributions_per_partition
            ),
            "privacy": privacy,
        }
        if auto is not None:
            canonical["auto"] = auto.canonical()
        if self.post_process:  # absent when empty: earlier canonical forms stay the same
            canonical["post_process"] = list(self.post_process)
        if self.bounds_per:  # likewise
            canonical["contribution_bounds_per"] = list(self.bounds_per)
        if self.location is not None:
            canonical["unit_location"] = {"column": self.location, "rule": "most_frequent"}
        if self.rollup is not None:
            canonical["rollup"] = [self.rollup.parent]
        return canonical


def decimal_text(amount: Decimal) -> str:
    """A canonical text form of an exact amount: ``Decimal("0.50")`` → ``"0.5"``."""
    text = format(amount.normalize(), "f")
    return text


def _normalise_float(value: float) -> float:
    return 0.0 if value == 0 else float(value)


def _column_spec(metadata: DatasetMetadata, name: str, role: str) -> ColumnSpec:
    if name == metadata.privacy_unit:
        raise InvalidQuery(
            f"column {name!r} is the privacy unit of dataset "
            f"{metadata.name!r} and cannot be used in a query ({role})"
        )
    spec = metadata.columns.get(name)
    if spec is None:
        declared = ", ".join(sorted(metadata.columns))
        raise InvalidQuery(
            f"unknown column {name!r} in {role}: dataset {metadata.name!r} declares only {declared}"
        )
    return spec


def _typed_filter_value(column: str, spec: ColumnSpec, value: object) -> tuple[Any, Any]:
    """Check one scalar against the column type: (canonical JSON value, typed value)."""
    where = f"filter on {column!r} ({spec.value_type})"
    if spec.value_type == "categorical":
        if not isinstance(value, str):
            raise InvalidQuery(f"{where}: expected a string, got {value!r}")
        return value, value
    if spec.value_type == "integer":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise InvalidQuery(f"{where}: expected an integer, got {value!r}")
        if not INT64_MIN <= value <= INT64_MAX:  # e.g. 1e19 given as a float
            raise InvalidQuery(
                f"{where}: {value!r} is outside the column's range (Int64: -2^63 to 2^63 - 1)"
            )
        return value, value
    if spec.value_type == "float":
        if isinstance(value, str):
            raise InvalidQuery(f"{where}: expected a number, got {value!r}")
        number = _normalise_float(float(value))  # type: ignore[arg-type]
        return number, number
    if not isinstance(value, str):
        raise InvalidQuery(f"{where}: expected an ISO 8601 string, got {value!r}")
    if spec.value_type == "date":
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise InvalidQuery(f"{where}: {value!r} is not an ISO date (YYYY-MM-DD)") from None
        return day.isoformat(), day
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidQuery(f"{where}: {value!r} is not an ISO 8601 datetime") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(), moment


def _resolve_filter(flt: Filter, metadata: DatasetMetadata) -> ResolvedFilter:
    spec = _column_spec(metadata, flt.column, "where")
    if flt.op == "in":
        pairs = {
            json.dumps(c): (c, t)
            for c, t in (_typed_filter_value(flt.column, spec, v) for v in flt.value)
        }
        ordered = [pairs[k] for k in sorted(pairs)]
        return ResolvedFilter(
            flt.column, flt.op, [c for c, _ in ordered], tuple(t for _, t in ordered)
        )
    if flt.op == "between":
        low, low_typed = _typed_filter_value(flt.column, spec, flt.value[0])
        high, high_typed = _typed_filter_value(flt.column, spec, flt.value[1])
        if low_typed > high_typed:
            raise InvalidQuery(
                f"filter 'between' on {flt.column!r}: low {low!r} is above high {high!r}"
            )
        return ResolvedFilter(flt.column, flt.op, [low, high], (low_typed, high_typed))
    canonical, typed = _typed_filter_value(flt.column, spec, flt.value)
    return ResolvedFilter(flt.column, flt.op, canonical, typed)


def _selects_a_key(flt: ResolvedFilter, spec: ColumnSpec) -> bool:
    """Whether some public key of ``spec`` satisfies ``flt`` (keys and ``flt.typed`` have
    one type); by lookups in the keys sorted once per column, not a scan per query."""
    if flt.op == "in":
        return any(spec.has_key(value) for value in flt.typed)
    if flt.op == "between":
        low, high = flt.typed
        return spec.has_key_in(low, high)
    if flt.op == "eq":
        return spec.has_key(flt.typed)
    key_range = spec.key_range()
    if key_range is None:
        return False
    smallest, largest = key_range
    selects: bool
    if flt.op == "lt":
        selects = smallest < flt.typed
    elif flt.op == "le":
        selects = smallest <= flt.typed
    elif flt.op == "gt":
        selects = largest > flt.typed
    else:
        selects = largest >= flt.typed
    return selects


def _check_selects_keys(flt: ResolvedFilter, metadata: DatasetMetadata) -> ResolvedFilter:
    """Refuse a filter on a column with public keys that no key satisfies.

    Such a filter selects only rows whose value is not a public key, which a query must not
    depend on: it is a 422 before anything is spent (decided from public metadata only).
    """
    spec = metadata.columns[flt.column]
    if spec.private_keys and flt.op not in ("eq", "in"):
        raise InvalidQuery(
            f"filter {flt.op!r} on {flt.column!r}: a column with private keys takes only "
            "'eq' and 'in' filters (nobody listed its keys, so they have no declared order)"
        )
    if spec.keys is not None and not _selects_a_key(flt, spec):
        raise InvalidQuery(
            f"filter {flt.op!r} on {flt.column!r} matches none of the column's public keys"
        )
    return flt


def _resolve_bounds(
    query: QueryRequest, spec: ColumnSpec, column: str
) -> tuple[float, float] | tuple[int, int]:
    raw = query.bounds if query.bounds is not None and query.bounds != AUTO else spec.bounds
    if raw is None and query.bounds == AUTO:
        raise InvalidQuery(
            f"'bounds': 'auto' needs public bounds on {column!r}: the candidates lie within them"
        )
    if raw is None or raw == AUTO:
        raise InvalidQuery(
            f"{query.statistic} of {column!r} needs clamping bounds: give "
            f"'bounds' in the query or declare public bounds for the column"
        )
    low, high = float(raw[0]), float(raw[1])
    if not (math.isfinite(low) and math.isfinite(high)):
        raise InvalidQuery("bounds must be finite numbers")
    if not low < high:
        raise InvalidQuery(f"bounds must satisfy lower < upper, got [{raw[0]}, {raw[1]}]")
    if max(abs(low), abs(high)) > MAX_ABS_BOUND:
        raise InvalidQuery("bounds must lie within ±2^52")
    if spec.value_type == "integer":
        if not (low.is_integer() and high.is_integer()):
            raise InvalidQuery(
                f"column {column!r} is integer: bounds must be integers, got [{raw[0]}, {raw[1]}]"
            )
        return int(low), int(high)
    return _normalise_float(low), _normalise_float(high)


@dataclass(frozen=True)
class _ValueColumn:
    """The aggregated column of sum/mean/quantile (all None/False for counts)."""

    column: str | None = None
    column_type: str | None = None
    bounds: tuple[float, float] | tuple[int, int] | None = None
    auto_clamp: bool = False
    """The clamping bounds are left to Ruis (asked, or the column's default)."""


@dataclass(frozen=True)
class _Contributions:
    """The effective (k, c), their candidates when automatic, and what was asked."""

    k: int
    c: int
    partitions: tuple[int, ...] | None
    contributions: tuple[int, ...] | None
    asked_k: int | Auto
    asked_c: int | Auto


def _check_dataset(query: QueryRequest, metadata: DatasetMetadata) -> None:
    if query.dataset != metadata.name:
        raise InvalidQuery(
            f"query is for dataset {query.dataset!r}, metadata is for {metadata.name!r}"
        )


def _resolve_value_column(query: QueryRequest, metadata: DatasetMetadata) -> _ValueColumn:
    """Counts take no column nor bounds; sum/mean/quantile a numeric column, its clamping
    bounds and a public ``max_rows``."""
    statistic = query.statistic
    if statistic in ("count", "unit_count"):
        if query.column is not None:
            raise InvalidQuery(f"{statistic} counts rows or units and takes no 'column'")
        if query.bounds is not None:
            raise InvalidQuery(f"{statistic} takes no 'bounds'")
        return _ValueColumn()
    if query.column is None:
        raise InvalidQuery(f"{statistic} needs a 'column'")
    spec = _column_spec(metadata, query.column, "column")
    if spec.value_type not in ("integer", "float"):
        raise InvalidQuery(
            f"{statistic} needs a numeric column; {query.column!r} is {spec.value_type}"
        )
    bounds = _resolve_bounds(query, spec, query.column)
    auto_clamp = query.bounds == AUTO or (query.bounds is None and spec.auto_bounds)
    if metadata.max_rows is None:
        raise InvalidQuery(
            f"{statistic} needs a public upper bound on the number of rows: "
            f"ask the administrator to declare 'max_rows' for dataset "
            f"{metadata.name!r}"
        )
    return _ValueColumn(query.column, spec.value_type, bounds, auto_clamp)


def _resolve_q(query: QueryRequest) -> float | None:
    """``q`` strictly between 0 and 1 for quantile, absent otherwise."""
    if query.statistic == "quantile":
        if query.q is None:
            raise InvalidQuery("quantile needs 'q', e.g. 0.5 for the median")
        if not 0 < query.q < 1 or not math.isfinite(query.q):
            raise InvalidQuery(f"'q' must lie strictly between 0 and 1, got {query.q}")
        return float(query.q)
    if query.q is not None:
        raise InvalidQuery(f"'q' is only used by quantile, not by {query.statistic}")
    return None


def _check_privacy_request(query: QueryRequest) -> None:
    """An accuracy target only where the error has a data-independent bound.

    ``mean``: only with ``min_cell_rows`` (its error depends on each cell's
    private row count, so the target is stated for cells of at least that
    many rows); ``quantile``: never (its error is in ranks); ``min_cell_rows``
    is refused for any other statistic.
    """
    statistic = query.statistic
    privacy = query.privacy
    if not isinstance(privacy, AccuracyTarget):
        return
    if statistic == "quantile":
        raise InvalidQuery(
            "an accuracy target ('max_error') is not supported for quantile: its error is "
            "stated in ranks of the data, which depend on the private data; give an explicit "
            "cost instead"
        )
    if statistic == "mean" and privacy.min_cell_rows is None:
        raise InvalidQuery(
            "an accuracy target ('max_error') for mean needs 'min_cell_rows': its error "
            "depends on the private number of rows in each cell, so state the smallest cell "
            "size the target must hold for, e.g. {'max_error': 2, 'alpha': 0.05, "
            "'min_cell_rows': 100}"
        )
    if statistic != "mean" and privacy.min_cell_rows is not None:
        raise InvalidQuery(f"'min_cell_rows' is only used by mean, not by {statistic}")


def _resolve_grouping(query: QueryRequest, metadata: DatasetMetadata) -> int:
    """The number of key combinations (cells) of ``group_by``: distinct columns with public
    keys, at most :data:`MAX_CELLS` combinations. Columns with private keys count 1 here:
    the number of their released keys depends on the data (:func:`_resolve_private_keys`)."""
    if len(set(query.group_by)) != len(query.group_by):
        raise InvalidQuery("group_by lists a column twice")
    cells = 1
    for name in query.group_by:
        spec = _column_spec(metadata, name, "group_by")
        if spec.private_keys:  # keys selected from the data (see _resolve_private_keys)
            continue
        if spec.keys is None:
            raise InvalidQuery(
                f"cannot group by {name!r}: it has no public keys (declare its "
                f"keys so that the released rows do not depend on the data, or declare "
                f'"keys": "private" to have them selected under a zCDP budget)'
            )
        cells *= len(spec.keys)
        if cells > MAX_CELLS:
            raise InvalidQuery(
                f"group_by {query.group_by} has more than {MAX_CELLS:,} key combinations"
            )
    return cells


def _resolve_bounds_per(
    query: QueryRequest, metadata: DatasetMetadata, filters: tuple[ResolvedFilter, ...]
) -> tuple[tuple[str, ...], int, int]:
    """The ``contribution_bounds_per`` columns in ``group_by`` order (distinct columns of
    ``group_by``, not all of them), the number of their public key combinations, and D:
    the number of those combinations the ``where`` filters on these columns let through
    (at least 1). Public metadata and the query only.

    D bounds the values of these columns under which one unit has rows after the filters
    and the key check (rows with other values never reach the truncation), so a smaller
    D is still a bound: a query for one day of a fortnight pays for one day.
    """
    per = query.contribution_bounds_per
    if not per:
        return (), 1, 1
    if len(set(per)) != len(per):
        raise InvalidQuery("contribution_bounds_per lists a column twice")
    outside = [name for name in per if name not in query.group_by]
    if outside:
        raise InvalidQuery(
            f"contribution_bounds_per must list columns of group_by; {outside[0]!r} is not in "
            f"group_by {query.group_by}"
        )
    if len(per) == len(query.group_by):
        raise InvalidQuery(
            "contribution_bounds_per must leave out at least one column of group_by: per "
            "value of all of them a unit has only one group, so max_partitions_contributed "
            "would mean nothing (leave contribution_bounds_per out and set "
            "max_partitions_contributed to bound the groups)"
        )
    ordered = tuple(name for name in query.group_by if name in per)
    cells = reachable = 1
    for name in ordered:
        spec = metadata.columns[name]
        keys = spec.typed_keys()  # the column has keys: checked by _resolve_grouping
        cells *= len(keys)
        on_column = [f for f in filters if f.column == name]
        if on_column:
            keys = [key for key in keys if all(_satisfies(f, key) for f in on_column)]
        reachable *= len(keys)
    return ordered, cells, max(1, reachable)


def _satisfies(flt: ResolvedFilter, key: Any) -> bool:
    """Whether the public ``key`` (of the filter's column type) satisfies ``flt``, as the
    row filter decides it (a NaN satisfies no comparison)."""
    if flt.op == "in":
        return any(key == value for value in flt.typed)
    if flt.op == "between":
        low, high = flt.typed
        return bool(low <= key <= high)
    comparisons = {
        "eq": key == flt.typed,
        "lt": key < flt.typed,
        "le": key <= flt.typed,
        "gt": key > flt.typed,
        "ge": key >= flt.typed,
    }
    return bool(comparisons[flt.op])


def _resolve_filters(query: QueryRequest, metadata: DatasetMetadata) -> tuple[ResolvedFilter, ...]:
    """The ``where`` filters, typed, de-duplicated and sorted; each selects some public key
    of its column when the column has keys."""
    resolved = {
        json.dumps([f.column, f.op, f.value]): f
        for f in (
            _check_selects_keys(_resolve_filter(flt, metadata), metadata) for flt in query.where
        )
    }
    return tuple(resolved[key] for key in sorted(resolved))


def _resolve_contributions(
    query: QueryRequest, metadata: DatasetMetadata, cells: int, private_keys: tuple[str, ...]
) -> _Contributions:
    """The effective k (1 without grouping, at most ``cells``: the key combinations a unit
    may choose among per value of ``contribution_bounds_per``) and c (1 for
    ``unit_count``), or for ``"auto"`` their candidates up to the dataset's limits (k: the
    largest)."""
    asked_k = query.max_partitions_contributed or metadata.max_partitions_contributed
    asked_c = query.max_contributions_per_partition or metadata.max_contributions_per_partition
    limits = metadata.limits()
    partitions: tuple[int, ...] | None = None
    contributions: tuple[int, ...] | None = None
    if not query.group_by:
        k = 1
    elif isinstance(asked_k, int):
        # with private keys the number of groups is not public: k stays as asked
        k = asked_k if private_keys else min(asked_k, cells)
    else:
        partitions = integer_candidates(min(limits.max_partitions_contributed, cells))
        k = partitions[-1]
    if query.statistic == "unit_count":
        c = 1
    elif isinstance(asked_c, int):
        c = asked_c
    else:
        contributions = integer_candidates(limits.max_contributions_per_partition)
        c = contributions[-1]
    return _Contributions(k, c, partitions, contributions, asked_k, asked_c)


def _resolve_auto(
    query: QueryRequest,
    metadata: DatasetMetadata,
    value: _ValueColumn,
    contributions: _Contributions,
) -> AutoSpec | None:
    """What is left to choose (a single candidate leaves nothing), and its share of the cost;
    ``auto_share`` only with a bound asked as ``"auto"``."""
    clamp: ClampCandidates | None = None
    if value.auto_clamp:
        assert value.bounds is not None and value.column_type is not None
        clamp = clamp_candidates(value.bounds, value.column_type)
    k_candidates = contributions.partitions
    c_candidates = contributions.contributions
    # a single candidate leaves nothing to choose
    k_candidates = k_candidates if k_candidates is not None and len(k_candidates) > 1 else None
    c_candidates = c_candidates if c_candidates is not None and len(c_candidates) > 1 else None
    clamp = clamp if clamp is not None and len(clamp.widths) > 1 else None
    if k_candidates is not None or c_candidates is not None or clamp is not None:
        return AutoSpec(
            share=query.auto_share if query.auto_share is not None else DEFAULT_AUTO_SHARE,
            limits=metadata.limits(),
            partitions=k_candidates,
            contributions=c_candidates,
            clamp=clamp,
        )
    if query.auto_share is not None and AUTO not in (
        contributions.asked_k,
        contributions.asked_c,
        query.bounds,
        AUTO if value.auto_clamp else None,
    ):
        raise InvalidQuery("'auto_share' is only used when a bound is 'auto'")
    return None


def _resolve_post_process(query: QueryRequest) -> tuple[PostProcess, ...]:
    """The post-processing asked for: ``non_negative`` only on counts."""
    if query.post_process and query.statistic not in ("count", "unit_count"):
        raise InvalidQuery(
            f"post_process 'non_negative' applies to count and unit_count, not to {query.statistic}"
        )
    return tuple(query.post_process)


def _resolve_location(query: QueryRequest, metadata: DatasetMetadata) -> str | None:
    """``unit_location``: on ``unit_count``, a column with public keys, ``group_by`` that
    column or a coarser one of the hierarchy, and no contribution bounds of its own (a
    unit has exactly one row: k = c = 1)."""
    location = query.unit_location
    if location is None:
        return None
    if query.statistic != "unit_count":
        raise InvalidQuery(
            f"unit_location places each unit in one group and applies to unit_count, "
            f"not to {query.statistic}"
        )
    spec = _column_spec(metadata, location.column, "unit_location")
    if spec.keys is None:
        raise InvalidQuery(
            f"unit_location needs a column with public keys; {location.column!r} has none"
        )
    allowed = [location.column, *metadata.ancestors(location.column)]
    if list(query.group_by) not in [[name] for name in allowed]:
        raise InvalidQuery(
            f"with unit_location on {location.column!r}, group_by must be one of "
            + ", ".join(f"[{name!r}]" for name in allowed)
            + f", not {query.group_by}"
        )
    given = [  # 1 is what unit_location means (and what its canonical form states)
        name
        for name in ("max_partitions_contributed", "max_contributions_per_partition")
        if getattr(query, name) not in (None, 1)
    ]
    if given:
        raise InvalidQuery(
            f"unit_location counts each unit once, in one group: {given[0]} does not apply "
            "(it is 1)"
        )
    if query.contribution_bounds_per:
        raise InvalidQuery(
            "unit_location counts each unit once: contribution_bounds_per does not apply"
        )
    return location.column


def _resolve_rollup(
    query: QueryRequest, metadata: DatasetMetadata, location: str | None, cells: int
) -> Rollup | None:
    """``rollup``: a coarser column of the hierarchy above exactly one ``group_by`` column,
    on statistics that add up (count, sum, unit_count with unit_location)."""
    if not query.rollup:
        return None
    (parent,) = query.rollup
    _column_spec(metadata, parent, "rollup")
    if parent in query.group_by:
        raise InvalidQuery(f"rollup column {parent!r} is already in group_by")
    children = [name for name in query.group_by if parent in metadata.ancestors(name)]
    if not children:
        raise InvalidQuery(
            f"rollup {parent!r} must be a coarser column of a declared hierarchy above a "
            f"group_by column; it is above none of {query.group_by}"
        )
    if len(children) > 1:
        raise InvalidQuery(f"rollup {parent!r} is above several group_by columns {children}")
    (child,) = children
    if query.statistic in ("mean", "quantile"):
        raise InvalidQuery(
            f"rollup needs a statistic that adds up (count, sum, unit_count with "
            f"unit_location): a parent's {query.statistic} is not made of its children's"
        )
    if query.statistic == "unit_count" and location is None:
        raise InvalidQuery(
            "rollup of unit_count needs unit_location: a unit seen in two children of one "
            f"{parent!r} is one unit there, so the parent's count of units is not the sum of "
            "its children's; with unit_location each unit is in exactly one child (or query "
            f"the {parent!r} level on its own)"
        )
    if query.post_process:
        raise InvalidQuery(
            "post_process 'non_negative' cannot be combined with rollup: it would break the "
            "exact sums of children to parents"
        )
    if child in query.contribution_bounds_per:
        raise InvalidQuery(
            f"rollup of {child!r} cannot be combined with contribution_bounds_per on {child!r}"
        )
    mapping = metadata.rollup_map(child, parent)
    parent_cells = (
        cells // len(metadata.columns[child].keys or ()) * len(metadata.columns[parent].keys or ())
    )
    if cells + parent_cells > MAX_CELLS:
        raise InvalidQuery(f"the rollup has more than {MAX_CELLS:,} rows")
    return Rollup(
        child=child,
        parent=parent,
        mapping=tuple((str(key), mapping[str(key)]) for key in metadata.columns[child].keys or ()),
    )


def _resolve_private_keys(
    query: QueryRequest, metadata: DatasetMetadata, location: str | None
) -> tuple[str, ...]:
    """The ``group_by`` columns with private keys, and what cannot be combined with them.

    Their keys are selected from the data by OpenDP's thresholded release of a noisy row
    count (``dp.len()``) in the same grouping, so: ``count`` and ``unit_count`` only; an
    explicit ρ (an accuracy target would need a threshold search per cost: not offered);
    explicit contribution bounds (``"auto"`` chooses among public key combinations);
    no ``rollup`` (its consistency needs every cell of both levels), no
    ``unit_location`` and no ``contribution_bounds_per`` on them (both need public keys).
    """
    private = tuple(name for name in query.group_by if metadata.columns[name].private_keys)
    if not private:
        return ()
    shown = ", ".join(repr(name) for name in private)
    if query.statistic not in ("count", "unit_count"):
        raise InvalidQuery(
            f"group_by {shown} (private keys) supports count and unit_count only: OpenDP "
            f"selects the released keys by thresholding a noisy row count in the same "
            f"release, which {query.statistic} does not have"
        )
    if isinstance(query.privacy, AccuracyTarget):
        raise InvalidQuery(
            f"group_by {shown} (private keys) needs an explicit cost {{'rho': ...}}: an "
            "accuracy target is not supported with key selection"
        )
    asked_k = query.max_partitions_contributed or metadata.max_partitions_contributed
    asked_c = query.max_contributions_per_partition or metadata.max_contributions_per_partition
    if asked_k == AUTO or (asked_c == AUTO and query.statistic != "unit_count"):
        raise InvalidQuery(
            f"group_by {shown} (private keys) needs explicit contribution bounds: give "
            "max_partitions_contributed and max_contributions_per_partition (automatic "
            "bounds choose among public key combinations)"
        )
    if query.rollup:
        raise InvalidQuery(f"rollup cannot be combined with group_by {shown} (private keys)")
    if location is not None:  # unit_location needs public keys: refused before this
        raise InvalidQuery(f"unit_location cannot be combined with group_by {shown}")
    inside = [name for name in query.contribution_bounds_per if name in private]
    if inside:
        raise InvalidQuery(
            f"contribution_bounds_per cannot list {inside[0]!r}: it has private keys (the "
            "bounds per value need the number of its public keys)"
        )
    return private


def resolve_query(query: QueryRequest, metadata: DatasetMetadata) -> ResolvedQuery:
    """Validate ``query`` against public ``metadata`` and fill in defaults.

    Uses only public information; raises :class:`InvalidQuery` with a message
    naming the problem. Does not check the privacy model (see ``plan_query``).
    The steps, in order (the first problem found is the one reported): the
    dataset, the value column and its bounds, ``q``, the privacy request, the
    grouping, the filters, ``contribution_bounds_per``, ``unit_location``, private keys,
    ``rollup``,
    the contribution bounds, the automatic bounds, the post-processing.
    """
    _check_dataset(query, metadata)
    value = _resolve_value_column(query, metadata)
    q = _resolve_q(query)
    _check_privacy_request(query)
    cells = _resolve_grouping(query, metadata)
    filters = _resolve_filters(query, metadata)
    bounds_per, per_keys, bounds_per_cells = _resolve_bounds_per(query, metadata, filters)
    location = _resolve_location(query, metadata)
    private_keys = _resolve_private_keys(query, metadata, location)
    rollup = _resolve_rollup(query, metadata, location, cells)
    if location is None:
        contributions = _resolve_contributions(query, metadata, cells // per_keys, private_keys)
        auto = _resolve_auto(query, metadata, value, contributions)
    else:  # one row per unit: nothing to bound, nothing to choose
        contributions = _Contributions(1, 1, None, None, 1, 1)
        auto = None
        if query.auto_share is not None:
            raise InvalidQuery("'auto_share' is only used when a bound is 'auto'")
    post_process = _resolve_post_process(query)
    return ResolvedQuery(
        dataset=query.dataset,
        statistic=query.statistic,
        column=value.column,
        column_type=value.column_type,
        q=q,
        bounds=value.bounds,
        group_by=tuple(query.group_by),
        filters=filters,
        max_partitions_contributed=contributions.k,
        max_contributions_per_partition=contributions.c,
        privacy=query.privacy,
        cells=cells,
        auto=auto,
        post_process=post_process,
        bounds_per=bounds_per,
        bounds_per_cells=bounds_per_cells,
        location=location,
        rollup=rollup,
        private_keys=private_keys,
    )


def canonical_query(query: QueryRequest, metadata: DatasetMetadata) -> dict[str, Any]:
    """The canonical JSON-able form of ``query`` (cache key, stored in the ledger).

    Defaults are filled from the metadata (contribution bounds, clamping bounds),
    ``group_by`` keeps its order (it fixes the release's column order), filters
    are sorted and de-duplicated, ``in`` lists sorted, dates written as ISO
    strings, exact amounts as decimal strings (``"0.5"``); automatic bounds are
    ``"auto"``, with ``"auto": {"share", "limits"}`` describing them. Raises
    :class:`InvalidQuery` when the query is invalid for this dataset.
    """
    return resolve_query(query, metadata).canonical()
