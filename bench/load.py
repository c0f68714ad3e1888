"""Load test: many analysts sending 1M-cell queries and previews while one sends small ones.

``python -m bench.load [--analysts 40] [--duration 60] [--cells 1000000] ...``
starts a real ``ruis serve`` on a free loopback port (fresh SQLite ledger, or
PostgreSQL with ``--database postgresql``) over a generated data file (see
:mod:`bench.load_data`), creates one consumer per analyst through the HTTP API,
and then, for ``--duration`` seconds:

- each big analyst loops over ``ka × kb``-cell queries and previews, each with a
  distinct cost (so the cache never answers); a 429 or 503 with ``Retry-After``
  makes it wait that long (bounded by the end of the run) and carry on;
- one small analyst sends a few-cell query every ``--small-interval`` seconds,
  also with distinct costs, and its latency and status are recorded.

Every loop is bounded by count and time; after ``--grace`` seconds past the
end, a server still busy is killed, and it is always stopped. A small query
still unanswered then counts with the time it had waited (a lower bound).
The server's memory is the RSS of its process tree, sampled every 0.25 s; the
run is aborted (server killed) if it reaches ``--abort-rss-mb``.

It prints a table, writes ``bench/results/load-<time>.json`` and exits 1 when a
target is missed (small-query p99 < ``--p99-target``, every small query
answered 200, peak RSS < ``--rss-ceiling-mb``), unless ``--no-check``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from bench import load_data
from bench.procmem import RssSampler, kill_tree
from bench.server import Server, ok_json, postgres_database, serve

RESULTS = Path(__file__).resolve().parent / "results"
BUDGET_EPSILON = 1e6
MB = 1024 * 1024
MAX_RETRY_AFTER = 60.0


@dataclass(frozen=True)
class LoadConfig:
    """The parameters of one load run (the CLI flags)."""

    analysts: int = 40
    duration: float = 60.0
    cells: int = 1_000_000
    small_cells: int = 4
    small_interval: float = 0.5
    rows: int = 2000
    database: str = "sqlite"
    server_workers: int = 1
    server_env: dict[str, str] = field(default_factory=dict)
    baseline: int = 5
    """Small queries sent one after the other before the load starts (the idle latency),
    after one warm-up query."""
    grace: float = 5.0
    max_requests: int = 10_000
    """Per analyst (big ones and the small one), on top of the time bound."""
    error_pause: float = 0.1
    """Seconds a big analyst waits after a refusal or error without ``Retry-After``."""
    p99_target: float = 2.0
    rss_ceiling_mb: int = 2048
    abort_rss_mb: int | None = None
    """Kill the server when its tree RSS reaches this; default min(2 × ceiling, ½ MemAvailable)."""


class Costs:
    """Distinct costs (``base``, ``base + step``, …), safe to draw from several threads."""

    def __init__(self, base: str, step: str = "0.000001") -> None:
        self._base = Decimal(base)
        self._step = Decimal(step)
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def next(self) -> Decimal:
        with self._lock:
            n = next(self._counter)
        return self._base + n * self._step


@dataclass
class Outcomes:
    """Statuses and latencies of one kind of request, shared by threads."""

    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    answered: list[float] = field(default_factory=list)
    """Latencies of the requests that got an HTTP response."""
    backoffs: int = 0
    backoff_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, status: str, latency: float) -> None:
        with self.lock:
            self.statuses[status] += 1
            self.latencies.append(latency)
            if status.isdigit():
                self.answered.append(latency)

    def backoff(self, seconds: float) -> None:
        with self.lock:
            self.backoffs += 1
            self.backoff_seconds += seconds

    def summary(self, *, answered_only: bool = False) -> dict[str, Any]:
        """Counts by status, latency percentiles (of all requests, unanswered ones with the
        time they waited, or only of those answered) and the ``Retry-After`` waits."""
        with self.lock:
            values = self.answered if answered_only else self.latencies
            return {
                "count": len(self.latencies),
                "statuses": dict(sorted(self.statuses.items())),
                "latency_s": latency_summary(values),
                "latency_of": "answered" if answered_only else "all",
                "retry_after_backoffs": self.backoffs,
                "retry_after_seconds": round(self.backoff_seconds, 3),
            }


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in [0, 100]); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(values: list[float]) -> dict[str, float | None]:
    """p50, p90, p99 and max of ``values`` (seconds, rounded to the millisecond)."""

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 4)

    return {
        "p50": r(percentile(values, 50)),
        "p90": r(percentile(values, 90)),
        "p99": r(percentile(values, 99)),
        "max": r(max(values) if values else None),
    }


def retry_after(response: httpx.Response) -> float | None:
    """The ``Retry-After`` of a 429/503 in seconds (an HTTP date counts as 1 s), else None."""
    if response.status_code not in (429, 503):
        return None
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return 1.0
    if not math.isfinite(seconds):
        return 1.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _post(
    client: httpx.Client, path: str, body: dict[str, Any], timeout: float
) -> tuple[str, httpx.Response | None]:
    try:
        response = client.post(path, json=body, timeout=timeout)
    except httpx.TimeoutException:  # the timeout is the end of the run (plus the grace)
        return "unfinished", None
    except httpx.HTTPError as exc:
        return f"error:{type(exc).__name__}", None
    return str(response.status_code), response


class Run:
    """The shared clock and stop signal of one load phase."""

    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.stop = threading.Event()
        self.started = time.monotonic()
        self.ends = self.started + config.duration
        self.hard_stop = self.ends + config.grace

    def open(self) -> bool:
        return not self.stop.is_set() and time.monotonic() < self.ends

    def timeout(self) -> float:
        return max(1.0, self.hard_stop - time.monotonic())


def big_analyst(
    index: int, client: httpx.Client, run: Run, costs: Costs, queries: Outcomes, previews: Outcomes
) -> None:
    """Alternate queries and previews (odd analysts start with a preview) until the run ends."""
    for n in range(run.config.max_requests):
        if not run.open():
            return
        preview = (n + index) % 2 == 1
        path, outcomes = ("/v1/queries/preview", previews) if preview else ("/v1/queries", queries)
        t0 = time.monotonic()
        status, response = _post(client, path, load_data.big_query(costs.next()), run.timeout())
        outcomes.record(status, time.monotonic() - t0)
        wait = retry_after(response) if response is not None else None
        if wait is not None:
            wait = min(wait, max(0.0, run.ends - time.monotonic()))
            outcomes.backoff(wait)
            run.stop.wait(wait)
        elif status != "200":
            run.stop.wait(run.config.error_pause)


class SmallAnalyst:
    """Sends a small query every ``interval`` seconds; knows the one in flight, if any."""

    def __init__(self, client: httpx.Client, run: Run, costs: Costs) -> None:
        self.client = client
        self.run = run
        self.costs = costs
        self.outcomes = Outcomes()
        self.in_flight_since: float | None = None
        self._lock = threading.Lock()

    def loop(self) -> None:
        next_at = time.monotonic()
        for _ in range(self.run.config.max_requests):
            delay = next_at - time.monotonic()
            if delay > 0 and self.run.stop.wait(delay):
                return
            if not self.run.open():
                return
            with self._lock:
                t0 = self.in_flight_since = time.monotonic()
            status, _ = _post(
                self.client,
                "/v1/queries",
                load_data.small_query(self.costs.next()),
                self.run.timeout(),
            )
            with self._lock:
                if self.in_flight_since is not None:  # else censor() counted it already
                    self.outcomes.record(status, time.monotonic() - t0)
                    self.in_flight_since = None
            next_at = max(next_at + self.run.config.small_interval, time.monotonic())

    def censor(self) -> None:
        """Count a query still unanswered as ``unfinished`` with the time it waited so far."""
        with self._lock:
            if self.in_flight_since is not None:
                self.outcomes.record("unfinished", time.monotonic() - self.in_flight_since)
                self.in_flight_since = None


def create_analysts(
    server: Server, data: load_data.LoadData, analysts: int
) -> tuple[list[str], str]:
    """Register both datasets; create the big analysts and the small one with big budgets."""
    with server.admin() as admin:
        for body in data.registrations():
            ok_json(admin.post("/v1/datasets", json=body))

        def consumer(name: str, dataset: str) -> str:
            created = ok_json(admin.post("/v1/consumers", json={"name": name, "role": "analyst"}))
            ok_json(
                admin.put(
                    f"/v1/budgets/{name}/{dataset}",
                    json={"model": "pure", "epsilon": BUDGET_EPSILON},
                )
            )
            return str(created["api_key"])

        big = [consumer(f"load-big-{i:03d}", load_data.BIG) for i in range(analysts)]
        return big, consumer("load-small", load_data.SMALL)


def _client(server: Server, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
        limits=httpx.Limits(max_connections=2),
    )


def _mem_available() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def abort_bytes(config: LoadConfig) -> int:
    """The RSS at which the server is killed: the configured one, or the safe default."""
    if config.abort_rss_mb is not None:
        return config.abort_rss_mb * MB
    limit = 2 * config.rss_ceiling_mb * MB
    available = _mem_available()
    return min(limit, available // 2) if available else limit


@contextlib.contextmanager
def _database(kind: str) -> Iterator[str | None]:
    if kind == "sqlite":
        yield None
    elif kind == "postgresql":
        with postgres_database() as url:
            yield url
    else:
        raise ValueError(f"unknown database {kind!r} (sqlite or postgresql)")


def _load_average() -> list[float]:
    with contextlib.suppress(OSError):
        return [round(v, 2) for v in os.getloadavg()]
    return []


def run_load(config: LoadConfig) -> dict[str, Any]:
    """Run one bounded load test against a fresh loopback server and return the report.

    The server is stopped (killed if still busy after the grace period) before
    this returns, also on errors; no request outlives it.
    """
    wall0 = time.monotonic()
    load_before = _load_average()
    with (
        tempfile.TemporaryDirectory(prefix="ruis-load-data-") as tmp,
        _database(config.database) as db_url,
    ):
        data = load_data.generate(
            Path(tmp), cells=config.cells, small_cells=config.small_cells, rows=config.rows
        )
        with serve(
            Path(tmp), db_url, workers=config.server_workers, env=config.server_env
        ) as server:
            report = _measure(server, data, config)
    report["load_average"] = {"before": load_before, "after": _load_average()}
    report["wall_seconds"] = round(time.monotonic() - wall0, 2)
    return report


def _measure(server: Server, data: load_data.LoadData, config: LoadConfig) -> dict[str, Any]:
    big_keys, small_key = create_analysts(server, data, config.analysts)
    small_costs = Costs("0.5")
    clients = [_client(server, key) for key in big_keys]
    small_client = _client(server, small_key)
    try:
        baseline = Outcomes()
        for n in range(config.baseline + 1):  # the first one warms up and is not counted
            t0 = time.monotonic()
            status, _ = _post(
                small_client, "/v1/queries", load_data.small_query(small_costs.next()), 60
            )
            if n:
                baseline.record(status, time.monotonic() - t0)
        sampler = RssSampler(
            server.pid, abort_bytes=abort_bytes(config), on_abort=lambda: kill_tree(server.pid)
        )
        idle_rss = sampler.sample()
        run = Run(config)
        sampler.start()
        queries, previews = Outcomes(), Outcomes()
        big_costs = Costs("1")
        small = SmallAnalyst(small_client, run, small_costs)
        threads = [
            threading.Thread(
                target=big_analyst,
                name=f"big-{i}",
                daemon=True,
                args=(i, client, run, big_costs, queries, previews),
            )
            for i, client in enumerate(clients)
        ]
        threads.append(threading.Thread(target=small.loop, name="small", daemon=True))
        for thread in threads:
            thread.start()
        while time.monotonic() < run.ends and not sampler.aborted:
            time.sleep(0.1)
        run.stop.set()
        for thread in threads:  # requests time out at hard_stop: give them a second more
            thread.join(timeout=max(0.0, run.hard_stop + 1 - time.monotonic()))
        small.censor()
        end_rss = sampler.sample()
        sampler.stop()
        exit_code = server.process.poll()
        busy = sum(thread.is_alive() for thread in threads) + sum(
            part.statuses["unfinished"] for part in (queries, previews, small.outcomes)
        )
        if busy:  # the server is still computing abandoned requests
            kill_tree(server.pid)
        for thread in threads:
            thread.join(timeout=10)
        run_seconds = time.monotonic() - run.started
    finally:
        for client in [*clients, small_client]:
            client.close()
    return _report(
        config,
        data,
        baseline=baseline,
        small=small.outcomes,
        queries=queries,
        previews=previews,
        sampler=sampler,
        idle_rss=idle_rss,
        end_rss=end_rss,
        busy=busy,
        exit_code=exit_code,
        run_seconds=run_seconds,
        log_tail=server.log_tail(40) if exit_code is not None else "",
    )


def _report(
    config: LoadConfig,
    data: load_data.LoadData,
    *,
    baseline: Outcomes,
    small: Outcomes,
    queries: Outcomes,
    previews: Outcomes,
    sampler: RssSampler,
    idle_rss: int,
    end_rss: int,
    busy: int,
    exit_code: int | None,
    run_seconds: float,
    log_tail: str,
) -> dict[str, Any]:
    small_summary = small.summary()
    p99 = small_summary["latency_s"]["p99"]
    peak = max(sampler.peak_rss, sampler.peak_hwm)
    ok_small = small_summary["statuses"].get("200", 0)
    checks = {
        "small_p99_under_target": p99 is not None and p99 < config.p99_target,
        "small_all_200": small_summary["count"] > 0 and ok_small == small_summary["count"],
        "rss_under_ceiling": peak < config.rss_ceiling_mb * MB and not sampler.aborted,
        "server_survived": exit_code is None or sampler.aborted,  # (killed by the abort)
    }
    return {
        "kind": "ruis-load",
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": asdict(config),
        "data": {"rows": data.rows, "big_cells": data.big_cells, "small_cells": data.small_cells},
        "targets": {
            "small_p99_s": config.p99_target,
            "rss_ceiling_mb": config.rss_ceiling_mb,
            "abort_rss_mb": round(abort_bytes(config) / MB),
        },
        "small_baseline": baseline.summary(),
        "small": small_summary,
        "big_queries": queries.summary(answered_only=True),
        "big_previews": previews.summary(answered_only=True),
        "memory": {
            "idle_rss_mb": round(idle_rss / MB, 1),
            "peak_rss_mb": round(sampler.peak_rss / MB, 1),
            "peak_hwm_mb": round(sampler.peak_hwm / MB, 1),
            "peak_mb": round(peak / MB, 1),
            "end_rss_mb": round(end_rss / MB, 1),
            "aborted": sampler.aborted,
            "samples": [[t, round(rss / MB, 1)] for t, rss in sampler.samples[::4]],
        },
        "run_seconds": round(run_seconds, 2),
        "requests_unfinished": busy,
        "server_exit_code": exit_code,
        "server_log_tail": log_tail,
        "checks": checks,
        "passed": all(checks.values()),
    }


def _fmt(value: float | None, unit: str = " s") -> str:
    return "—" if value is None else f"{value:.3f}{unit}"


def format_table(report: dict[str, Any]) -> str:
    """The report as a plain-text table."""
    cfg, small, mem = report["config"], report["small"], report["memory"]
    lat, base = small["latency_s"], report["small_baseline"]["latency_s"]
    rows: list[tuple[str, str]] = [
        (
            "setup",
            f"{cfg['analysts']} big analysts × {report['data']['big_cells']:,} cells, "
            f"1 small analyst × {report['data']['small_cells']} cells every "
            f"{cfg['small_interval']} s, {cfg['database']}, {cfg['duration']:g} s",
        ),
        ("small queries", f"{small['count']}  statuses {small['statuses']}"),
        (
            "small p50 / p99 / max",
            f"{_fmt(lat['p50'])} / {_fmt(lat['p99'])} / "
            f"{_fmt(lat['max'])}   (target p99 < "
            f"{report['targets']['small_p99_s']} s)",
        ),
        ("small p50 idle (before load)", _fmt(base["p50"])),
    ]
    for label, key in (("big queries", "big_queries"), ("big previews", "big_previews")):
        part = report[key]
        rows.append(
            (
                label,
                f"{part['count']}  statuses {part['statuses']}  "
                f"Retry-After waits {part['retry_after_backoffs']} "
                f"({part['retry_after_seconds']:.1f} s)  "
                f"p50 answered {_fmt(part['latency_s']['p50'])}",
            )
        )
    rows += [
        (
            "server RSS idle / peak / end",
            f"{mem['idle_rss_mb']:.0f} / {mem['peak_mb']:.0f} / {mem['end_rss_mb']:.0f} MB   "
            f"(ceiling {report['targets']['rss_ceiling_mb']} MB"
            + (", ABORTED at the safety limit" if mem["aborted"] else "")
            + ")",
        ),
        (
            "run / wall",
            f"{report['run_seconds']:.1f} s / {report['wall_seconds']:.1f} s, "
            f"{report['requests_unfinished']} requests unfinished at the end",
        ),
        (
            "load average before / after",
            f"{report['load_average']['before']} / {report['load_average']['after']}",
        ),
        (
            "checks",
            ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in report["checks"].items()),
        ),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    defaults = LoadConfig()
    parser = argparse.ArgumentParser(
        prog="python -m bench.load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--analysts", type=int, default=defaults.analysts, help="big analysts (threads)")
    add("--duration", type=float, default=defaults.duration, help="seconds of load")
    add("--cells", type=int, default=defaults.cells, help="cells of each big query")
    add("--small-cells", type=int, default=defaults.small_cells)
    add(
        "--small-interval",
        type=float,
        default=defaults.small_interval,
        help="seconds between two small queries",
    )
    add("--rows", type=int, default=defaults.rows, help="rows of the data file")
    add("--database", choices=("sqlite", "postgresql"), default=defaults.database)
    add("--server-workers", type=int, default=defaults.server_workers)
    add(
        "--server-env",
        type=_env_pair,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for ruis serve (e.g. a limit); repeatable",
    )
    add(
        "--baseline",
        type=int,
        default=defaults.baseline,
        help="small queries before the load starts",
    )
    add(
        "--grace",
        type=float,
        default=defaults.grace,
        help="seconds past the end for requests in flight before the server is killed",
    )
    add("--max-requests", type=int, default=defaults.max_requests, help="per analyst")
    add("--error-pause", type=float, default=defaults.error_pause)
    add("--p99-target", type=float, default=defaults.p99_target, help="seconds")
    add("--rss-ceiling-mb", type=int, default=defaults.rss_ceiling_mb)
    add(
        "--abort-rss-mb",
        type=int,
        default=None,
        help="kill the server at this RSS (default min(2 × ceiling, half of MemAvailable))",
    )
    add("--out", type=Path, default=None, help="JSON file (default bench/results/load-*.json)")
    add("--no-check", action="store_true", help="report only; exit 0 even if a target is missed")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.analysts < 0 or args.duration <= 0 or args.cells < 1 or args.small_interval <= 0:
        print("--analysts ≥ 0, --duration > 0, --cells ≥ 1, --small-interval > 0", file=sys.stderr)
        return 2
    config = LoadConfig(
        analysts=args.analysts,
        duration=args.duration,
        cells=args.cells,
        small_cells=args.small_cells,
        small_interval=args.small_interval,
        rows=args.rows,
        database=args.database,
        server_workers=args.server_workers,
        server_env=dict(args.server_env),
        baseline=args.baseline,
        grace=args.grace,
        max_requests=args.max_requests,
        error_pause=args.error_pause,
        p99_target=args.p99_target,
        rss_ceiling_mb=args.rss_ceiling_mb,
        abort_rss_mb=args.abort_rss_mb,
    )
    report = run_load(config)
    print(format_table(report))
    out = args.out or RESULTS / f"load-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {out}")
    if report["server_log_tail"]:
        print(f"\nthe server exited ({report['server_exit_code']}):\n{report['server_log_tail']}")
    return 0 if args.no_check or report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
