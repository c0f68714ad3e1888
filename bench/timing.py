"""``python -m bench.timing``: does response time reveal how many rows a filter matches?

Against a real ``ruis serve`` on loopback (what an attacker sees), over the 1M
demo events: for each statistic (count, unit_count, sum, mean, quantile), the
same query with a ``where`` filter that matches ALL rows (``day between`` the
first and the last public day) and one that matches NONE (``municipality eq``
a public key that the registration declares but no row has), ``--runs`` times
each, interleaved (all, none, none, all, ...) so both see the same machine load,
each with a distinct ε so nothing is served from the cache. Prints medians,
p10/p90 and the ratio of the medians, and writes everything (raw timings
included) to ``bench/results/timing-<label>-<time>.json``.

Bounded in time: ``--max-seconds`` (default 900) stops the runs early (the
report says so). ``--quantum-ms`` sets ``RUIS_RELEASE_TIME_QUANTUM_MS`` for the
server (unset: the server's default); ``0`` measures the computation alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from api.release_timing import DEFAULT_QUANTUM_MS
from bench.data import SIZES, ensure
from bench.server import serve

RESULTS = Path(__file__).resolve().parent / "results"
ABSENT_KEY = "GM9999"
"""A public municipality key declared at registration that no generated row has."""
STATISTICS = ("count", "unit_count", "sum", "mean", "quantile")
TARGET_RATIO = 0.10
"""After the fix: |median(all) / median(none) − 1| ≤ 10% for every statistic."""


def _bodies(statistic: str, first_day: str, last_day: str) -> dict[str, dict[str, Any]]:
    base: dict[str, Any] = {"dataset": "mobility_events", "statistic": statistic}
    if statistic in ("sum", "mean", "quantile"):
        base["column"] = "dwell_minutes"
    if statistic == "quantile":
        base["q"] = 0.5
    return {
        "all": {
            **base,
            "where": [{"column": "day", "op": "between", "value": [first_day, last_day]}],
        },
        "none": {**base, "where": [{"column": "municipality", "op": "eq", "value": ABSENT_KEY}]},
    }


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _summary(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "median": None, "p10": None, "p90": None}
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p10": _quantile(values, 0.10),
        "p90": _quantile(values, 0.90),
    }


def _ms(value: float | int | None) -> str:
    return "—" if value is None else f"{1000 * value:8.1f}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the measurement; exit 1 if ``--check`` and a ratio is outside the 10% target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1M", choices=sorted(SIZES))
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--statistics", default=",".join(STATISTICS))
    parser.add_argument("--label", default="run")
    parser.add_argument(
        "--quantum-ms",
        default=None,
        help="RUIS_RELEASE_TIME_QUANTUM_MS for the server (default: its own)",
    )
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 unless every median ratio is within 10%%"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    wanted = [s for s in args.statistics.split(",") if s]
    data = ensure(SIZES[args.size])
    registration = data.registration("mobility_events")
    keys = registration["columns"]["municipality"]["keys"]
    assert ABSENT_KEY not in keys
    registration["columns"]["municipality"]["keys"] = [*keys, ABSENT_KEY]
    days = registration["columns"]["day"]["keys"]
    if args.quantum_ms is not None:
        os.environ["RUIS_RELEASE_TIME_QUANTUM_MS"] = str(args.quantum_ms)
    quantum = os.environ.get("RUIS_RELEASE_TIME_QUANTUM_MS") or f"{DEFAULT_QUANTUM_MS} (default)"
    started = time.monotonic()
    timings: dict[str, dict[str, list[float]]] = {s: {"all": [], "none": []} for s in wanted}
    truncated = False
    epsilon = Decimal(1)
    with serve(data.files.events_path.parent) as server:
        server.setup([registration])
        client = server.client()
        for statistic in wanted:
            bodies = _bodies(statistic, days[0], days[-1])
            for kind in ("all", "none"):  # warm-up: first compile, first read (not timed)
                epsilon += Decimal("0.0001")
                body = {**bodies[kind], "privacy": {"epsilon": format(epsilon, "f")}}
                client.post("/v1/queries", json=body).raise_for_status()
            for run in range(args.runs):
                order = ("all", "none") if run % 2 == 0 else ("none", "all")
                for kind in order:
                    epsilon += Decimal("0.0001")
                    body = {**bodies[kind], "privacy": {"epsilon": format(epsilon, "f")}}
                    t0 = time.perf_counter()
                    response = client.post("/v1/queries", json=body)
                    elapsed = time.perf_counter() - t0
                    if response.status_code != 200 or response.json().get("cached"):
                        raise RuntimeError(
                            f"{statistic}/{kind}: {response.status_code} {response.text[:300]}"
                        )
                    timings[statistic][kind].append(elapsed)
                if time.monotonic() - started > args.max_seconds:
                    truncated = True
                    break
            if truncated:
                break
    results: dict[str, Any] = {}
    failed = False
    print(
        f"\nTiming: filter matching ALL {data.n_events:,} rows vs NONE, over HTTP "
        f"({args.label}; quantum {quantum} ms)\n"
    )
    print(
        f"{'statistic':<11}{'runs':>5} │ {'all: p10':>8} {'median':>8} {'p90':>8} │ "
        f"{'none: p10':>9} {'median':>8} {'p90':>8} │ {'all/none':>8}"
    )
    for statistic in wanted:
        matched, empty = (_summary(timings[statistic][k]) for k in ("all", "none"))
        ratio = (
            matched["median"] / empty["median"] if matched["median"] and empty["median"] else None
        )
        within = ratio is not None and abs(ratio - 1) <= TARGET_RATIO
        failed = failed or not within
        results[statistic] = {
            "all": matched,
            "none": empty,
            "ratio": ratio,
            "within_target": within,
            "raw": timings[statistic],
        }
        print(
            f"{statistic:<11}{matched['n']:>5} │ {_ms(matched['p10'])} {_ms(matched['median'])}"
            f" {_ms(matched['p90'])} │ {_ms(empty['p10']):>9} {_ms(empty['median'])} "
            f"{_ms(empty['p90'])} │ {ratio if ratio is None else f'{ratio:8.2f}'}"
        )
    print(
        "\n(milliseconds, client-side, one keep-alive connection; "
        f"target |all/none − 1| ≤ {TARGET_RATIO:.0%})"
        + ("\nSTOPPED EARLY at --max-seconds" if truncated else "")
    )
    report = {
        "label": args.label,
        "time": datetime.now(UTC).isoformat(),
        "size": args.size,
        "rows": data.n_events,
        "runs": args.runs,
        "stopped_early": truncated,
        "quantum_ms": quantum,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "load_average": os.getloadavg(),
        "seconds": time.monotonic() - started,
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS / f"timing-{args.label}-{stamp}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
