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
from datetime import date, datetime
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
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

from privacy.amount import MAX_PRIVACY_AMOUNT, PrivacyAmount
from privacy.errors import InvalidDataset

ColumnType = Literal["categorical", "integer", "float", "date", "datetime"]
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
COLUMN_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
MAX_KEYS_PER_COLUMN = 100_000

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]

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


class ColumnSpec(BaseModel):
    """A declared column: its type, and its public keys or public bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: ColumnType
    keys: list[str | int] | None = Field(default=None, max_length=MAX_KEYS_PER_COLUMN)
    bounds: tuple[FiniteFloat, FiniteFloat] | None = None
    auto_bounds: bool = Field(
        default=False,
        description="clamp this column to bounds Ruis chooses per query (from a DP estimate, "
        "among candidates within the public bounds) unless the query gives bounds",
    )

    @model_serializer(mode="wrap")
    def _omit_default_auto(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Declarations without automatic bounds keep their stored form (and metadata digest).
        data: dict[str, Any] = handler(self)
        if not self.auto_bounds:
            data.pop("auto_bounds", None)
        return data

    @model_validator(mode="after")
    def _check_keys_and_bounds(self) -> ColumnSpec:
        if self.keys is not None:
            if self.type not in ("categorical", "date", "integer"):
                raise ValueError(
                    f"public keys are only allowed on categorical, date or integer "
                    f"columns, not on {self.type}"
                )
            if len(self.keys) == 0:
                raise ValueError("keys must not be empty")
            if len(set(map(str, self.keys))) != len(self.keys):
                raise ValueError("keys must be unique")
            if self.type == "date":
                for key in self.keys:
                    try:
                        date.fromisoformat(str(key))
                    except ValueError:
                        raise ValueError(f"date key {key!r} is not an ISO date") from None
            if self.type == "integer" and not all(
                isinstance(k, int) and not isinstance(k, bool) for k in self.keys
            ):
                raise ValueError("keys of an integer column must be integers")
            if self.type == "categorical" and not all(isinstance(k, str) for k in self.keys):
                raise ValueError("keys of a categorical column must be strings")
        if self.bounds is not None:
            if self.type not in ("integer", "float"):
                raise ValueError("bounds are only allowed on integer or float columns")
            lower, upper = self.bounds
            if not lower < upper:
                raise ValueError(f"bounds must satisfy lower < upper, got [{lower}, {upper}]")
            if self.type == "integer" and not (
                float(lower).is_integer() and float(upper).is_integer()
            ):
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
        if self.type == "date":
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


class DatasetMetadata(BaseModel):
    """The public metadata a dataset is registered with (see SPEC.md, Datasets)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=NAME_PATTERN, description="unique slug")
    path: str = Field(
        min_length=1,
        max_length=1024,
        description="file path relative to the data directory (.parquet or .csv)",
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
        description="δ used to show the (ε, δ) equivalent of zCDP costs",
    )
    budget_cap: BudgetAmount | None = None

    @model_serializer(mode="wrap")
    def _omit_default_limits(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self.auto_limits is None:
            data.pop("auto_limits", None)
        return data

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
        if suffix not in (".parquet", ".csv"):
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
