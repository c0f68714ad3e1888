"""Liveness and readiness (no authentication)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.dataset_files import directory_state
from api.deps import DbDep, SettingsDep
from api.schemas import Health
from db.dataset_files import count_suspended

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(db: DbDep, settings: SettingsDep) -> Health | JSONResponse:
    """Ready: the database answers, the data directory is readable and writable and it and
    an SQLite database's directory have free space. 503 naming the failing check otherwise.

    Suspended datasets make it ``degraded`` (still 200): the other datasets are served,
    and every replica sees the same files, so taking replicas out of rotation would not
    help. ``checks.datasets`` counts them (no names: this endpoint is unauthenticated).
    """
    checks: dict[str, str] = {}
    suspended = 0
    try:
        db.ping()
        checks["database"] = "ok"
        suspended = count_suspended(db)
    except Exception as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    checks["data_dir"] = directory_state(settings.data_dir, settings.min_free_bytes, writable=True)
    database_dir = db.local_directory
    if database_dir is not None:
        checks["database_dir"] = directory_state(
            database_dir, settings.min_free_bytes, writable=True
        )
    if checks["database"] == "ok":
        checks["datasets"] = f"{suspended} suspended" if suspended else "ok"
    if any(v != "ok" for name, v in checks.items() if name != "datasets"):
        return JSONResponse(
            Health(status="unavailable", checks=checks).model_dump(), status_code=503
        )
    return Health(status="degraded" if suspended else "ok", checks=checks)
