"""Scale: benchmark query Q1 in-process (Polars engine) at 10M and 100M events.

``python -m bench.scale --sizes 10M,100M`` generates (or reuses) the data sets of
:data:`bench.data.SIZES` under ``bench/data/``, then per size runs Q1 (visitors per
municipality: ``unit_count`` of ``mobility_events`` by ``municipality``, k = 3, ε = 1)
through Ruis' privacy layer as the API calls it (``plan_query`` + ``load_frame`` +
``execute``) in a fresh :mod:`bench.worker` process: the first call, then ``--reps``
warm calls, then that worker's peak RSS (``VmHWM``). It prints per size the events,
the Parquet file's size, the table's in-memory size (``DataFrame.estimated_size()`` of
the whole events table, summed column by column: :func:`bench.data.estimated_size`),
first and warm (median, min) times and the peak RSS, and the ratios: time at the
largest size over the smallest, and peak RSS over the in-memory size. Results go to
``bench/results/scale-<time>.json`` (``--out FILE``).

The worker's resident set is sampled from outside (:class:`bench.procmem.RssSampler`);
when it reaches ``--abort-rss-gb`` the worker is killed and the size is reported as
aborted, so a run cannot exhaust a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.data import SIZES, BenchData, ensure
from bench.measure import WorkerProcess
from bench.procmem import RssSampler, kill_tree
from bench.queries import Q1

RESULTS = Path(__file__).resolve().parent / "results"
MB = 1024 * 1024


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def measure_q1(data: BenchData, *, reps: int, abort_bytes: int) -> dict[str, Any]:
    """Q1 on ``data`` in a fresh worker: first call, ``reps`` warm calls, peak RSS."""
    with WorkerProcess() as worker:
        sampler = RssSampler(
            worker.pid,
            interval=0.1,
            abort_bytes=abort_bytes,
            on_abort=lambda: kill_tree(worker.pid),
        ).start()
        try:
            first = worker.call(
                {
                    "task": "ruis_first",
                    "path": str(data.spec.directory / Q1.file),
                    "registration": data.registration(Q1.dataset),
                    "query": Q1.body(),
                    "group_by": Q1.group_by,
                }
            )
            warm = [worker.call({"task": "ruis_warm"})["seconds"] for _ in range(reps)]
            memory = worker.call({"task": "memory"})
        except RuntimeError as error:
            if sampler.aborted:
                return {
                    "aborted": True,
                    "error": str(error),
                    "sampled_peak_bytes": sampler.peak_rss,
                }
            raise
        finally:
            sampler.stop()
    return {
        "plan_seconds": first["plan_seconds"],
        "first_seconds": first["seconds"],
        "warm": warm,
        "cells": first["cells"],
        "idle_rss_bytes": memory["idle_rss_kb"] * 1024,
        "peak_rss_bytes": memory["peak_rss_kb"] * 1024,
        "sampled_peak_bytes": sampler.peak_rss,
    }


def measure_size(label: str, *, reps: int, abort_bytes: int) -> dict[str, Any]:
    """The data set ``label`` (generated if needed) and Q1's timings and memory on it."""
    _log(f"data {label}")
    data = ensure(SIZES[label])
    if data.generated_seconds is not None:
        _log(f"generated {data.n_events:,} events in {data.generated_seconds:.1f} s")
    _log(f"Q1 at {label}: first call and {reps} warm calls")
    result: dict[str, Any] = {
        "events": data.n_events,
        "parquet_bytes": data.files.events_path.stat().st_size,
        "in_memory_bytes": data.events_bytes,
        "generated_seconds": data.generated_seconds,
        "q1": measure_q1(data, reps=reps, abort_bytes=abort_bytes),
    }
    q1 = result["q1"]
    if not q1.get("aborted"):
        q1["warm_median"] = statistics.median(q1["warm"])
        q1["warm_min"] = min(q1["warm"])
        q1["peak_over_in_memory"] = q1["peak_rss_bytes"] / data.events_bytes
        q1["peak_minus_idle_over_in_memory"] = (
            q1["peak_rss_bytes"] - q1["idle_rss_bytes"]
        ) / data.events_bytes
    return result


def _ratios(sizes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Largest size over smallest: events, first-call and warm time."""
    done = [(label, s) for label, s in sizes.items() if not s["q1"].get("aborted")]
    if len(done) < 2:
        return {}
    (small_label, small), (big_label, big) = (
        min(done, key=lambda x: x[1]["events"]),
        max(done, key=lambda x: x[1]["events"]),
    )
    events = big["events"] / small["events"]
    first = big["q1"]["first_seconds"] / small["q1"]["first_seconds"]
    warm = big["q1"]["warm_median"] / small["q1"]["warm_median"]
    return {
        "of": f"{big_label}/{small_label}",
        "events": events,
        "first": first,
        "warm": warm,
        "warm_per_event": warm / events,
    }


def report(results: dict[str, Any]) -> str:
    """The figures as a Markdown table, then the ratios."""
    lines = [
        "| size | events | Parquet | in memory | first | warm median (min) | peak RSS "
        "| peak / in memory | (peak − idle) / in memory |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, size in results["sizes"].items():
        q1 = size["q1"]
        head = (
            f"| {label} | {size['events']:,} | {size['parquet_bytes'] / MB:,.0f} MB "
            f"| {size['in_memory_bytes'] / MB:,.0f} MB"
        )
        if q1.get("aborted"):
            lines.append(
                f"{head} | aborted at {q1['sampled_peak_bytes'] / MB:,.0f} MB RSS | | | | |"
            )
            continue
        lines.append(
            f"{head} | {q1['first_seconds']:.2f} s | {q1['warm_median']:.2f} s "
            f"({q1['warm_min']:.2f}) | {q1['peak_rss_bytes'] / MB:,.0f} MB "
            f"| {q1['peak_over_in_memory']:.2f}× | {q1['peak_minus_idle_over_in_memory']:.2f}× |"
        )
    ratios = results["ratios"]
    if ratios:
        lines.append("")
        lines.append(
            f"{ratios['of']}: events ×{ratios['events']:.2f}, first call ×{ratios['first']:.2f}, "
            f"warm ×{ratios['warm']:.2f} (warm per event ×{ratios['warm_per_event']:.2f})"
        )
    load = results["environment"]
    lines.append(
        f"load average before {load['load_before'][0]:.1f}, after {load['load_after'][0]:.1f}"
    )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10M,100M", help=f"among {', '.join(SIZES)}")
    parser.add_argument("--reps", type=int, default=3, help="warm calls after the first")
    parser.add_argument(
        "--abort-rss-gb",
        type=float,
        default=18.0,
        help="kill the worker when its resident set reaches this (GB)",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON result file")
    args = parser.parse_args(argv)
    args.size_labels = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in args.size_labels if s not in SIZES]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; choose among {list(SIZES)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    abort_bytes = int(args.abort_rss_gb * 1024 * MB)
    results: dict[str, Any] = {
        "environment": {"cpus": os.cpu_count(), "load_before": list(os.getloadavg())},
        "options": {"sizes": args.size_labels, "reps": args.reps},
        "sizes": {},
    }
    for label in args.size_labels:
        results["sizes"][label] = measure_size(label, reps=args.reps, abort_bytes=abort_bytes)
    results["environment"]["load_after"] = list(os.getloadavg())
    results["ratios"] = _ratios(results["sizes"])
    print(report(results))
    out = args.out or RESULTS / f"scale-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
