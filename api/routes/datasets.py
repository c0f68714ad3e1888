"""Datasets: public metadata only, never the data."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import Admin, AnyRole, DbDep, RequestIdDep, SettingsDep
from api.openapi import problems
from api.schemas import DatasetCreate, DatasetPublic, DatasetVersionCreate, Page
from api.services import Actor
from api.services import datasets as service

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
_CHECK_422 = (
    "Invalid metadata, a path outside the data directory, a missing or unreadable "
    "file, a malformed CSV record or a value that does not convert to its declared "
    "type (the message names the column and line, never the value), declared "
    "columns that do not match the schema, or more rows than `max_rows` "
    "(`invalid-request`)."
)
_CHECK_503 = "A CSV file's converted Parquet file could not be written (`storage-unavailable`)."


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
            409: "A dataset with this name exists, or the file is registered already "
            "as a dataset with another cap than the one stated (every dataset over one "
            "file shares its cap) (`conflict`).",
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

    A file (by path or content SHA-256) that another dataset was registered on keeps
    one cap for all the datasets over it: the new one shares the first one's cap
    (`budget_cap` must be absent or the same) and every release on any of them
    spends from it.
    """
    return service.register_dataset(
        db, settings.data_dir, body, actor=Actor.of(admin), request_id=request_id
    )


@router.get("", response_model=Page[DatasetPublic], responses=problems(401))
def list_datasets(principal: AnyRole, db: DbDep) -> Page[DatasetPublic]:
    """List datasets (an analyst sees those it holds a budget on)."""
    return service.list_datasets(db, actor=Actor.of(principal))


@router.get("/{name}", response_model=DatasetPublic, responses=problems(401, 404, 422))
def get_dataset(name: str, principal: AnyRole, db: DbDep) -> DatasetPublic:
    """One dataset's public metadata (404 for an analyst without a budget on it)."""
    return service.get_dataset(db, name, actor=Actor.of(principal))


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
    return service.reinstate_dataset(
        db, settings.data_dir, name, actor=Actor.of(admin), request_id=request_id
    )


@router.post(
    "/{name}/versions",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetPublic,
    responses=problems(
        401,
        403,
        404,
        409,
        413,
        422,
        503,
        notes={
            409: "The dataset is retired, another version was added meanwhile, the file "
            "and metadata are the current version's, or the file is registered as a "
            "dataset with a separate cap (`conflict`).",
            422: "The version would loosen the metadata (anything but grown keys of date "
            "columns, a grown range of derived date columns and max_rows), or the new "
            "file fails the registration check; nothing is stored. " + _CHECK_422,
            503: _CHECK_503,
        },
    ),
)
def add_dataset_version(
    name: str,
    body: DatasetVersionCreate,
    admin: Admin,
    db: DbDep,
    settings: SettingsDep,
    request_id: RequestIdDep,
) -> DatasetPublic:
    """Add a version of a dataset: a new file, e.g. with one more month. Role: admin.

    The new file is checked in full as at registration. The keys of date columns
    (`columns: {"day": {"keys": [...]}}`, every current key kept) and the `range` of
    derived date, iso_week and month columns may grow, and `max_rows` may change;
    nothing else about the metadata can (that needs a new dataset). Queries then run
    on the new version; every release names its `dataset_version`, and a cached
    answer is served only for the version it was computed on. Ledgered
    `dataset_version_added`.
    """
    return service.add_version(
        db, settings.data_dir, name, body, actor=Actor.of(admin), request_id=request_id
    )


@router.post(
    "/{name}/retire",
    response_model=DatasetPublic,
    responses=problems(
        401, 403, 404, 409, 422, notes={409: "The dataset is retired already (`conflict`)."}
    ),
)
def retire_dataset(name: str, admin: Admin, db: DbDep, request_id: RequestIdDep) -> DatasetPublic:
    """Retire a dataset: it answers no new query or preview (410). Role: admin.

    Its history is kept: the ledger, its versions and budgets, and every release,
    which its consumer can still re-read. What was spent under a cap shared with other
    datasets over the same file stays spent. Ledgered `dataset_retired`.
    """
    return service.retire_dataset(db, name, actor=Actor.of(admin), request_id=request_id)
