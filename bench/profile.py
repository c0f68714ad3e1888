"""``python -m bench.profile``: where a warm in-process Ruis query spends its time.

Prints the parts of one warm ``execute`` timed apart (``prepare_frame``, i.e.
the ``where`` filters and the per-unit truncation; the OpenDP measurement; the
whole call), then Polars' own per-node profile (``LazyFrame.profile``) of the
``prepare_frame`` plan. For Python-level profiles of the HTTP path, attach
py-spy to the server (see ``bench/README.md``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import polars as pl

from bench.data import SIZES, ensure
from bench.queries import QUERIES


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--size", default="10M", choices=list(SIZES))
    parser.add_argument("--query", default="Q1", choices=[q.name for q in QUERIES])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)

    from privacy import DatasetMetadata, QueryRequest, execute, load_frame, plan_query
    from privacy.execute import measurement_frame, prepare_frame

    query = next(q for q in QUERIES if q.name == args.query)
    data = ensure(SIZES[args.size])
    metadata = DatasetMetadata.model_validate(data.registration(query.dataset))
    path = data.spec.directory / query.file
    plan = plan_query(QueryRequest.model_validate(query.body()), metadata, "pure")
    execute(plan, load_frame(path, metadata))  # warm up

    parts: dict[str, list[float]] = {"prepare_frame": [], "measurement": [], "execute": []}
    for _ in range(args.reps):
        t0 = time.perf_counter()
        truncated = prepare_frame(plan, load_frame(path, metadata)).collect()
        t1 = time.perf_counter()
        plan.measurement(measurement_frame(plan, truncated)).collect()
        t2 = time.perf_counter()
        execute(plan, load_frame(path, metadata))
        t3 = time.perf_counter()
        parts["prepare_frame"].append(t1 - t0)
        parts["measurement"].append(t2 - t1)
        parts["execute"].append(t3 - t2)
    print(f"{query.name} ({query.title}) at {args.size}, warm, median of {args.reps}:")
    for name, times in parts.items():
        print(f"  {name:<14} {statistics.median(times):7.3f} s")

    lazy = prepare_frame(plan, load_frame(path, metadata))
    print("\nprepare_frame plan:\n" + lazy.explain())
    _, profile = lazy.profile()
    profile = profile.with_columns(ms=(pl.col("end") - pl.col("start")) / 1000)
    with pl.Config(tbl_rows=100, fmt_str_lengths=100, tbl_width_chars=160):
        print(
            "\nPolars per-node profile (µs since start; a gap between nodes is time in a "
            "node Polars does not list, e.g. a group-by):"
        )
        print(profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
