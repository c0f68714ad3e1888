"""Datasets: public metadata only, never the data."""

from __future__ import annotations

from fastapi import APIRouter, status

from api import dataset_files
from api.deps import Admin, AnyRole, DbDep, RequestIdDep, SettingsDep
from api.openapi import problems
from api.schemas import DatasetCreate, DatasetPublic, Page
from db import catalog
from db.dataset_files import fingerprint_of
from db.models import Dataset

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
_CHECK_422 = (
    "Invalid metadata, a path outside the data directory, a missing or unreadable "
    "file, a malformed CSV record or a value that does not convert to its declared "
    "type (the message names the column and line, never the value), declared "
    "columns that do not match the schema, or more rows than `max_rows` "
    "(`invalid-request`)."
)
_CHECK_503 = "A CSV file's converted Parquet file could not be written (`storage-unavailable`)."


def dataset_public(dataset: Dataset, *, full: bool = False) -> DatasetPublic:
    """The public view of a stored dataset; ``full`` adds the suspension reason and the
    file's fingerprint (for admins and auditors, not analysts)."""
    metadata = catalog.metadata_of(dataset)
    metadata["budget_cap"] = catalog.cap_document(dataset)
    extra = (
        {"suspended_reason": dataset.suspended_reason, "file": fingerprint_of(dataset)}
        if full
        else {}
    )
    return DatasetPublic(**metadata, created_at=dataset.created_at, status=dataset.status, **extra)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetPublic,
    responses=problems(
        401,
        403,
        409,
        413,
        422,
        503,
        notes={
            409: "A dataset with this name exists (`conflict`).",
            422: _CHECK_422,
            503: _CHECK_503,
        },
    ),
)
def register_dataset(
    body: DatasetCreate, admin: Admin, db: DbDep, settings: SettingsDep, request_id: RequestIdDep
) -> DatasetPublic:
    """Register a dataset file with its public metadata. Role: admin.

    The path must name a Parquet or CSV file inside the data directory. A Parquet
    file's footer must hold the declared columns with compatible types and at most
    `max_rows` rows (no value is read). A CSV file is parsed once, strictly, with
    the declared types and converted to a Parquet file that queries then read. The
    fingerprint of the file queries read is recorded (`file`): a later change
    suspends the dataset.
    """
    dataset = dataset_files.register(
        db, settings.data_dir, body, actor=admin.name, request_id=request_id
    )
    return dataset_public(dataset, full=True)


@router.get("", response_model=Page[DatasetPublic], responses=problems(401))
def list_datasets(principal: AnyRole, db: DbDep) -> Page[DatasetPublic]:
    """List datasets (an analyst sees those it holds a budget on)."""
    visible_to = principal.consumer_id if principal.role == "analyst" else None
    return Page[DatasetPublic](
        items=[
            dataset_public(d, full=visible_to is None)
            for d in catalog.list_datasets(db, visible_to=visible_to)
        ]
    )


@router.get("/{name}", response_model=DatasetPublic, responses=problems(401, 404, 422))
def get_dataset(name: str, principal: AnyRole, db: DbDep) -> DatasetPublic:
    """One dataset's public metadata (404 for an analyst without a budget on it)."""
    visible_to = principal.consumer_id if principal.role == "analyst" else None
    return dataset_public(catalog.get(db, name, visible_to=visible_to), full=visible_to is None)


@router.post(
    "/{name}/reinstate",
    response_model=DatasetPublic,
    responses=problems(
        401,
        403,
        404,
        422,
        503,
        notes={
            422: "The current file fails the registration check; the dataset stays "
            "as it was. " + _CHECK_422,
            503: _CHECK_503,
        },
    ),
)
def reinstate_dataset(
    name: str, admin: Admin, db: DbDep, settings: SettingsDep, request_id: RequestIdDep
) -> DatasetPublic:
    """Re-check a dataset's current file in full and make it active again. Role: admin.

    Runs the registration check on the file as it is now (a CSV is converted
    again), records its new fingerprint and ledgers `dataset_reinstated` with the
    old and the new one. Queries then run on the new contents: earlier answers are
    not served from the cache for them.
    """
    dataset = dataset_files.reinstate(
        db, settings.data_dir, name, actor=admin.name, request_id=request_id
    )
    return dataset_public(dataset, full=True)
