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

from privacy.metadata import ColumnSpec, DatasetMetadata

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
    """The schema of the frame queries run on: the privacy unit (String), then declared
    columns (derived ones with the type of their values)."""
    schema: dict[str, pl.DataType] = {metadata.privacy_unit: pl.String()}
    for name, spec in metadata.columns.items():
        schema[name] = dtype_of(spec.value_type)
    return pl.Schema(schema)


def stored_schema(metadata: DatasetMetadata) -> pl.Schema:
    """:func:`frame_schema` without the derived columns: what the file itself holds."""
    derived = {name for name, spec in metadata.columns.items() if spec.type == "derived"}
    return pl.Schema({n: t for n, t in frame_schema(metadata).items() if n not in derived})


def derived_expression(spec: ColumnSpec) -> pl.Expr:
    """A derived column's value, row-wise, from its (already typed) source column.

    ``hour`` 0–23 and ``weekday`` 1–7 (Monday 1) as Int64; ``date`` as Date;
    ``iso_week`` as ``"2026-W10"`` (ISO 8601 week-numbering year and week) and
    ``month`` as ``"2026-03"``. Datetimes are naive UTC (see :func:`load_frame`);
    with ``time_zone`` they are read in that zone first. A null source gives null.
    """
    assert spec.type == "derived" and spec.from_ is not None and spec.part is not None
    source = pl.col(spec.from_)
    if spec.time_zone is not None:
        source = source.dt.replace_time_zone("UTC").dt.convert_time_zone(spec.time_zone)
    if spec.part == "hour":
        return source.dt.hour().cast(pl.Int64)
    if spec.part == "weekday":
        return source.dt.weekday().cast(pl.Int64)
    if spec.part == "date":
        return source.dt.date()
    if spec.part == "iso_week":
        return source.dt.strftime("%G-W%V")
    return source.dt.strftime("%Y-%m")


def with_derived(frame: pl.LazyFrame, metadata: DatasetMetadata) -> pl.LazyFrame:
    """``frame`` (with the stored columns typed) plus every derived column (row-wise)."""
    derived = [
        derived_expression(spec).alias(name)
        for name, spec in metadata.columns.items()
        if spec.type == "derived"
    ]
    if not derived:
        return frame
    return frame.with_columns(derived).select(list(frame_schema(metadata)))


def load_frame(path: Path, metadata: DatasetMetadata) -> pl.LazyFrame:
    """Lazily scan the Parquet/CSV file at ``path`` cast to :func:`frame_schema`.

    Only the declared columns and the privacy unit are selected. Casts are
    non-strict: a value that does not fit its declared type becomes null (and is
    then ignored by queries), so no error depends on a value in the data. CSV
    files are read as text and cast the same way, never type-inferred. Datetimes
    are cast to naive microsecond timestamps (time-zone aware ones in UTC). Derived
    columns are computed from their sources (:func:`derived_expression`).
    """
    schema = stored_schema(metadata)
    if path.suffix.lower() == ".parquet":
        return with_derived(
            pl.scan_parquet(path).select(
                [pl.col(name).cast(dtype, strict=False) for name, dtype in schema.items()]
            ),
            metadata,
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
    return with_derived(pl.scan_csv(path, infer_schema=False).select(columns), metadata)
