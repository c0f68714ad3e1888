"""Data files as Ruis checks them: footer facts, a content digest, strict CSV conversion.

Queries read Parquet only. :func:`parquet_facts` reads what the Parquet footer
says (row count, schema) and what the file system says (size, modification
time), never a value. :func:`convert_csv` parses a CSV file once, strictly, with
the declared types, and writes the Parquet file queries then read. Errors name a
column and a row or line, never a value, so no message quotes the data.
"""

from __future__ import annotations

import csv
import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from privacy.data import dtype_of, stored_schema
from privacy.errors import InvalidDataset
from privacy.metadata import DatasetMetadata, check_schema

_TYPE_NAMES = {
    "integer": "integer (64-bit)",
    "float": "number",
    "date": "date",
    "datetime": "date-time",
    "categorical": "text",
}
CSV_FIELD_LIMIT = 1 << 20
"""Largest CSV field accepted (bytes); a longer one is a malformed file."""


class SchemaMismatch(InvalidDataset):
    """The file is readable but its schema lacks a declared column or type."""


@dataclass(frozen=True)
class FileFacts:
    """What the file system and the Parquet footer say about a file (no value)."""

    size: int
    mtime_ns: int
    rows: int
    schema: dict[str, str]


def stat_facts(path: Path) -> tuple[int, int]:
    """``(size, mtime_ns)`` of ``path`` (OSError if it is gone)."""
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def parquet_facts(path: Path, metadata: DatasetMetadata, label: str) -> FileFacts:
    """Size, modification time, footer row count and schema of the Parquet file ``path``.

    Reads the footer only (a few milliseconds whatever the number of rows), checks
    that the schema has the declared columns with compatible types (else
    :class:`SchemaMismatch`), and raises :class:`InvalidDataset` if the file is
    missing or its footer unreadable (messages name the file as ``label``).
    """
    try:
        size, mtime_ns = stat_facts(path)
    except OSError:
        raise InvalidDataset(f"the data file {label!r} is missing") from None
    try:
        schema = pl.read_parquet_schema(path)
        rows = int(pl.scan_parquet(path).select(pl.len()).collect().item())
    except Exception:  # polars raises many kinds on unreadable files; never quote them
        raise InvalidDataset(f"cannot read the Parquet footer of {label!r}") from None
    try:
        check_schema(pl.Schema(schema), metadata)
    except InvalidDataset as exc:
        raise SchemaMismatch(exc.detail) from None
    return FileFacts(
        size=size,
        mtime_ns=mtime_ns,
        rows=rows,
        schema={name: str(dtype) for name, dtype in schema.items()},
    )


def sha256_of(path: Path) -> str:
    """The SHA-256 (hex) of the file's bytes (OSError if it cannot be read)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _records(source: Path) -> Iterator[tuple[int, list[str]]]:
    """The CSV's records with the physical line each ends on (strict quoting)."""
    csv.field_size_limit(CSV_FIELD_LIMIT)
    with open(source, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, strict=True)
        while True:
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error:
                raise InvalidDataset(
                    f"line {reader.line_num + 1}: malformed CSV record (quoting or field size)"
                ) from None
            except UnicodeDecodeError:
                raise InvalidDataset(
                    f"around line {reader.line_num + 1}: the file is not valid UTF-8"
                ) from None
            yield reader.line_num, record


def _check_structure(source: Path, metadata: DatasetMetadata) -> tuple[int, bool]:
    """Check the header and that every record has its fields.

    Returns the number of data records and whether some record spans several lines.
    """
    records = _records(source)
    header_line, header = next(records, (0, []))
    if not header or header_line != 1:
        raise InvalidDataset("the CSV file has no header line")
    if len(set(header)) != len(header) or any(not name for name in header):
        raise InvalidDataset("the CSV header has empty or repeated column names")
    needed = list(stored_schema(metadata))
    for name in needed:
        if name not in header:
            what = "privacy unit column" if name == metadata.privacy_unit else "declared column"
            raise InvalidDataset(f"{what} {name!r} is not in the file")
    width, multiline, row = len(header), False, 0
    previous = header_line
    for row, (line, record) in enumerate(records, start=1):
        if len(record) != width:
            if record == []:  # a blank line
                raise InvalidDataset(f"line {line}: blank line inside the CSV data")
            raise InvalidDataset(f"line {line}: expected {width} fields, found {len(record)}")
        multiline = multiline or line != previous + 1
        previous = line
        if metadata.max_rows is not None and row > metadata.max_rows:
            raise InvalidDataset(
                f"the file holds more rows than the declared max_rows ({metadata.max_rows})"
            )
    return row, multiline


def _line_of(source: Path, row: int) -> int:
    """The physical line data row ``row`` (1-based, after the header) ends on."""
    for index, (line, _) in enumerate(_records(source)):
        if index == row:
            return line
    return 0  # pragma: no cover - the row exists: the structure was checked


def _typed(text: pl.Expr, column_type: str) -> pl.Expr:
    if column_type == "date":  # ISO 8601, as the declared keys are
        return text.str.to_date(format="%Y-%m-%d", strict=False)
    if column_type == "datetime":
        return text.str.to_datetime(time_unit="us", strict=False)
    return text.cast(dtype_of(column_type), strict=False)


def _cast_strictly(
    frame: pl.DataFrame, source: Path, metadata: DatasetMetadata, multiline: bool
) -> pl.DataFrame:
    """``frame`` (all text) cast to the declared types; any value that does not cast fails."""
    types = {
        metadata.privacy_unit: "categorical",
        **{
            name: spec.type
            for name, spec in metadata.columns.items()
            if spec.type != "derived"  # computed when the file is read
        },
    }
    columns: list[pl.Series] = []
    for name, column_type in types.items():
        text = frame.get_column(name)
        try:
            typed = frame.select(_typed(pl.col(name), column_type).alias(name)).to_series()
        except Exception:  # e.g. no date-time format fits the column; never quote polars
            raise InvalidDataset(
                f"column {name!r}: the values are not "
                f"{_TYPE_NAMES[column_type]}s in one ISO 8601 format"
            ) from None
        if typed.dtype == pl.Datetime and getattr(typed.dtype, "time_zone", None):
            typed = typed.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        bad = (text.is_not_null() & typed.is_null()).arg_true()
        if len(bad):
            row = int(bad[0]) + 1
            line = _line_of(source, row) if multiline else row + 1
            raise InvalidDataset(
                f"column {name!r}, row {row} (line {line}): not a valid {_TYPE_NAMES[column_type]}"
            )
        columns.append(typed)
    return pl.DataFrame(columns).select(
        [pl.col(name).cast(dtype) for name, dtype in stored_schema(metadata).items()]
    )


def converted_name(source_sha256: str, metadata: DatasetMetadata) -> str:
    """The converted file's name: the CSV's SHA-256 and a digest of the declared types."""
    types = ",".join(f"{name}:{spec.type}" for name, spec in metadata.columns.items())
    declared = hashlib.sha256(f"{metadata.privacy_unit};{types}".encode()).hexdigest()
    return f"{source_sha256}-{declared[:16]}.parquet"


def convert_csv(source: Path, metadata: DatasetMetadata, target: Path) -> None:
    """Parse the CSV ``source`` strictly with the declared types and write Parquet ``target``.

    Every record must have the header's number of fields, every non-empty value
    of the privacy unit and of each declared column must convert to its declared
    type (empty fields are nulls), and the file may not hold more rows than
    ``max_rows``; otherwise :class:`InvalidDataset` names the line or the column
    and row, never the value. ``target`` holds the privacy unit and the declared
    columns only. It is written to a temporary file and renamed into place; an
    existing ``target`` with the same content is left untouched (its modification
    time is part of other datasets' fingerprints). OSError if it cannot be written.
    """
    records, multiline = _check_structure(source, metadata)
    needed = list(stored_schema(metadata))
    try:
        frame = pl.read_csv(source, infer_schema=False, columns=needed)
    except Exception:  # never quote polars' message: it may hold a value
        raise InvalidDataset("the CSV file could not be parsed") from None
    if frame.height != records:  # the two parsers disagree: refuse rather than guess
        raise InvalidDataset("the CSV file could not be parsed consistently (check its quoting)")
    typed = _cast_strictly(frame, source, metadata, multiline)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        typed.write_parquet(temporary)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        if target.exists() and sha256_of(target) == sha256_of(temporary):
            temporary.unlink()
            return
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
