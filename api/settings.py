"""Settings read from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from api.release_timing import DEFAULT_QUANTUM_MS

DEFAULT_DATA_DIR = "./data"
MAX_BODY_BYTES = 1_000_000


@dataclass(frozen=True)
class Settings:
    """Where the ledger lives, where the data files live, and the bootstrap admin key."""

    database_url: str
    data_dir: Path
    bootstrap_admin_key: str | None = None
    max_body_bytes: int = MAX_BODY_BYTES
    metrics_token: str | None = field(default=None, repr=False)
    release_time_quantum_ms: int = DEFAULT_QUANTUM_MS

    @classmethod
    def from_env(cls) -> Settings:
        """``RUIS_DATABASE_URL`` (default: SQLite file ``ruis.db`` in the data directory),
        ``RUIS_DATA_DIR`` (default ``./data``), ``RUIS_BOOTSTRAP_ADMIN_KEY`` (optional),
        ``RUIS_METRICS_TOKEN`` (optional: when set, ``/metrics`` needs it as a bearer token),
        ``RUIS_RELEASE_TIME_QUANTUM_MS`` (releases answer at multiples of it; 0 turns it off)."""
        data_dir = Path(os.environ.get("RUIS_DATA_DIR", DEFAULT_DATA_DIR)).resolve()
        url = os.environ.get("RUIS_DATABASE_URL") or f"sqlite:///{data_dir / 'ruis.db'}"
        key = os.environ.get("RUIS_BOOTSTRAP_ADMIN_KEY") or None
        metrics_token = os.environ.get("RUIS_METRICS_TOKEN") or None
        quantum = int(os.environ.get("RUIS_RELEASE_TIME_QUANTUM_MS") or DEFAULT_QUANTUM_MS)
        return cls(database_url=url, data_dir=data_dir, bootstrap_admin_key=key,
                   metrics_token=metrics_token, release_time_quantum_ms=quantum)
