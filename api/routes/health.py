"""Liveness and readiness (no authentication)."""

from __future__ import annotations

import os

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import DbDep, SettingsDep
from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(db: DbDep, settings: SettingsDep) -> Health | JSONResponse:
    """The database answers and the data directory is readable."""
    checks: dict[str, str] = {}
    try:
        db.ping()
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    data_dir = settings.data_dir
    checks["data_dir"] = ("ok" if data_dir.is_dir() and os.access(data_dir, os.R_OK | os.X_OK)
                          else "unavailable")
    if all(v == "ok" for v in checks.values()):
        return Health(status="ok", checks=checks)
    return JSONResponse(Health(status="unavailable", checks=checks).model_dump(),
                        status_code=503)
