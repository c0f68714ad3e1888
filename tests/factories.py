"""Small generated datasets for tests (data generation only; DP noise comes from OpenDP)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

MUNICIPALITIES = [f"GM{code:04d}" for code in (14, 34, 363, 599, 772, 1680)]
DAYS = [date(2026, 3, 1) + timedelta(days=i) for i in range(4)]


def write_events(
    data_dir: Path, *, devices: int = 300, seed: int = 7, name: str = "events.parquet"
) -> Path:
    """A small mobility-like table: device_id, municipality, day, dwell_minutes, hour."""
    rng = np.random.default_rng(seed)
    rows = devices * 6
    frame = pl.DataFrame(
        {
            "device_id": [f"d{i:05d}" for i in rng.integers(0, devices, rows)],
            "municipality": [MUNICIPALITIES[i] for i in rng.integers(0, len(MUNICIPALITIES), rows)],
            "day": [DAYS[i] for i in rng.integers(0, len(DAYS), rows)],
            "dwell_minutes": rng.uniform(0, 240, rows),
            "hour": rng.integers(0, 24, rows).astype(np.int64),
        }
    )
    path = data_dir / name
    frame.write_parquet(path)
    return path


def events_metadata(
    name: str = "events", path: str = "events.parquet", **overrides: Any
) -> dict[str, Any]:
    """Registration body for :func:`write_events`' file."""
    body: dict[str, Any] = {
        "name": name,
        "path": path,
        "privacy_unit": "device_id",
        "columns": {
            "municipality": {"type": "categorical", "keys": MUNICIPALITIES},
            "day": {"type": "date", "keys": [d.isoformat() for d in DAYS]},
            "dwell_minutes": {"type": "float", "bounds": [0, 240]},
            "hour": {"type": "integer", "bounds": [0, 23]},
        },
        "max_partitions_contributed": 3,
        "max_contributions_per_partition": 1,
        "max_rows": 100_000,
    }
    body.update(overrides)
    return body
