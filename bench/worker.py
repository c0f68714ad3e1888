"""In-process measurements, in a fresh interpreter so that its peak RSS is its own.

``python -m bench.worker`` answers JSON tasks, one per line on stdin, with one
JSON line each on stdout; it keeps its state between tasks, so the benchmark
can interleave repetitions of different measurements (and the server's) under
the same machine load. Peak memory is the high-water mark of this process'
resident set (``VmHWM``: like ``getrusage``'s ``ru_maxrss`` but not inherited
from the parent); ``idle_rss_kb`` is the resident set before any data is read
(interpreter, Polars and, for Ruis, OpenDP loaded).

Tasks:

* ``polars`` — one exact answer in plain Polars, untruncated (``k`` null) or
  with each unit's ``k`` groups with the most rows kept (ties to the smallest
  key): the floor Ruis is compared with.
* ``ruis_first`` — Ruis' privacy layer as the API calls it: ``plan_query`` +
  ``load_frame`` + ``execute`` in this fresh process (compiles the
  measurement); ``ruis_warm`` — one more call (plan cached).
* ``ruis_finish`` — after the timed calls: the peak RSS so far, then one warm
  call's two parts timed apart (``prepare_frame``: filters and truncation; the
  OpenDP measurement on the truncated frame), the exact answer on Ruis' own
  truncated frame (what the noise is added to) and extra noise draws of the
  same measurement on that frame, for the accuracy check.
* ``memory`` — idle and peak RSS.

A task that raises answers ``{"error": "<type>: <message>"}`` and the worker goes on.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import polars as pl


def _rss_kb() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def exact_polars(path: str, *, unit: str, group_by: str, k: int | None) -> pl.DataFrame:
    """Exact distinct units per group, optionally keeping only each unit's top-k groups."""
    scan = pl.scan_parquet(path)
    if k is None:
        return scan.group_by(group_by).agg(pl.col(unit).n_unique().alias("value")).collect()
    per_unit = scan.group_by(unit, group_by).len()
    kept = per_unit.sort([unit, "len", group_by], descending=[False, True, False]).filter(
        pl.int_range(pl.len()).over(unit) < k
    )
    return kept.group_by(group_by).agg(pl.len().alias("value")).collect()


def _released(columns: list[str], rows: list[list[Any]]) -> dict[str, float]:
    """A release's values by cell: the group columns' values joined by ``|`` (a rollup's
    ``level`` included), ``lower``/``upper`` left out."""
    value = columns.index("value")
    keys = [i for i, name in enumerate(columns) if name not in ("value", "lower", "upper")]
    return {"|".join(str(row[i]) for i in keys): float(row[value]) for row in rows}


def _values(frame: pl.DataFrame, group_by: str, column: str = "value") -> dict[str, int]:
    return {str(key): int(value) for key, value in frame.select(group_by, column).iter_rows()}


class Worker:
    """The state kept between tasks."""

    def __init__(self) -> None:
        self.idle_kb = _rss_kb()
        self.ruis: Any = None

    def handle(self, task: dict[str, Any]) -> dict[str, Any]:
        kind = str(task["task"])
        if kind == "polars":
            return self.polars(task)
        if kind == "ruis_first":
            return self.ruis_first(task)
        if kind == "ruis_warm":
            return self.ruis_warm()
        if kind == "ruis_finish":
            return self.ruis_finish(int(task["extra_draws"]))
        if kind == "memory":
            return {"idle_rss_kb": self.idle_kb, "peak_rss_kb": _rss_kb()}
        raise ValueError(f"unknown task {kind!r}")

    def polars(self, task: dict[str, Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        result = exact_polars(
            task["path"], unit=task["unit"], group_by=task["group_by"], k=task["k"]
        )
        return {
            "seconds": time.perf_counter() - t0,
            "values": _values(result, task["group_by"]) if task.get("values") else None,
        }

    def ruis_first(self, task: dict[str, Any]) -> dict[str, Any]:
        from privacy import DatasetMetadata, QueryRequest, execute, load_frame, plan_query

        metadata = DatasetMetadata.model_validate(task["registration"])
        query = QueryRequest.model_validate(task["query"])
        self.idle_kb = _rss_kb()
        self.ruis = (metadata, query, Path(task["path"]), str(task["group_by"]))
        t0 = time.perf_counter()
        plan = plan_query(query, metadata, "pure")
        plan_seconds = time.perf_counter() - t0
        result = execute(plan, load_frame(Path(task["path"]), metadata))
        return {
            "seconds": time.perf_counter() - t0,
            "plan_seconds": plan_seconds,
            "release": _released(plan.columns, result.rows),
            "cells": len(result.rows),
            "columns": list(plan.columns),
            "mechanism": plan.mechanism,
            "noise_scale": plan.noise_scale,
            "error_bound": plan.accuracy.error_bound,
            "alpha": plan.accuracy.alpha,
        }

    def ruis_warm(self) -> dict[str, Any]:
        from privacy import execute, load_frame, plan_query

        metadata, query, path, _ = self.ruis
        t0 = time.perf_counter()
        plan = plan_query(query, metadata, "pure")
        result = execute(plan, load_frame(path, metadata))
        return {
            "seconds": time.perf_counter() - t0,
            "release": _released(plan.columns, result.rows),
        }

    def ruis_finish(self, extra_draws: int) -> dict[str, Any]:
        from privacy import load_frame, plan_query
        from privacy.execute import prepare_frame
        from privacy.measurement import VALUE_COLUMN

        peak = _rss_kb()
        metadata, query, path, group_by = self.ruis
        plan = plan_query(query, metadata, "pure")
        t0 = time.perf_counter()
        truncated = prepare_frame(plan, load_frame(path, metadata)).collect()
        prepare_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        plan.measurement(truncated.lazy()).collect()
        measurement_seconds = time.perf_counter() - t0
        reference = _values(
            truncated.group_by(group_by).agg(
                pl.col(metadata.privacy_unit).n_unique().alias("value")
            ),
            group_by,
        )
        draws: list[dict[str, float]] = []
        for _ in range(extra_draws):
            released = plan.measurement(truncated.lazy()).collect()
            draws.append(
                {
                    str(key): float(value)
                    for key, value in released.select(group_by, VALUE_COLUMN).iter_rows()
                }
            )
        return {
            "idle_rss_kb": self.idle_kb,
            "peak_rss_kb": peak,
            "prepare_seconds": prepare_seconds,
            "measurement_seconds": measurement_seconds,
            "reference": reference,
            "draws": draws,
            "truncated_rows": truncated.height,
        }


def main() -> int:
    # Answers go to the original stdout; anything else written to fd 1 goes to stderr.
    out: TextIO = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    worker = Worker()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = worker.handle(json.loads(line))
        except Exception as error:  # e.g. a query kind this checkout cannot execute yet
            answer = {"error": f"{type(error).__name__}: {error}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
