"""Public metadata of a dataset: what DP needs to know without reading the data.

Everything here is declared by the data owner (an admin) and is public: the
privacy unit column, the typed columns with their public keys and bounds, the
default contribution bounds and the optional budget cap. Nothing in this module
reads a value of the data; :func:`check_file_schema` reads only the file schema.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import re
import zoneinfo
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import polars as pl
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    WithJsonSchema,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from privacy.amount import MAX_PRIVACY_AMOUNT, PrivacyAmount
from privacy.errors import InvalidDataset

ColumnType = Literal["categorical", "integer", "float", "date", "datetime"]
DeclaredType = Literal["categorical", "integer", "float", "date", "datetime", "derived"]
"""A column's declared type: a stored type, or ``derived`` (computed from another column)."""
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
COLUMN_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
MAX_KEYS_PER_COLUMN = 100_000
MAX_HIERARCHY_LEVELS = 8


FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
PRIVATE_KEYS = "private"
"""``"keys": "private"``: a categorical column whose keys nobody lists; grouping on it selects
the released keys from the data with OpenDP's thresholded mechanisms (zCDP only, within δ)."""
_KEYS_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {
            "type": "array",
            "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "maxItems": 100_000,
        },
        {"const": PRIVATE_KEYS, "type": "string"},
        {"type": "null"},
    ],
    "default": None,
    "title": "Keys",
    "description": "the public keys, or 'private' (categorical only): the released keys are "
    "then selected from the data under a zCDP budget (README, 'private key selection')",
}

AUTO = "auto"
Auto = Literal["auto"]
"""A contribution or clamping bound that Ruis chooses per query from a DP estimate."""
DEFAULT_AUTO_LIMIT = 20
"""Largest candidate for an automatic contribution bound when the dataset declares none."""
MAX_AUTO_LIMIT = 100
"""Largest limit a dataset may declare for automatic contribution bounds."""


class PureCost(BaseModel):
    """An amount of pure ε-DP (Laplace-family mechanisms; ε adds up)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    model: Literal["pure"] = "pure"
    epsilon: Decimal = Field(
        gt=0, le=MAX_PRIVACY_AMOUNT, allow_inf_nan=False, max_digits=24, decimal_places=12
    )

    @field_serializer("epsilon", when_used="json")
    def _as_number(self, value: Decimal) -> float:
        return float(value)

    def amount(self) -> PrivacyAmount:
        """This epsilon as a :class:`~privacy.amount.PrivacyAmount` (model ``pure``)."""
        return PrivacyAmount.of(self.model, self.epsilon)


class ZcdpCost(BaseModel):
    """An amount of ρ-zCDP (Gaussian-family mechanisms; ρ adds up)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    model: Literal["zcdp"] = "zcdp"
    rho: Decimal = Field(
        gt=0, le=MAX_PRIVACY_AMOUNT, allow_inf_nan=False, max_digits=24, decimal_places=12
    )

    @field_serializer("rho", when_used="json")
    def _as_number(self, value: Decimal) -> float:
        return float(value)

    def amount(self) -> PrivacyAmount:
        """This rho as a :class:`~privacy.amount.PrivacyAmount` (model ``zcdp``)."""
        return PrivacyAmount.of(self.model, self.rho)


BudgetAmount = Annotated[PureCost | ZcdpCost, Field(discriminator="model")]

DerivedPart = Literal["hour", "weekday", "date", "iso_week", "month"]
"""What a derived column takes from its source date or datetime column."""
_PART_TYPES: dict[str, ColumnType] = {
    "hour": "integer",
    "weekday": "integer",
    "date": "date",
    "iso_week": "categorical",
    "month": "categorical",
}
_RANGED_PARTS = ("date", "iso_week", "month")


def derived_keys(part: str, first: date | None, last: date | None) -> list[str | int]:
    """The public keys a derived column implies: hours 0–23, weekdays 1–7 (Monday 1), or
    the dates, ISO weeks (``"2026-W10"``) or months (``"2026-03"``) from ``first`` to
    ``last`` (both included). Public: a function of the declaration only."""
    if part == "hour":
        return list(range(24))
    if part == "weekday":
        return list(range(1, 8))
    assert first is not None and last is not None
    days = (last - first).days + 1
    keys: list[str | int] = []
    for offset in range(days):
        key = day_key(part, first + timedelta(days=offset))
        if not keys or keys[-1] != key:
            keys.append(key)
    return keys


def day_key(part: str, day: date) -> str:
    """The key of ``day`` for a ``date`` (``"2026-03-05"``), ``iso_week`` (``"2026-W10"``,
    the ISO week-numbering year) or ``month`` (``"2026-03"``) part."""
    if part == "date":
        return day.isoformat()
    if part == "iso_week":
        year, week, _ = day.isocalendar()
        return f"{year:04d}-W{week:02d}"
    return f"{day.year:04d}-{day.month:02d}"


def _check_time_zone(zone: object) -> None:
    if not isinstance(zone, str):
        raise ValueError("time_zone must be an IANA time zone name, e.g. 'Europe/Amsterdam'")
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"time_zone {zone!r} is not a known IANA time zone") from None


def _declared_date(text: object, what: str) -> date:
    try:
        return date.fromisoformat(str(text))
    except ValueError:
        raise ValueError(f"{what} {text!r} is not an ISO date (YYYY-MM-DD)") from None


class ColumnSpec(BaseModel):
    """A declared column: its type, and its public keys or public bounds.

    A ``derived`` column is computed from the declared date or datetime column
    ``from`` (``part``: ``hour`` 0–23, ``weekday`` 1–7 with Monday 1, ``date``,
    ``iso_week`` ``"2026-W10"``, ``month`` ``"2026-03"``; the last three need the
    public ``range`` [first, last] of dates their keys cover). Its keys (and for
    ``hour``/``weekday`` its bounds) are implied by the declaration, so they are
    public; :attr:`value_type` is the type of its values. ``time_zone`` (an IANA
    name) reads the source's UTC times in that zone first.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    type: DeclaredType
    keys: Annotated[list[str | int] | None, WithJsonSchema(_KEYS_SCHEMA)] = Field(
        default=None, max_length=MAX_KEYS_PER_COLUMN
    )
    """The public keys; None when there are none (also for ``"keys": "private"``, see
    :attr:`private_keys`)."""
    private_keys: SkipJsonSchema[bool] = Field(default=False, exclude=True)
    """Declared ``"keys": "private"``: no public keys, but grouping may select keys from the
    data (zCDP only). Set only from that declaration, never given directly."""
    bounds: tuple[FiniteFloat, FiniteFloat] | None = None
    auto_bounds: bool = Field(
        default=False,
        description="clamp this column to bounds Ruis chooses per query (from a DP estimate, "
        "among candidates within the public bounds) unless the query gives bounds",
    )
    from_: str | None = Field(
        default=None,
        alias="from",
        pattern=COLUMN_PATTERN,
        description="derived only: the declared date or datetime column it is computed from",
    )
    part: DerivedPart | None = Field(default=None, description="derived only: what it takes")
    range: tuple[str, str] | None = Field(
        default=None,
        description="derived date, iso_week, month: the first and last date (ISO) its keys cover",
    )
    time_zone: str | None = Field(
        default=None,
        max_length=64,
        description="derived only: read the source's (UTC) times in this IANA time zone",
    )

    @model_validator(mode="before")
    @classmethod
    def _read_private_keys(cls, data: Any) -> Any:
        """``"keys": "private"`` → no public keys, :attr:`private_keys` set (categorical only)."""
        if not isinstance(data, dict):
            return data
        if "private_keys" in data:
            raise ValueError('declare private keys as "keys": "private"')
        if isinstance(data.get("keys"), str):
            if data["keys"] != PRIVATE_KEYS:
                raise ValueError(f"keys must be a list of public keys or {PRIVATE_KEYS!r}")
            if data.get("type") != "categorical":
                raise ValueError('"keys": "private" is only allowed on categorical columns')
            data = {**data, "keys": None, "private_keys": True}
        return data

    @model_validator(mode="before")
    @classmethod
    def _imply_derived_keys(cls, data: Any) -> Any:
        """A derived column's keys and bounds follow from its declaration (given: refused)."""
        if not isinstance(data, dict) or data.get("type") != "derived":
            return data
        for implied in ("keys", "bounds", "auto_bounds"):
            if data.get(implied) not in (None, False):
                raise ValueError(f"a derived column's {implied} are implied: do not declare them")
        part = data.get("part")
        if part not in _PART_TYPES:
            raise ValueError(f"a derived column needs 'part', one of {', '.join(_PART_TYPES)}")
        if data.get("from", data.get("from_")) is None:
            raise ValueError("a derived column needs 'from': the column it is computed from")
        span = data.get("range")
        first = last = None
        if part in _RANGED_PARTS:
            if not isinstance(span, list | tuple) or len(span) != 2:
                raise ValueError(f"a derived {part} column needs 'range': [first, last] dates")
            first = _declared_date(span[0], "range start")
            last = _declared_date(span[1], "range end")
            if last < first:
                raise ValueError("range must satisfy first <= last")
            if (last - first).days >= MAX_KEYS_PER_COLUMN:
                raise ValueError(f"range spans more than {MAX_KEYS_PER_COLUMN:,} days")
        elif span is not None:
            raise ValueError(f"a derived {part} column takes no 'range': its keys are fixed")
        zone = data.get("time_zone")
        if zone is not None:
            _check_time_zone(zone)
        implied_data = dict(data)
        implied_data["keys"] = derived_keys(part, first, last)
        if part in ("hour", "weekday"):
            implied_data["bounds"] = (0, 23) if part == "hour" else (1, 7)
        return implied_data

    @model_serializer(mode="wrap")
    def _omit_default_auto(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Declarations without automatic bounds keep their stored form (and metadata digest);
        # a derived column is stored as declared (its keys and bounds are implied).
        data: dict[str, Any] = handler(self)
        if not self.auto_bounds:
            data.pop("auto_bounds", None)
        source = data.pop("from_", None)
        for name in ("part", "range", "time_zone"):
            if data.get(name) is None:
                data.pop(name, None)
        if self.type == "derived":
            data.pop("keys", None)
            data.pop("bounds", None)
            data["from"] = source
        data.pop("private_keys", None)
        if self.private_keys:
            data["keys"] = PRIVATE_KEYS
        return data

    @property
    def value_type(self) -> ColumnType:
        """The type of the column's values: its declared type, or a derived part's."""
        if self.type == "derived":
            assert self.part is not None
            return _PART_TYPES[self.part]
        return self.type

    @model_validator(mode="after")
    def _check_keys_and_bounds(self) -> ColumnSpec:
        if self.type != "derived":
            for name in ("from_", "part", "range", "time_zone"):
                if getattr(self, name) is not None:
                    shown = "from" if name == "from_" else name
                    raise ValueError(f"'{shown}' is only used by derived columns")
        kind = self.value_type
        if self.keys is not None:
            if kind not in ("categorical", "date", "integer"):
                raise ValueError(
                    f"public keys are only allowed on categorical, date or integer "
                    f"columns, not on {kind}"
                )
            if len(self.keys) == 0:
                raise ValueError("keys must not be empty")
            if len(set(map(str, self.keys))) != len(self.keys):
                raise ValueError("keys must be unique")
            if kind == "date":
                for key in self.keys:
                    try:
                        date.fromisoformat(str(key))
                    except ValueError:
                        raise ValueError(f"date key {key!r} is not an ISO date") from None
            if kind == "integer" and not all(
                isinstance(k, int) and not isinstance(k, bool) for k in self.keys
            ):
                raise ValueError("keys of an integer column must be integers")
            if kind == "categorical" and not all(isinstance(k, str) for k in self.keys):
                raise ValueError("keys of a categorical column must be strings")
        if self.bounds is not None:
            if kind not in ("integer", "float"):
                raise ValueError("bounds are only allowed on integer or float columns")
            lower, upper = self.bounds
            if not lower < upper:
                raise ValueError(f"bounds must satisfy lower < upper, got [{lower}, {upper}]")
            if kind == "integer" and not (float(lower).is_integer() and float(upper).is_integer()):
                raise ValueError("bounds of an integer column must be integers")
            if max(abs(lower), abs(upper)) > 2**52:
                raise ValueError("bounds must lie within ±2^52")
        if self.auto_bounds and self.bounds is None:
            raise ValueError("auto_bounds needs public bounds: the candidates lie within them")
        return self

    def typed_keys(self) -> list[Any]:
        """The public keys converted to the Python values the column holds."""
        return list(self._typed_keys)

    @cached_property
    def _typed_keys(self) -> tuple[Any, ...]:
        if self.keys is None:
            return ()
        if self.value_type == "date":
            return tuple(date.fromisoformat(str(k)) for k in self.keys)
        return tuple(self.keys)

    @cached_property
    def _sorted_keys(self) -> tuple[Any, ...]:
        return tuple(sorted(self._typed_keys))

    def has_key_in(self, low: Any, high: Any) -> bool:
        """Whether some public key ``k`` has ``low ≤ k ≤ high``: a binary search over the
        keys, sorted once per column."""
        keys = self._sorted_keys
        start = bisect.bisect_left(keys, low)
        return start < len(keys) and keys[start] <= high

    def has_key(self, value: Any) -> bool:
        """Whether ``value`` is one of the public keys."""
        return self.has_key_in(value, value)

    def key_range(self) -> tuple[Any, Any] | None:
        """The smallest and the largest public key (None without keys)."""
        keys = self._sorted_keys
        return (keys[0], keys[-1]) if keys else None


class AutoLimits(BaseModel):
    """Public upper limits of the candidates for automatic contribution bounds.

    With ``"auto"``, Ruis chooses ``max_partitions_contributed`` among 1..limit
    (and at most the number of key combinations) and
    ``max_contributions_per_partition`` among 1..limit. Nothing about the
    candidates is read from the data.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_partitions_contributed: int = Field(default=DEFAULT_AUTO_LIMIT, ge=1, le=MAX_AUTO_LIMIT)
    max_contributions_per_partition: int = Field(
        default=DEFAULT_AUTO_LIMIT, ge=1, le=MAX_AUTO_LIMIT
    )


class HierarchyLevel(BaseModel):
    """One level of a public hierarchy: each key of the child column maps to one key of
    ``parent`` (e.g. every neighbourhood to its municipality). Declared, never read from
    the data: a row whose parent column disagrees with the map is not looked at by it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    parent: str = Field(pattern=COLUMN_PATTERN, description="the coarser column")
    map: dict[str, str] = Field(
        min_length=1,
        max_length=MAX_KEYS_PER_COLUMN,
        description="every key of the child column to the key of its parent",
    )


class DatasetMetadata(BaseModel):
    """The public metadata a dataset is registered with (see SPEC.md, Datasets)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=NAME_PATTERN, description="unique slug")
    path: str = Field(
        min_length=1,
        max_length=1024,
        description="file path relative to the data directory (.parquet or .csv); with "
        "engine 'spark' also a directory of Parquet files, or a URI under the roots the "
        "operator allows (RUIS_SPARK_DATA_ROOTS)",
    )
    engine: Literal["polars", "spark"] = Field(
        default="polars",
        description="what computes the exact aggregate before OpenDP's noise: 'polars' "
        "(embedded, streaming) or 'spark' (RUIS_SPARK_MASTER); the same query, cost, "
        "mechanism and accuracy on both",
    )
    privacy_unit: str = Field(
        pattern=COLUMN_PATTERN, description="column identifying the person or device protected"
    )
    columns: dict[str, ColumnSpec] = Field(min_length=1, max_length=256)
    max_partitions_contributed: Annotated[int, Field(ge=1, le=10_000)] | Auto = Field(
        default=1, description="groups one unit may affect, or 'auto' (chosen per query)"
    )
    max_contributions_per_partition: Annotated[int, Field(ge=1, le=100_000)] | Auto = Field(
        default=1, description="rows per group one unit may contribute, or 'auto'"
    )
    auto_limits: AutoLimits | None = Field(
        default=None,
        description="upper limits of the candidates for 'auto' contribution "
        f"bounds (default {DEFAULT_AUTO_LIMIT} each)",
    )
    max_rows: int | None = Field(
        default=None,
        ge=1,
        le=2**40,
        description="public upper bound on the number of rows; needed by float sums and means",
    )
    delta: float = Field(
        default=1e-9,
        gt=0,
        lt=1e-3,
        allow_inf_nan=False,
        description="δ used to show the (ε, δ) equivalent of zCDP costs, and the most δ a "
        "release's selection of private keys may have",
    )
    budget_cap: BudgetAmount | None = None
    hierarchy: dict[str, HierarchyLevel] | None = Field(
        default=None,
        max_length=MAX_HIERARCHY_LEVELS,
        description="public hierarchies: per child column, its parent column and the map of "
        "every child key to its parent key (e.g. neighbourhood -> municipality)",
    )

    @model_serializer(mode="wrap")
    def _omit_default_limits(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self.auto_limits is None:
            data.pop("auto_limits", None)
        if self.hierarchy is None:
            data.pop("hierarchy", None)
        if self.engine == "polars":  # the default: stored metadata (and digests) unchanged
            data.pop("engine", None)
        return data

    def parent_of(self, column: str) -> str | None:
        """The declared parent column of ``column`` in the hierarchy (None at the top)."""
        level = (self.hierarchy or {}).get(column)
        return level.parent if level is not None else None

    def ancestors(self, column: str) -> list[str]:
        """The coarser columns above ``column``, nearest first."""
        found: list[str] = []
        parent = self.parent_of(column)
        while parent is not None:
            found.append(parent)
            parent = self.parent_of(parent)
        return found

    def rollup_map(self, column: str, ancestor: str) -> dict[str, str]:
        """Each key of ``column`` to its key of ``ancestor`` (a column of :meth:`ancestors`),
        through every level between them. Public metadata only."""
        hierarchy = self.hierarchy or {}
        mapping = {key: key for key in map(str, self.columns[column].keys or ())}
        current = column
        while current != ancestor:
            level = hierarchy[current]
            mapping = {child: level.map[key] for child, key in mapping.items()}
            current = level.parent
        return mapping

    @model_validator(mode="after")
    def _check_derived_and_hierarchy(self) -> DatasetMetadata:
        for name, spec in self.columns.items():
            if spec.type != "derived":
                continue
            source = self.columns.get(spec.from_ or "")
            if spec.from_ == self.privacy_unit or source is None:
                raise ValueError(
                    f"derived column {name!r}: 'from' must name a declared date or datetime "
                    f"column, not {spec.from_!r}"
                )
            allowed = ("datetime",) if spec.part == "hour" else ("date", "datetime")
            if source.type not in allowed:
                raise ValueError(
                    f"derived column {name!r} ({spec.part}) needs a "
                    f"{' or '.join(allowed)} column; {spec.from_!r} is {source.type}"
                )
            if spec.time_zone is not None and source.type != "datetime":
                raise ValueError(f"derived column {name!r}: time_zone needs a datetime source")
        for child, level in (self.hierarchy or {}).items():
            self._check_level(child, level)
        for child in self.hierarchy or {}:
            seen = {child}
            parent = self.parent_of(child)
            while parent is not None:
                if parent in seen:
                    raise ValueError(f"the hierarchy above {child!r} has a cycle")
                seen.add(parent)
                parent = self.parent_of(parent)
        return self

    def _check_level(self, child: str, level: HierarchyLevel) -> None:
        """Both columns are declared with string keys; the map covers exactly the child's
        keys and names only the parent's keys."""
        for name in (child, level.parent):
            spec = self.columns.get(name)
            if spec is None or spec.keys is None or spec.value_type != "categorical":
                raise ValueError(
                    f"hierarchy {child!r} -> {level.parent!r}: {name!r} must be a declared "
                    f"categorical column with public keys"
                )
        if child == level.parent:
            raise ValueError(f"hierarchy: {child!r} cannot be its own parent")
        child_keys = set(map(str, self.columns[child].keys or ()))
        parent_keys = set(map(str, self.columns[level.parent].keys or ()))
        missing = sorted(child_keys - level.map.keys())
        if missing:
            raise ValueError(
                f"hierarchy {child!r} -> {level.parent!r}: the map lacks {len(missing)} "
                f"key(s) of {child!r}, e.g. {missing[0]!r}"
            )
        extra = sorted(level.map.keys() - child_keys)
        if extra:
            raise ValueError(
                f"hierarchy {child!r} -> {level.parent!r}: the map has key(s) that are not "
                f"keys of {child!r}, e.g. {extra[0]!r}"
            )
        unknown = sorted(set(level.map.values()) - parent_keys)
        if unknown:
            raise ValueError(
                f"hierarchy {child!r} -> {level.parent!r}: the map names value(s) that are "
                f"not keys of {level.parent!r}, e.g. {unknown[0]!r}"
            )

    def limits(self) -> AutoLimits:
        """The declared limits for automatic contribution bounds, or the defaults."""
        return self.auto_limits if self.auto_limits is not None else AutoLimits()

    @field_validator("columns")
    @classmethod
    def _check_column_names(cls, columns: dict[str, ColumnSpec]) -> dict[str, ColumnSpec]:
        for name in columns:
            if not re.fullmatch(COLUMN_PATTERN, name):
                raise ValueError(f"column name {name!r} must match {COLUMN_PATTERN}")
        return columns

    @cached_property
    def digest(self) -> str:
        """SHA-256 of this metadata's JSON: names the version a plan was compiled for.

        Computed once per (immutable) instance, not on every query.
        """
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()

    @model_validator(mode="after")
    def _check_unit(self) -> DatasetMetadata:
        if self.privacy_unit in self.columns:
            raise ValueError("the privacy unit column must not be declared as a queryable column")
        suffix = Path(self.path).suffix.lower()
        if self.engine == "spark":
            if suffix == ".csv":
                raise ValueError(
                    "the spark engine reads Parquet: give a .parquet file, a directory of "
                    "them or a URI (register a CSV file with the polars engine)"
                )
        elif suffix not in (".parquet", ".csv"):
            raise ValueError("path must end in .parquet or .csv")
        return self


_COMPATIBLE: dict[str, tuple[type[pl.DataType], ...]] = {
    "categorical": (pl.String, pl.Categorical, pl.Enum),
    "integer": (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64),
    "float": (pl.Float32, pl.Float64),
    "date": (pl.Date,),
    "datetime": (pl.Datetime,),
}


def scan_file(path: Path) -> pl.LazyFrame:
    """A lazy scan of a Parquet or CSV file (nothing is read until collected)."""
    if path.suffix.lower() == ".parquet":
        return pl.scan_parquet(path)
    return pl.scan_csv(path, try_parse_dates=True)


def check_file_schema(path: Path, metadata: DatasetMetadata) -> None:
    """Check that ``path`` holds the declared columns with compatible types.

    Reads the file's schema only (Parquet footer or CSV header and type
    inference), never a value that could reach a client. Raises
    :class:`InvalidDataset` naming the first mismatch.
    """
    try:
        schema = scan_file(path).collect_schema()
    except Exception as exc:  # polars raises many kinds on unreadable files
        raise InvalidDataset(
            f"cannot read the schema of {metadata.path!r}: {type(exc).__name__}"
        ) from None
    check_schema(schema, metadata)


def check_schema(schema: pl.Schema, metadata: DatasetMetadata) -> None:
    """Check that ``schema`` has the declared columns with compatible types.

    Raises :class:`InvalidDataset` naming the first mismatch (names and types only).
    """
    if metadata.privacy_unit not in schema:
        raise InvalidDataset(f"privacy unit column {metadata.privacy_unit!r} is not in the file")
    for name, spec in metadata.columns.items():
        if spec.type == "derived":
            if name in schema:
                raise InvalidDataset(
                    f"derived column {name!r} has the name of a column of the file: "
                    f"give the derived column another name"
                )
            continue
        if name not in schema:
            raise InvalidDataset(f"declared column {name!r} is not in the file")
        dtype = schema[name]
        if not isinstance(dtype, _COMPATIBLE[spec.type]) and dtype not in _COMPATIBLE[spec.type]:
            raise InvalidDataset(
                f"column {name!r} is declared {spec.type} but the file stores {dtype}"
            )


def iso(value: object) -> object:
    """A JSON-friendly form of a key value (dates as ISO strings)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("non-finite value")
    return value
