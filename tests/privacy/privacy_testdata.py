"""Generated test data for the privacy tests (fixed numpy seeds; noise comes from OpenDP).

Data come from fixed numpy seeds; noise always comes from OpenDP. The metadata
points at a file that does not exist: planning must never need it, and
execution gets the data as a LazyFrame.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

from privacy import DatasetMetadata

DATA_SEED = 20260308
MUNICIPALITIES = [
    f"GM{code:04d}"
    for code in sorted(np.random.default_rng(7).choice(10_000, size=40, replace=False))
]
DAYS = [date(2026, 3, 1) + timedelta(days=i) for i in range(7)]
OPERATORS = ["kpn", "odido", "vodafone"]


def make_metadata(**overrides: Any) -> DatasetMetadata:
    """The test dataset's public metadata (its path does not exist)."""
    declaration: dict[str, Any] = {
        "name": "mobility_events",
        "path": "does/not/exist/mobility_events.parquet",
        "privacy_unit": "device_id",
        "columns": {
            "municipality": {"type": "categorical", "keys": MUNICIPALITIES},
            "day": {"type": "date", "keys": [d.isoformat() for d in DAYS]},
            "dwell_minutes": {"type": "float", "bounds": [0, 240]},
            "hour": {"type": "integer", "bounds": [0, 23], "keys": list(range(24))},
            "operator": {"type": "categorical"},
            "seen_at": {"type": "datetime"},
        },
        "max_partitions_contributed": 3,
        "max_contributions_per_partition": 1,
        "max_rows": 100_000,
    }
    declaration.update(overrides)
    return DatasetMetadata.model_validate(declaration)


def make_events(seed: int = DATA_SEED, devices: int = 2_000) -> pl.DataFrame:
    """Phone events: each device in 1–6 municipalities (skewed popularity), 1–5 rows each."""
    rng = np.random.default_rng(seed)
    popularity = rng.dirichlet(np.full(len(MUNICIPALITIES), 0.7))
    device_ids: list[str] = []
    municipalities: list[str] = []
    for device in range(devices):
        visited = rng.choice(
            len(MUNICIPALITIES), size=int(rng.integers(1, 7)), replace=False, p=popularity
        )
        for m in visited:
            rows = int(rng.integers(1, 6))
            device_ids += [f"dev-{device:05d}"] * rows
            municipalities += [MUNICIPALITIES[int(m)]] * rows
    n = len(device_ids)
    day_index = rng.integers(0, len(DAYS), n)
    hours = rng.integers(0, 24, n)
    return pl.DataFrame(
        {
            "device_id": device_ids,
            "municipality": municipalities,
            "day": [DAYS[int(i)] for i in day_index],
            "dwell_minutes": rng.gamma(2.0, 40.0, n),  # some above the 240 bound: clamped
            "hour": hours,
            "operator": rng.choice(OPERATORS, n),
            "seen_at": (
                np.datetime64("2026-03-01T00:00", "m")
                + (day_index * 1440 + hours * 60).astype("timedelta64[m]")
            ).astype("datetime64[us]"),
        }
    ).with_columns(
        pl.col("hour").cast(pl.Int64),
        pl.col("seen_at").cast(pl.Datetime("us")),
    )
