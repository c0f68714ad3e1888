"""The typed frame a query runs on: declared columns plus the privacy unit, nothing else.

:func:`frame_schema` derives the schema from public metadata only (the
measurement itself is planned over the narrower truncated schema of
:func:`privacy.measurement.truncated_schema`).
:func:`load_frame` scans the real file and casts it to exactly this schema,
lazily: nothing is read until ``execute`` collects the release.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from privacy.metadata import DatasetMetadata

_DTYPES: dict[str, pl.DataType] = {
    "categorical": pl.String(),
    "integer": pl.Int64(),
    "float": pl.Float64(),
    "date": pl.Date(),
    "datetime": pl.Datetime("us"),
}


def dtype_of(column_type: str) -> pl.DataType:
    """The Polars type a declared column is cast to (categorical → String, integer → Int64)."""
    return _DTYPES[column_type]


def frame_schema(metadata: DatasetMetadata) -> pl.Schema:
    """The schema of the frame queries run on: the privacy unit (String), then declared columns."""
    schema: dict[str, pl.DataType] = {metadata.privacy_unit: pl.String()}
    for name, spec in metadata.columns.items():
        schema[name] = dtype_of(spec.type)
    return pl.Schema(schema)


def load_frame(path: Path, metadata: DatasetMetadata) -> pl.LazyFrame:
    """Lazily scan the Parquet/CSV file at ``path`` cast to :func:`frame_schema`.

    Only the declared columns and the privacy unit are selected. Casts are
    non-strict: a value that does not fit its declared type becomes null (and is
    then ignored by queries), so no error depends on a value in the data. CSV
    files are read as text and cast the same way, never type-inferred. Datetimes
    are cast to naive microsecond timestamps (time-zone aware ones in UTC).
    """
    schema = frame_schema(metadata)
    if path.suffix.lower() == ".parquet":
        return pl.scan_parquet(path).select(
            [pl.col(name).cast(dtype, strict=False) for name, dtype in schema.items()]
        )
    columns: list[pl.Expr] = []
    for name, dtype in schema.items():
        text = pl.col(name)
        if dtype == pl.Date:
            columns.append(text.str.to_date(strict=False).alias(name))
        elif dtype == pl.Datetime:
            columns.append(text.str.to_datetime(time_unit="us", strict=False).alias(name))
        else:
            columns.append(text.cast(dtype, strict=False))
    return pl.scan_csv(path, infer_schema=False).select(columns)
