"""Measurements: plain Polars and Ruis in-process (fresh processes), Ruis over HTTP, ledger."""

from __future__ import annotations

import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from bench.data import BenchData
from bench.queries import UNIT, BenchQuery, CrowdQuery, distinct_epsilons
from bench.server import Server, postgres_database, serve

ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """A :mod:`bench.worker` subprocess: one JSON task per line in, one JSON answer out."""

    def __init__(self) -> None:
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.worker"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )

    @property
    def pid(self) -> int:
        """The worker's process id (for sampling its memory from outside)."""
        return self._process.pid

    def call(self, task: dict[str, Any], *, tolerate_error: bool = False) -> dict[str, Any]:
        """The answer to ``task``; an answer ``{"error": ...}`` raises unless tolerated."""
        assert self._process.stdin is not None and self._process.stdout is not None
        try:
            self._process.stdin.write(json.dumps(task) + "\n")
            self._process.stdin.flush()
            line = self._process.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            self._process.wait(timeout=30)
            self._stderr.seek(0)
            tail = self._stderr.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"bench.worker failed on {task['task']}:\n{tail}")
        result: dict[str, Any] = json.loads(line)
        if "error" in result and not tolerate_error:
            raise RuntimeError(f"bench.worker failed on {task['task']}: {result['error']}")
        return result

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._stderr.close()

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def measure_query(
    data: BenchData, query: BenchQuery, *, reps: int, extra_draws: int, server: Server | None
) -> dict[str, Any]:
    """One query three ways, repetitions interleaved so that all see the same load.

    Each of plain Polars exact, plain Polars exact with truncation and Ruis
    in-process runs in its own fresh worker process (its peak RSS is its
    own); then ``reps`` rounds of (exact, truncated exact, Ruis warm, HTTP).
    HTTP requests use distinct costs, so none is served from the cache; the
    server's peak RSS is reset before the query's first request.
    """
    path = str(data.spec.directory / query.file)
    polars_task = {"task": "polars", "path": path, "unit": UNIT, "group_by": query.group_by}
    with WorkerProcess() as exact, WorkerProcess() as truncated, WorkerProcess() as ruis:
        first = ruis.call(
            {
                "task": "ruis_first",
                "path": path,
                "registration": data.registration(query.dataset),
                "query": query.body(),
                "group_by": query.group_by,
            }
        )
        times: dict[str, list[float]] = {"exact": [], "exact_truncated": [], "warm": [], "http": []}
        releases: list[dict[str, float]] = [first["release"]]
        http_releases: list[dict[str, Any]] = []
        epsilons = distinct_epsilons(reps + 1)
        http: dict[str, Any] = {}
        if server is not None:
            http["peak_reset"] = server.reset_peak()
            http["idle_rss_kb"] = server.memory_kb()["VmRSS"]
            http["first"], release = _post(server, query, epsilons[0])
            http_releases.append(release)
        exact_values = truncated_values = None
        for i in range(reps):
            last = i == reps - 1
            answer = exact.call({**polars_task, "k": None, "values": last})
            times["exact"].append(answer["seconds"])
            exact_values = answer["values"] or exact_values
            answer = truncated.call(
                {**polars_task, "k": query.max_partitions_contributed, "values": last}
            )
            times["exact_truncated"].append(answer["seconds"])
            truncated_values = answer["values"] or truncated_values
            answer = ruis.call({"task": "ruis_warm"})
            times["warm"].append(answer["seconds"])
            releases.append(answer["release"])
            if server is not None:
                seconds, release = _post(server, query, epsilons[i + 1])
                times["http"].append(seconds)
                http_releases.append(release)
        if server is not None:
            http["peak_rss_kb"] = server.memory_kb()["VmHWM"] if http["peak_reset"] else None
            http["times"] = times["http"]
            http["releases"] = http_releases
        finish = ruis.call({"task": "ruis_finish", "extra_draws": extra_draws})
        exact_memory = exact.call({"task": "memory"})
        truncated_memory = truncated.call({"task": "memory"})
    result: dict[str, Any] = {
        "exact": {"times": times["exact"], "values": exact_values, **exact_memory},
        "exact_truncated": {
            "times": times["exact_truncated"],
            "values": truncated_values,
            **truncated_memory,
        },
        "ruis": {
            "plan_seconds": first["plan_seconds"],
            "first_seconds": first["seconds"],
            "warm": times["warm"],
            "mechanism": first["mechanism"],
            "noise_scale": first["noise_scale"],
            "error_bound": first["error_bound"],
            "alpha": first["alpha"],
            "releases": releases,
            **finish,
        },
    }
    if server is not None:
        result["http"] = http
    return result


def measure_crowd(data: BenchData, query: CrowdQuery, *, reps: int) -> dict[str, Any]:
    """A crowd-model query in Ruis' privacy layer, in a fresh worker process: the first call
    (compiles the plan), then ``reps`` warm calls, then the worker's peak RSS.

    A query that fails gives ``{"error": ...}`` instead of timings.
    """
    with WorkerProcess() as ruis:
        first = ruis.call(
            {
                "task": "ruis_first",
                "path": str(data.spec.directory / query.file),
                "registration": data.registration(query.dataset),
                "query": query.body(),
                "group_by": "",
            },
            tolerate_error=True,
        )
        if "error" in first:
            return {"error": first["error"]}
        warm = [ruis.call({"task": "ruis_warm"})["seconds"] for _ in range(reps)]
        memory = ruis.call({"task": "memory"})
    return {
        "plan_seconds": first["plan_seconds"],
        "first_seconds": first["seconds"],
        "warm": warm,
        "cells": first["cells"],
        "mechanism": first["mechanism"],
        "noise_scale": first["noise_scale"],
        "error_bound": first["error_bound"],
        **memory,
    }


def _post(server: Server, query: BenchQuery, epsilon: Decimal) -> tuple[float, dict[str, Any]]:
    client = server.client()
    t0 = time.perf_counter()
    response = client.post("/v1/queries", json=query.body(epsilon))
    elapsed = time.perf_counter() - t0
    if response.status_code != 200:
        raise RuntimeError(f"POST /v1/queries → {response.status_code}: {response.text[:500]}")
    body = response.json()
    if body["cached"]:
        raise RuntimeError("a distinct query was served from the cache")
    return elapsed, {
        "values": {str(r[0]): float(r[1]) for r in body["rows"]},
        "mechanism": body["mechanism"],
        "noise_scale": float(body["noise_scale"]),
    }


@dataclass
class _Hammer:
    completed: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    first_error: str = ""


def hammer(
    url: str,
    key: str,
    request: Callable[[int], tuple[str, str, Any]],
    check: Callable[[dict[str, Any]], bool],
    *,
    seconds: float,
    concurrency: int,
) -> dict[str, Any]:
    """``concurrency`` threads, each with its own keep-alive client, for ``seconds``: the
    requests answered 200 that pass ``check`` per second, latency p50/p95, the errors."""
    counter = itertools.count()
    lock = threading.Lock()
    total = _Hammer()
    barrier = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def worker() -> None:
        local = _Hammer()
        with httpx.Client(
            base_url=url, timeout=60, headers={"Authorization": f"Bearer {key}"}
        ) as client:
            client.get("/healthz")  # open the connection before the clock starts
            barrier.wait()
            while time.perf_counter() < stop_at[0]:
                method, path, body = request(next(counter))
                t0 = time.perf_counter()
                try:
                    response = client.request(method, path, json=body)
                    ok = response.status_code == 200 and check(response.json())
                    text = "" if ok else f"{response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as exc:
                    ok, text = False, repr(exc)
                local.latencies.append(time.perf_counter() - t0)
                if ok:
                    local.completed += 1
                else:
                    local.errors += 1
                    local.first_error = local.first_error or text
        with lock:
            total.completed += local.completed
            total.errors += local.errors
            total.latencies.extend(local.latencies)
            total.first_error = total.first_error or local.first_error

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    stop_at[0] = time.perf_counter() + seconds
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    latencies = sorted(total.latencies) or [0.0]
    return {
        "completed": total.completed,
        "errors": total.errors,
        "seconds": elapsed,
        "per_second": total.completed / elapsed if elapsed > 0 else 0.0,
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
        "first_error": total.first_error,
    }


def ledger_throughput(
    tiny: BenchData,
    query: BenchQuery,
    wide: BenchQuery,
    backend: str,
    *,
    seconds: float,
    concurrency: int,
    workers: int = 1,
) -> dict[str, Any]:
    """Cached re-reads and fresh small releases per second on ``backend`` (sqlite, postgresql).

    ``query`` is the small query of the throughput targets; fresh releases of
    ``wide`` (many more cells, hence more noise to draw) are measured too, for
    comparison.
    """
    database: AbstractContextManager[str | None] = (
        postgres_database() if backend == "postgresql" else nullcontext(None)
    )
    with database as url, serve(tiny.spec.directory, url, workers=workers) as server:
        server.setup([tiny.registration(query.dataset)])
        same = query.body(Decimal("0.01"))
        with server.analyst() as client:
            first = client.post("/v1/queries", json=same)
            if first.status_code != 200:
                raise RuntimeError(f"POST /v1/queries → {first.status_code}: {first.text[:300]}")
            release_id = str(first.json()["id"])
        epsilons = (Decimal("0.02") + i * Decimal("1e-9") for i in itertools.count())
        epsilon_lock = threading.Lock()

        def fresh(_: int) -> tuple[str, str, Any]:
            with epsilon_lock:
                epsilon = next(epsilons)
            return "POST", "/v1/queries", query.body(epsilon)

        def fresh_wide(_: int) -> tuple[str, str, Any]:
            with epsilon_lock:
                epsilon = next(epsilons)
            return "POST", "/v1/queries", wide.body(epsilon)

        def is_cached(body: dict[str, Any]) -> bool:
            return bool(body.get("cached"))

        def is_fresh(body: dict[str, Any]) -> bool:
            return not body.get("cached")

        key = server.analyst_key
        return {
            "cached_post": hammer(
                server.url,
                key,
                lambda _: ("POST", "/v1/queries", same),
                is_cached,
                seconds=seconds,
                concurrency=concurrency,
            ),
            "reread_get": hammer(
                server.url,
                key,
                lambda _: ("GET", f"/v1/queries/{release_id}", None),
                is_cached,
                seconds=seconds,
                concurrency=concurrency,
            ),
            "fresh": hammer(
                server.url, key, fresh, is_fresh, seconds=seconds, concurrency=concurrency
            ),
            "fresh_wide": hammer(
                server.url, key, fresh_wide, is_fresh, seconds=seconds, concurrency=concurrency
            ),
            "workers": workers,
        }
