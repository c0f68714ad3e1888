"""Datasets: public metadata only, never the data."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.datafiles import resolve_data_path
from api.deps import Admin, AnyRole, DbDep, RequestIdDep, SettingsDep
from api.openapi import problems
from api.problems import InvalidRequest
from api.schemas import DatasetCreate, DatasetPublic, Page
from db import catalog
from db.models import Dataset
from privacy.errors import InvalidDataset
from privacy.metadata import check_file_schema

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


def dataset_public(dataset: Dataset) -> DatasetPublic:
    """The public view of a stored dataset."""
    metadata = catalog.metadata_of(dataset)
    metadata["budget_cap"] = catalog.cap_document(dataset)
    return DatasetPublic(**metadata, created_at=dataset.created_at)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetPublic,
             responses=problems(401, 403, 409, 413, 422, notes={
                 409: "A dataset with this name exists (`conflict`).",
                 422: "Invalid metadata, a path outside the data directory, a missing file "
                      "or declared columns that do not match its schema (`invalid-request`)."}))
def register_dataset(body: DatasetCreate, admin: Admin, db: DbDep, settings: SettingsDep,
                     request_id: RequestIdDep) -> DatasetPublic:
    """Register a dataset file with its public metadata. Role: admin.

    The path must name a Parquet or CSV file inside the data directory; the
    declared columns must exist in its schema with compatible types (only the
    schema is read).
    """
    path = resolve_data_path(settings.data_dir, body.path)
    try:
        check_file_schema(path, body)
    except InvalidDataset as exc:
        raise InvalidRequest(exc.detail) from None
    metadata = body.model_dump(mode="json")
    dataset = catalog.register(db, metadata=metadata, actor=admin.name, request_id=request_id)
    return dataset_public(dataset)


@router.get("", response_model=Page[DatasetPublic], responses=problems(401))
def list_datasets(principal: AnyRole, db: DbDep) -> Page[DatasetPublic]:
    """List datasets (an analyst sees those it holds a budget on)."""
    visible_to = principal.consumer_id if principal.role == "analyst" else None
    return Page[DatasetPublic](items=[dataset_public(d) for d in
                                      catalog.list_datasets(db, visible_to=visible_to)])


@router.get("/{name}", response_model=DatasetPublic, responses=problems(401, 404, 422))
def get_dataset(name: str, principal: AnyRole, db: DbDep) -> DatasetPublic:
    """One dataset's public metadata (404 for an analyst without a budget on it)."""
    visible_to = principal.consumer_id if principal.role == "analyst" else None
    return dataset_public(catalog.get(db, name, visible_to=visible_to))
