"""Automatic vs fixed contribution bounds: "visitors per municipality" on 10M events.

Runs Ruis' privacy layer in-process (``plan_query`` + ``load_frame`` +
``execute``, as the API does) with the usual fixed bound of 3 municipalities per
device and with ``"max_partitions_contributed": "auto"``, both at total ε = 1,
several times each, and prints per row: the bound used, the mean absolute error
per municipality against the exact UNTRUNCATED answer (distinct devices per
municipality, plain Polars), the same against the exact answer truncated at the
bound used (the noise alone), and the median warm time of a whole query.

    .venv/bin/python -m bench.auto_bounds [--reps 5] [--epsilon 1]

The data is the benchmark's 10M set (``bench.data.SIZES["10M"]``, under
``bench/data/``), generated with :func:`cli.demo_data.generate` if it is missing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import polars as pl

from bench.data import SIZES, ensure
from cli import demo_data

UNIT, GROUP = "device_id", "municipality"


def ensure_data() -> demo_data.DemoFiles:
    """The 10M-event demo data set of the benchmark (:data:`bench.data.SIZES`), generated
    into ``bench/data/`` if missing or of an older data format."""
    return ensure(SIZES["10M"]).files


def _per_group(frame: pl.DataFrame) -> dict[str, float]:
    return {str(key): float(value) for key, value in frame.iter_rows()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="warm repetitions per row")
    parser.add_argument("--epsilon", default="1", help="total cost of each query (pure ε)")
    args = parser.parse_args(argv)

    from privacy import DatasetMetadata, QueryRequest, execute, load_frame, plan_query
    from privacy.execute import prepare_frame

    files = ensure_data()
    registration = demo_data.events_registration(files)
    registration["budget_cap"] = None
    metadata = DatasetMetadata.model_validate(registration)
    path = files.events_path
    keys = list(files.municipality_codes)

    exact = _per_group(pl.scan_parquet(path).group_by(GROUP).agg(pl.col(UNIT).n_unique()).collect())
    truth = {key: exact.get(key, 0.0) for key in keys}
    truncated_truth: dict[int, dict[str, float]] = {}

    def truncated_at(k: int) -> dict[str, float]:
        if k not in truncated_truth:
            fixed = plan_query(query(k), metadata, "pure")
            frame = prepare_frame(fixed, load_frame(path, metadata)).collect()
            counts = _per_group(frame.group_by(GROUP).agg(pl.col(UNIT).n_unique()))
            truncated_truth[k] = {key: counts.get(key, 0.0) for key in keys}
        return truncated_truth[k]

    def query(k: int | str) -> QueryRequest:
        return QueryRequest.model_validate(
            {
                "dataset": "mobility_events",
                "statistic": "unit_count",
                "group_by": [GROUP],
                "max_partitions_contributed": k,
                "privacy": {"epsilon": args.epsilon},
            }
        )

    print(
        f"{files.n_events:,} events, {files.n_devices:,} devices, {len(keys)} "
        f"municipalities; total ε = {args.epsilon}; median of {args.reps} warm runs\n"
    )
    bounds: dict[str, int | str] = {"fixed": 3, "auto": "auto"}
    for bound in bounds.values():  # warm up: compile the plans, load the file once
        execute(plan_query(query(bound), metadata, "pure"), load_frame(path, metadata))
    times: dict[str, list[float]] = {label: [] for label in bounds}
    chosen: dict[str, list[int]] = {label: [] for label in bounds}
    error_untruncated: dict[str, list[float]] = {label: [] for label in bounds}
    error_noise: dict[str, list[float]] = {label: [] for label in bounds}
    scales: dict[str, list[float]] = {label: [] for label in bounds}
    for _ in range(args.reps):  # interleaved, so that drifts of the machine hit both alike
        for label, bound in bounds.items():
            t0 = time.perf_counter()
            plan = plan_query(query(bound), metadata, "pure")
            result = execute(plan, load_frame(path, metadata))
            times[label].append(time.perf_counter() - t0)
            k = int(
                result.bounds_chosen["max_partitions_contributed"]
                if result.bounds_chosen
                else bound
            )
            chosen[label].append(k)
            scales[label].append(result.noise_scale)
            released = {str(row[0]): float(row[1]) for row in result.rows}
            reference = truncated_at(k)
            error_untruncated[label].append(
                statistics.fmean(abs(released[key] - truth[key]) for key in keys)
            )
            error_noise[label].append(
                statistics.fmean(abs(released[key] - reference[key]) for key in keys)
            )
    rows = [
        (
            label,
            "/".join(map(str, sorted(set(chosen[label])))),
            statistics.fmean(error_untruncated[label]),
            statistics.fmean(error_noise[label]),
            statistics.median(times[label]),
            statistics.median(scales[label]),
        )
        for label in bounds
    ]

    header = (
        "bounds",
        "k",
        "MAE vs untruncated",
        "MAE vs truncated (noise)",
        "time (s)",
        "noise scale",
    )
    print(
        f"{header[0]:<7} {header[1]:>5} {header[2]:>19} {header[3]:>25} {header[4]:>9} "
        f"{header[5]:>12}"
    )
    for label, k_text, mae, noise, seconds, scale in rows:
        print(f"{label:<7} {k_text:>5} {mae:>19.2f} {noise:>25.2f} {seconds:>9.2f} {scale:>12.2f}")
    fixed_time, auto_time = rows[0][4], rows[1][4]
    print(f"\nauto / fixed time: {auto_time / fixed_time:.2f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
