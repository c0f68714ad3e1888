"""A dataset's data file: checked in full at registration, cheaply before every release.

At registration (and reinstatement) :func:`examine` runs the full check: the
path is confined to the data directory; a CSV is parsed strictly once and
converted to a Parquet file kept under ``<data_dir>/.ruis/converted/``; the
Parquet footer's row count must not exceed the declared ``max_rows`` and its
schema must hold the declared columns. The result is the *fingerprint* of the
file queries read: path, size, modification time, footer row count, schema and
content SHA-256 (and the CSV source's path, size, time and SHA-256).

Before each release, before anything is debited, :func:`check_before_release`
compares the file's size, modification time, footer row count and schema (and a
CSV source's size and time) with the fingerprint. Any difference, a missing file
or an unreadable footer suspends the dataset (ledgered once): every later query
and preview on it is a 503 ``dataset-unavailable`` for every consumer, nothing
charged, until an admin reinstates it (:func:`reinstate`). The check reads file
metadata only, so neither its outcome nor its duration depends on a data value.

A dataset declared ``"engine": "spark"`` has its files (a Parquet file, a directory of
them, or a URI under an allowed root) examined and observed by :mod:`api.spark_files`
instead: the fingerprint is their listing, compared again before each release; its
check also starts the Spark session, so an unavailable engine is a 503 before any debit.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api import spark_files, spark_session
from api.data_paths import resolve_data_path
from api.problems import DatasetRetired, DatasetUnavailable, InvalidRequest, StorageUnavailable
from db import catalog, dataset_versions
from db import dataset_files as records
from db.engine import Database
from db.errors import AlreadyExists
from db.models import Dataset
from privacy.errors import InvalidDataset
from privacy.files import (
    SchemaMismatch,
    convert_csv,
    converted_name,
    parquet_facts,
    sha256_of,
    stat_facts,
)
from privacy.metadata import DatasetMetadata

log = logging.getLogger("ruis.datasets")
CONVERTED_DIR = ".ruis/converted"
"""Where converted CSV files are kept, relative to the data directory."""
SYSTEM_ACTOR = "ruis"


@dataclass(frozen=True)
class CheckedFile:
    """The file a release reads, as just checked against its fingerprint (a Spark dataset:
    ``path`` None, the files are the fingerprint's listing)."""

    path: Path | None
    sha256: str
    fingerprint: dict[str, Any]


def _unavailable(name: str) -> DatasetUnavailable:
    return DatasetUnavailable(
        f"the dataset {name!r} is unavailable: its data file changed or "
        "cannot be read; an admin must check and reinstate it. Nothing "
        "was charged."
    )


def _is_csv(metadata: DatasetMetadata) -> bool:
    return Path(metadata.path).suffix.lower() == ".csv"


def examine(data_dir: Path, metadata: DatasetMetadata) -> dict[str, Any]:
    """The full registration check of ``metadata``'s file; its fingerprint, or a 422.

    Raises InvalidRequest (nothing stored) for a path outside the data directory,
    a missing or unreadable file, a malformed CSV, a value that does not convert to
    its declared type, a schema without the declared columns, or more rows than
    ``max_rows``; StorageUnavailable if the converted file cannot be written.
    Messages name columns, lines and declared limits, never a data value. A Spark
    dataset's files: :func:`api.spark_files.examine`.
    """
    if metadata.engine == "spark":
        return spark_files.examine(data_dir, metadata)
    source = resolve_data_path(data_dir, metadata.path)
    try:
        origin: dict[str, Any] | None = None
        if _is_csv(metadata):
            size, mtime_ns = stat_facts(source)
            origin = {
                "path": metadata.path,
                "size": size,
                "mtime_ns": mtime_ns,
                "sha256": sha256_of(source),
            }
            relative = f"{CONVERTED_DIR}/{converted_name(origin['sha256'], metadata)}"
            target = data_dir.resolve() / relative
            try:
                convert_csv(source, metadata, target)
            except OSError as exc:
                log.error("cannot write the converted file of %r", metadata.name, exc_info=exc)
                raise StorageUnavailable(
                    "the converted data file could not be written (is "
                    "the data directory full or read-only?)"
                ) from None
            if stat_facts(source) != (size, mtime_ns):
                raise InvalidRequest("the CSV file changed while it was checked; try again")
        else:
            relative, target = metadata.path, source
        facts = parquet_facts(target, metadata, metadata.path)
        if metadata.max_rows is not None and facts.rows > metadata.max_rows:
            raise InvalidRequest(
                f"the file holds more rows than the declared max_rows ({metadata.max_rows})"
            )
        digest = sha256_of(target)
        if stat_facts(target) != (facts.size, facts.mtime_ns):
            raise InvalidRequest("the data file changed while it was checked; try again")
    except InvalidDataset as exc:
        raise InvalidRequest(exc.detail) from None
    except OSError:
        raise InvalidRequest(f"the data file {metadata.path!r} could not be read") from None
    return {
        "path": relative,
        "size": facts.size,
        "mtime_ns": facts.mtime_ns,
        "rows": facts.rows,
        "schema": facts.schema,
        "sha256": digest,
        "source": origin,
    }


def register(
    db: Database,
    data_dir: Path,
    metadata: DatasetMetadata,
    *,
    actor: str,
    request_id: str | None = None,
) -> Dataset:
    """Check ``metadata``'s file in full (:func:`examine`) and register it with its fingerprint.

    A taken name is refused (409) before the file is read; a refused check stores
    and ledgers nothing.
    """
    if catalog.exists(db, metadata.name):
        raise AlreadyExists(f"dataset {metadata.name!r} already exists")
    fingerprint = examine(data_dir, metadata)
    return catalog.register(
        db,
        metadata=metadata.model_dump(mode="json"),
        actor=actor,
        request_id=request_id,
        file=fingerprint,
    )


def reinstate(
    db: Database, data_dir: Path, name: str, *, actor: str, request_id: str | None = None
) -> Dataset:
    """Re-run the registration check on the dataset's current file and make it active.

    Records the new fingerprint; ledgers ``dataset_reinstated`` with the old and
    the new one. A failed check (422) leaves the dataset as it was.
    """
    dataset = catalog.get(db, name)
    metadata = DatasetMetadata.model_validate(catalog.metadata_of(dataset))
    fingerprint = examine(data_dir, metadata)
    return records.reinstate(
        db, name=name, fingerprint=fingerprint, actor=actor, request_id=request_id
    )


def require_active(dataset: Dataset) -> None:
    """Raise the 503 ``dataset-unavailable`` if the dataset is suspended, the 410
    ``dataset-retired`` if it is retired (reads no file)."""
    if dataset.status == dataset_versions.RETIRED:
        raise DatasetRetired(
            f"the dataset {dataset.name!r} is retired: it answers no new query or "
            "preview. Nothing was charged; earlier releases can still be re-read."
        )
    if dataset.status == records.SUSPENDED:
        raise _unavailable(dataset.name)


def _observe(
    data_dir: Path, fingerprint: dict[str, Any], metadata: DatasetMetadata
) -> tuple[str | None, dict[str, Any] | None]:
    """Why the file no longer matches ``fingerprint`` (None if it does), and what was seen."""
    if metadata.engine == "spark":
        return spark_files.observe(data_dir, fingerprint, metadata)
    origin = fingerprint.get("source")
    if origin is not None:
        try:
            size, mtime_ns = stat_facts(resolve_data_path(data_dir, origin["path"]))
        except (InvalidRequest, OSError):
            return "source_missing", None
        if (size, mtime_ns) != (origin["size"], origin["mtime_ns"]):
            return "source_changed", {"source": {"size": size, "mtime_ns": mtime_ns}}
    try:
        path = resolve_data_path(data_dir, fingerprint["path"])
    except InvalidRequest:
        return "file_missing", None
    try:
        facts = parquet_facts(path, metadata, fingerprint["path"])
    except SchemaMismatch:
        return "schema_changed", None
    except InvalidDataset:
        return ("file_missing" if not path.exists() else "file_unreadable"), None
    observed = {
        "size": facts.size,
        "mtime_ns": facts.mtime_ns,
        "rows": facts.rows,
        "schema": facts.schema,
    }
    if metadata.max_rows is not None and facts.rows > metadata.max_rows:
        return "max_rows_exceeded", observed
    if facts.rows != fingerprint["rows"]:
        return "row_count_changed", observed
    if facts.schema != fingerprint["schema"]:
        return "schema_changed", observed
    if (facts.size, facts.mtime_ns) != (fingerprint["size"], fingerprint["mtime_ns"]):
        return "file_changed", observed
    return None, observed


def is_current(data_dir: Path, dataset: Dataset) -> bool:
    """Whether the dataset is active and its file still matches its fingerprint."""
    fingerprint = records.fingerprint_of(dataset)
    if dataset.status in (records.SUSPENDED, dataset_versions.RETIRED) or fingerprint is None:
        return False
    metadata = DatasetMetadata.model_validate(catalog.metadata_of(dataset))
    return _observe(data_dir, fingerprint, metadata)[0] is None


def _suspend(
    db: Database,
    dataset: Dataset,
    reason: str,
    observed: dict[str, Any] | None,
    request_id: str | None,
) -> None:
    if records.suspend(
        db,
        name=dataset.name,
        reason=reason,
        observed=observed,
        actor=SYSTEM_ACTOR,
        request_id=request_id,
    ):
        log.warning("dataset %r suspended: %s", dataset.name, reason)


def check_before_release(
    db: Database,
    data_dir: Path,
    dataset: Dataset,
    metadata: DatasetMetadata,
    *,
    consumer: str,
    model: str,
    cost_units: int,
    query: dict[str, Any],
    request_id: str | None,
) -> CheckedFile:
    """The file a release may read, checked against its fingerprint before any debit.

    A suspended dataset, or one whose file no longer matches (which this call
    suspends), raises the 503 ``dataset-unavailable``; the refusal is ledgered as
    ``refused`` with cost 0 and reason ``dataset_unavailable``. A dataset
    registered before fingerprints existed gets its first one here (the full
    check; ledgered ``dataset_fingerprinted``), or is suspended if that fails.
    """
    try:
        fingerprint = _checked_fingerprint(db, data_dir, dataset, metadata, request_id)
    except (DatasetUnavailable, DatasetRetired) as exc:
        records.refuse_unavailable(
            db,
            consumer=consumer,
            dataset=dataset.name,
            model=model,
            asked_units=cost_units,
            details={"query": query},
            request_id=request_id,
            reason="dataset_retired" if isinstance(exc, DatasetRetired) else "dataset_unavailable",
        )
        raise
    if metadata.engine == "spark":
        spark_session.session()  # up before any debit (a 503 here charges nothing)
        return CheckedFile(path=None, sha256=str(fingerprint["sha256"]), fingerprint=fingerprint)
    return CheckedFile(
        path=resolve_data_path(data_dir, fingerprint["path"]),
        sha256=str(fingerprint["sha256"]),
        fingerprint=fingerprint,
    )


def _checked_fingerprint(
    db: Database,
    data_dir: Path,
    dataset: Dataset,
    metadata: DatasetMetadata,
    request_id: str | None,
) -> dict[str, Any]:
    require_active(dataset)
    fingerprint = records.fingerprint_of(dataset)
    if fingerprint is None:  # registered before fingerprints: the full check, once
        try:
            first = examine(data_dir, metadata)
        except InvalidRequest:
            _suspend(db, dataset, "first_check_failed", None, request_id)
            raise _unavailable(dataset.name) from None
        recorded = records.fingerprint_of(
            records.record(  # or the one a concurrent request
                db,
                name=dataset.name,
                fingerprint=first,
                actor=SYSTEM_ACTOR,  # recorded first
                request_id=request_id,
            )
        )
        fingerprint = first if recorded is None else recorded
    reason, observed = _observe(data_dir, fingerprint, metadata)
    if reason is not None:
        _suspend(db, dataset, reason, observed, request_id)
        raise _unavailable(dataset.name)
    return fingerprint


def check_after_release(
    db: Database,
    data_dir: Path,
    dataset: Dataset,
    metadata: DatasetMetadata,
    checked: CheckedFile,
    request_id: str | None,
) -> None:
    """Fail the release (raise) if the file changed while it was computed; suspends it.

    Called after the data was read: the values are not released if the file they
    were computed on may not be the one that was checked.
    """
    reason, observed = _observe(data_dir, checked.fingerprint, metadata)
    if reason is not None:
        _suspend(db, dataset, reason, observed, request_id)
        raise _unavailable(dataset.name)


def directory_state(path: Path, min_free_bytes: int, *, writable: bool) -> str:
    """``"ok"``, or why ``path`` is not usable: missing, not writable, or too little space."""
    access = os.R_OK | os.X_OK | (os.W_OK if writable else 0)
    if not path.is_dir() or not os.access(path, access):
        return "unavailable" if not path.is_dir() else "not writable"
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return "unavailable"
    return "ok" if free >= min_free_bytes else "low on space"
