"""Contribution bounds per day vs over the whole period: unique devices per municipality × day.

Runs Ruis' privacy layer in-process (``plan_query`` + ``execute``) on
:func:`cli.demo_data.generate` data (default 20,000 devices, 14 days) with a
global k (``max_partitions_contributed`` over all (municipality, day) cells of a
device) and with ``"contribution_bounds_per": ["day"]`` (k municipalities on
each day), and prints per row: the noise scale OpenDP reports and the mean
absolute error per cell against the exact UNTRUNCATED answer (distinct devices
per cell, plain Polars), averaged over ``--reps`` releases.

    .venv/bin/python -m bench.bounds_per [--devices 20000] [--days 14] [--reps 3]

The data is generated into a temporary directory (about 2M rows at the default).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from cli import demo_data

ROWS: list[tuple[list[str], int | str]] = [
    ([], 3),
    ([], 14),
    ([], 42),
    ([], "auto"),
    (["day"], 1),
    (["day"], 2),
    (["day"], 3),
    (["day"], "auto"),
]
"""(contribution_bounds_per, max_partitions_contributed) per printed row."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--reps", type=int, default=3, help="releases per row")
    parser.add_argument("--epsilon", type=float, action="append", help="pure ε (repeatable)")
    args = parser.parse_args(argv)

    from privacy import DatasetMetadata, QueryRequest, execute, plan_query

    out = Path(tempfile.mkdtemp(prefix="ruis-bounds-per-"))
    files = demo_data.generate(out, devices=args.devices, days=args.days)
    registration = demo_data.events_registration(files)
    registration["path"] = str(files.events_path)
    registration.pop("budget_cap", None)
    metadata = DatasetMetadata.model_validate(registration)
    events = pl.read_parquet(files.events_path)
    by = ["municipality", "day"]
    exact = events.group_by(by).agg(pl.col("device_id").n_unique().alias("exact"))
    cells = len(files.municipality_codes) * len(files.days)
    print(
        f"{files.n_devices} devices, {events.height} rows, {cells} cells, "
        f"{exact['exact'].sum() / cells:.1f} devices per cell on average"
    )
    for epsilon in args.epsilon or [1.0, 4.0]:
        for per, k in ROWS:
            body: dict[str, Any] = {
                "dataset": metadata.name,
                "statistic": "unit_count",
                "group_by": by,
                "max_partitions_contributed": k,
                "privacy": {"epsilon": epsilon},
            }
            if per:
                body["contribution_bounds_per"] = per
            plan = plan_query(QueryRequest.model_validate(body), metadata, "pure")
            errors: list[float] = []
            chosen: Any = k
            scale = plan.noise_scale
            for _ in range(args.reps):
                result = execute(plan, events.lazy())
                scale = result.noise_scale
                if result.bounds_chosen is not None:
                    chosen = f"auto->{result.bounds_chosen['max_partitions_contributed']}"
                got = pl.DataFrame(result.rows, schema=[*by, "value"], orient="row").with_columns(
                    pl.col("day").str.to_date()
                )
                joined = got.join(exact, on=by, how="left").fill_null(0)
                errors.append(statistics.fmean((joined["value"] - joined["exact"]).abs().to_list()))
            print(
                f"eps={epsilon:g} per={per or '-'} k={chosen}: noise scale {scale:.2f}, "
                f"MAE per cell {statistics.mean(errors):.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
