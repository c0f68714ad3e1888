"""``python -m bench.run``: the Ruis benchmark. Prints tables and writes ``bench/results/*.json``.

For Q1 (visitors per municipality) and Q2 (residents per neighbourhood) at 1M
and 10M events, three ways: exact in plain Polars (with and without the
per-device truncation Ruis applies), Ruis' privacy layer in-process, and end
to end over HTTP against ``ruis serve``; the crowd-model queries Q3-Q5 in-process;
then the ledger's throughput on SQLite and PostgreSQL, and what the ledger's receipts
and Merkle tree cost (:mod:`bench.receipts`). See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import measure, receipts
from bench.data import SIZES, TINY, BenchData, ensure
from bench.queries import CROWD_QUERIES, Q1, Q2, QUERIES, SMALL, BenchQuery, expected_abs_noise
from bench.server import Server, postgres_available, serve
from bench.tables import table as _table

RESULTS = Path(__file__).resolve().parent / "results"
MB = 1024 * 1024

# Targets (see README.md).
HTTP_VS_WARM = 1.1
HTTP_VS_FLOOR = 2.0
NOISE_TOLERANCE = 0.05
CACHED_PER_SECOND = 1000.0
FRESH_PER_SECOND = 200.0
MEMORY_VS_DATA = 2.0


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _paired(numerators: Sequence[float], denominators: Sequence[float]) -> float | None:
    """Median of the ratios of runs made in the same round."""
    ratios = [n / d for n, d in zip(numerators, denominators, strict=False) if d > 0]
    return _median(ratios)


def _environment() -> dict[str, Any]:
    import opendp
    import polars

    try:
        from importlib.metadata import version

        opendp_version = version("opendp")
    except Exception:
        opendp_version = getattr(opendp, "__version__", "?")
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "polars": polars.__version__,
        "opendp": opendp_version,
        "cpus": os.cpu_count(),
        "load_before": list(os.getloadavg()),
    }


# ---------------------------------------------------------------- measuring


def _measure_size(data: BenchData, args: argparse.Namespace) -> dict[str, Any]:
    queries: dict[str, Any] = {}
    server: AbstractContextManager[Server | None] = (
        nullcontext(None) if args.skip_http else serve(data.spec.directory)
    )
    with server as running:
        if running is not None:
            running.setup([data.registration(q.dataset) for q in QUERIES])
        # Q2 first: the server's memory after the big Q1 would blur Q2's peak.
        for query in (Q2, Q1):
            _log(
                f"{data.spec.label} {query.name}: exact Polars, Ruis in-process"
                + ("" if running is None else ", Ruis over HTTP")
                + " (interleaved)"
            )
            queries[query.name] = measure.measure_query(
                data, query, reps=args.reps, extra_draws=args.draws, server=running
            )
    crowd: dict[str, Any] = {}
    for crowd_query in () if args.skip_crowd else CROWD_QUERIES:
        _log(f"{data.spec.label} {crowd_query.name}: Ruis in-process")
        crowd[crowd_query.name] = measure.measure_crowd(data, crowd_query, reps=args.reps)
        if "error" in crowd[crowd_query.name]:
            _log(f"{crowd_query.name} did not run: {crowd[crowd_query.name]['error']}")
    return {
        "params": {
            "devices": data.spec.devices,
            "days": data.spec.days,
            "events_per_day": data.spec.events_per_day,
            "seed": data.spec.seed,
        },
        "directory": str(data.spec.directory),
        "rows": {"mobility_events": data.n_events, "residents": data.n_residents},
        "estimated_bytes": {
            "mobility_events": data.events_bytes,
            "residents": data.residents_bytes,
        },
        "generated_seconds": data.generated_seconds,
        "keys": {
            q.name: [str(k) for k in data.registration(q.dataset)["columns"][q.group_by]["keys"]]
            for q in QUERIES
        },
        "queries": queries,
        "crowd": crowd,
    }


def _measure_ledger(args: argparse.Namespace) -> dict[str, Any]:
    tiny = ensure(TINY)
    results: dict[str, Any] = {
        "rows": tiny.n_events,
        "concurrency": args.concurrency,
        "server_workers": args.server_workers,
        "seconds_per_test": args.ledger_seconds,
        "backends": {},
    }
    for backend in ("sqlite", "postgresql"):
        if backend == "postgresql" and not postgres_available():
            results["backends"][backend] = {"skipped": "PostgreSQL not reachable on 127.0.0.1:5432"}
            continue
        _log(f"ledger throughput on {backend}")
        results["backends"][backend] = measure.ledger_throughput(
            tiny,
            SMALL,
            Q1,
            backend,
            seconds=args.ledger_seconds,
            concurrency=args.concurrency,
            workers=args.server_workers,
        )
    return results


# ---------------------------------------------------------------- analysis


def _accuracy(query: BenchQuery, keys: list[str], result: dict[str, Any]) -> dict[str, Any]:
    """Measured noise error vs the exact truncated answer, next to the theoretical E|noise|."""
    ruis = result["ruis"]
    reference = {k: float(ruis["reference"].get(k, 0)) for k in keys}
    untruncated = {k: float(result["exact"]["values"].get(k, 0)) for k in keys}
    plain = {k: float(result["exact_truncated"]["values"].get(k, 0)) for k in keys}
    samples: list[tuple[str, dict[str, float], str, float]] = []
    for values in ruis["releases"]:
        samples.append(("in_process", values, ruis["mechanism"], ruis["noise_scale"]))
    for values in ruis["draws"]:
        samples.append(("extra_draw", values, ruis["mechanism"], ruis["noise_scale"]))
    for release in result.get("http", {}).get("releases", []):
        samples.append(("http", release["values"], release["mechanism"], release["noise_scale"]))
    errors: list[float] = []
    theory: list[float] = []
    by_source: dict[str, list[float]] = {}
    for source, values, mechanism, scale in samples:
        expected = expected_abs_noise(mechanism, scale)
        for key in keys:
            error = values[key] - reference[key]
            errors.append(error)
            theory.append(expected)
            by_source.setdefault(source, []).append(abs(error))
    absolute = [abs(e) for e in errors]
    mae = statistics.fmean(absolute)
    expected = statistics.fmean(theory)
    stderr = statistics.stdev(absolute) / math.sqrt(len(absolute)) if len(absolute) > 1 else 0
    return {
        "query": query.name,
        "cells": len(errors),
        "releases": len(samples),
        "mechanism": ruis["mechanism"],
        "noise_scale": ruis["noise_scale"],
        "opendp_error_bound": ruis["error_bound"],
        "alpha": ruis["alpha"],
        "mae": mae,
        "mae_stderr": stderr,
        "expected_abs_noise": expected,
        "ratio": mae / expected if expected else None,
        "mean_signed_error": statistics.fmean(errors),
        "mae_by_source": {k: statistics.fmean(v) for k, v in by_source.items()},
        "truncation_bias": statistics.fmean(abs(reference[k] - untruncated[k]) for k in keys),
        "truncation_bias_relative": (
            sum(abs(reference[k] - untruncated[k]) for k in keys)
            / max(1.0, sum(untruncated.values()))
        ),
        "plain_vs_ruis_truncation": statistics.fmean(abs(plain[k] - reference[k]) for k in keys),
    }


def _analyse(results: dict[str, Any]) -> None:
    """Add medians, ratios, memory and accuracy to ``results`` (in place)."""
    for size in results["sizes"].values():
        for query in QUERIES:
            result = size["queries"][query.name]
            floor = _median(result["exact_truncated"]["times"])
            data_bytes = size["estimated_bytes"][query.dataset]
            rows: list[dict[str, Any]] = []

            def row(
                method: str,
                times: Sequence[float],
                peak_kb: int | None,
                idle_kb: int | None,
                floor: float | None = floor,
                data_bytes: int = data_bytes,
            ) -> dict[str, Any]:
                median = _median(times)
                peak = peak_kb * 1024 if peak_kb is not None else None
                delta = (peak_kb - idle_kb) * 1024 if peak_kb is not None and idle_kb else None
                return {
                    "method": method,
                    "runs": len(times),
                    "median_s": median,
                    "min_s": min(times) if times else None,
                    "vs_floor": median / floor if median and floor else None,
                    "peak_rss_bytes": peak,
                    "delta_rss_bytes": delta,
                    "delta_vs_data": delta / data_bytes if delta is not None else None,
                }

            exact, truncated, ruis = (result["exact"], result["exact_truncated"], result["ruis"])
            rows.append(
                row("exact Polars", exact["times"], exact["peak_rss_kb"], exact["idle_rss_kb"])
            )
            rows.append(
                row(
                    "exact Polars + truncation (floor)",
                    truncated["times"],
                    truncated["peak_rss_kb"],
                    truncated["idle_rss_kb"],
                )
            )
            rows.append(
                row(
                    f"Ruis in-process, first (plan {ruis['plan_seconds']:.2f} s)",
                    [ruis["first_seconds"]],
                    ruis["peak_rss_kb"],
                    ruis["idle_rss_kb"],
                )
            )
            rows.append(
                row("Ruis in-process, warm", ruis["warm"], ruis["peak_rss_kb"], ruis["idle_rss_kb"])
            )
            rows.append(
                row(
                    "  of which prepare_frame (filter+truncate)",
                    [ruis["prepare_seconds"]],
                    None,
                    None,
                )
            )
            rows.append(
                row("  of which OpenDP measurement", [ruis["measurement_seconds"]], None, None)
            )
            http = result.get("http")
            if http:
                rows.append(
                    row(
                        "Ruis HTTP, first request",
                        [http["first"]],
                        http["peak_rss_kb"],
                        http["idle_rss_kb"],
                    )
                )
                rows.append(
                    row(
                        "Ruis HTTP, distinct queries",
                        http["times"],
                        http["peak_rss_kb"],
                        http["idle_rss_kb"],
                    )
                )
            result["summary"] = rows
            result["accuracy"] = _accuracy(query, size["keys"][query.name], result)
        events_bytes = size["estimated_bytes"]["mobility_events"]
        for crowd in size.get("crowd", {}).values():
            crowd["summary"] = _crowd_rows(crowd, events_bytes)


def _crowd_rows(crowd: dict[str, Any], data_bytes: int) -> list[dict[str, Any]]:
    """The summary rows of one crowd-model query (none when it did not run)."""
    if "error" in crowd:
        return []
    peak_kb, idle_kb = crowd["peak_rss_kb"], crowd["idle_rss_kb"]
    delta = (peak_kb - idle_kb) * 1024 if idle_kb else None
    rows = []
    for method, times in (
        (f"Ruis in-process, first (plan {crowd['plan_seconds']:.2f} s)", [crowd["first_seconds"]]),
        (f"Ruis in-process, warm ({crowd['cells']:,} cells)", crowd["warm"]),
    ):
        rows.append(
            {
                "method": method,
                "runs": len(times),
                "median_s": _median(times),
                "min_s": min(times),
                "vs_floor": None,
                "peak_rss_bytes": peak_kb * 1024,
                "delta_rss_bytes": delta,
                "delta_vs_data": delta / data_bytes if delta is not None else None,
            }
        )
    return rows


def _targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []

    def add(
        name: str,
        measured: float | None,
        threshold: float,
        *,
        at_most: bool = True,
        unit: str = "",
        note: str = "",
    ) -> None:
        met = (
            None
            if measured is None
            else (measured <= threshold if at_most else measured >= threshold)
        )
        targets.append(
            {
                "target": name,
                "measured": measured,
                "threshold": threshold,
                "comparison": "≤" if at_most else "≥",
                "unit": unit,
                "met": met,
                "note": note,
            }
        )

    sizes = results["sizes"]
    big = "10M" if "10M" in sizes else next(iter(sizes), None)
    if big is not None:
        q1 = sizes[big]["queries"]["Q1"]
        http = q1.get("http")
        warm = _median(q1["ruis"]["warm"])
        floor = _median(q1["exact_truncated"]["times"])
        http_median = _median(http["times"]) if http else None
        paired_warm = _paired(http["times"] if http else [], q1["ruis"]["warm"])
        paired_floor = _paired(http["times"] if http else [], q1["exact_truncated"]["times"])
        add(
            f"Q1 {big} HTTP / in-process warm",
            http_median / warm if http_median and warm else None,
            HTTP_VS_WARM,
            unit="×",
            note=f"medians; median of paired (interleaved) ratios {_fmt(paired_warm, '.2f')}×",
        )
        add(
            f"Q1 {big} HTTP / exact truncated Polars",
            http_median / floor if http_median and floor else None,
            HTTP_VS_FLOOR,
            unit="×",
            note=f"medians; median of paired (interleaved) ratios {_fmt(paired_floor, '.2f')}×",
        )
    for label, size in sizes.items():
        for query in QUERIES:
            accuracy = size["queries"][query.name]["accuracy"]
            ratio = accuracy["ratio"]
            add(
                f"{query.name} {label} |measured/theoretical error − 1|",
                abs(ratio - 1) if ratio is not None else None,
                NOISE_TOLERANCE,
                note=f"n={accuracy['cells']} cells, ±{accuracy['mae_stderr']:.3f} (1 s.e.)",
            )
    for label, size in sizes.items():
        query = Q1
        result = size["queries"][query.name]
        data_bytes = size["estimated_bytes"][query.dataset]
        for method in ("Ruis in-process, warm", "Ruis HTTP, distinct queries"):
            summary = next((r for r in result["summary"] if r["method"] == method), None)
            if summary is None or summary["peak_rss_bytes"] is None:
                continue
            short = "in-process" if "in-process" in method else "HTTP server"
            add(
                f"Q1 {label} {short} peak RSS / data size",
                summary["peak_rss_bytes"] / data_bytes,
                MEMORY_VS_DATA,
                unit="×",
                note=f"peak {summary['peak_rss_bytes'] / MB:.0f} MB, "
                f"of which {summary['delta_rss_bytes'] / MB:.0f} MB above idle; "
                f"data {data_bytes / MB:.0f} MB",
            )
    if "1M" in sizes and "10M" in sizes:
        for query in QUERIES:
            small, large = sizes["1M"], sizes["10M"]
            growth = large["rows"][query.dataset] / small["rows"][query.dataset]
            for method, pick in (
                ("in-process warm", lambda r: r["ruis"]["warm"]),
                ("HTTP", lambda r: r.get("http", {}).get("times", [])),
            ):
                t_small = _median(pick(small["queries"][query.name]))
                t_large = _median(pick(large["queries"][query.name]))
                if t_small and t_large:
                    add(
                        f"{query.name} {method} time growth 1M→10M / row growth",
                        (t_large / t_small) / growth,
                        1.0,
                        unit="×",
                        note=f"time ×{t_large / t_small:.2f}, rows ×{growth:.2f}",
                    )
    if results.get("receipts"):
        targets.extend(receipts.targets(results["receipts"]))
    ledger = results.get("ledger", {}).get("backends", {})
    for backend in ("postgresql", "sqlite"):
        measured = ledger.get(backend)
        if not measured or "skipped" in measured:
            if backend == "postgresql" and results.get("ledger"):
                add(
                    "PostgreSQL cached re-reads/s",
                    None,
                    CACHED_PER_SECOND,
                    at_most=False,
                    note=(measured or {}).get("skipped", "not run"),
                )
            continue
        note = "" if backend == "postgresql" else "SQLite (target is stated for PostgreSQL)"
        label = "PostgreSQL" if backend == "postgresql" else "SQLite"
        add(
            f"{label} cached re-reads/s (same query POSTed)",
            measured["cached_post"]["per_second"],
            CACHED_PER_SECOND,
            at_most=False,
            note=note,
        )
        add(
            f"{label} re-reads/s (GET /v1/queries/{{id}})",
            measured["reread_get"]["per_second"],
            CACHED_PER_SECOND,
            at_most=False,
            note=note,
        )
        add(
            f"{label} fresh small releases/s",
            measured["fresh"]["per_second"],
            FRESH_PER_SECOND,
            at_most=False,
            note=note,
        )
    return targets


# ---------------------------------------------------------------- printing


def _fmt(value: float | None, spec: str = ".3f", suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def _mb(value: float | None) -> str:
    return "—" if value is None else f"{value / MB:,.0f}"


def report(results: dict[str, Any]) -> str:
    env = results["environment"]
    out = [
        f"Ruis benchmark — {env['time']}  ({env['cpus']} CPUs, Python {env['python']}, "
        f"Polars {env['polars']}, OpenDP {env['opendp']})",
        f"load average (1/5/15 min) before: "
        f"{' '.join(f'{x:.2f}' for x in env['load_before'])}   after: "
        f"{' '.join(f'{x:.2f}' for x in env['load_after'])}   "
        f"(times are medians; other processes on this machine inflate them)",
    ]
    target_by_name = {t["target"]: t for t in results["targets"]}
    for label, size in results["sizes"].items():
        rows_q = size["rows"]
        out.append("")
        out.append(
            f"== {label}: {rows_q['mobility_events']:,} events "
            f"({size['estimated_bytes']['mobility_events'] / MB:,.0f} MB in memory), "
            f"{rows_q['residents']:,} residents "
            f"({size['estimated_bytes']['residents'] / MB:,.1f} MB) =="
        )
        table_rows: list[list[str]] = []
        summaries = [(query.name, size["queries"][query.name]["summary"]) for query in QUERIES] + [
            (name, crowd["summary"]) for name, crowd in size.get("crowd", {}).items()
        ]
        for name, summary in summaries:
            crowd = size.get("crowd", {}).get(name, {})
            if "error" in crowd:
                table_rows.append(
                    [f"{name} failed: {str(crowd['error'])[:80]}", "", "", "", "", "", "", ""]
                )
            for r in summary:
                table_rows.append(
                    [
                        f"{name} {r['method']}",
                        str(r["runs"]),
                        _fmt(r["median_s"]),
                        _fmt(r["min_s"]),
                        _fmt(r["vs_floor"], ".2f", "×"),
                        _mb(r["peak_rss_bytes"]),
                        _mb(r["delta_rss_bytes"]),
                        _fmt(r["delta_vs_data"], ".2f", "×"),
                    ]
                )
        out.append(
            _table(
                [
                    "query / method",
                    "runs",
                    "median s",
                    "min s",
                    "vs floor",
                    "peak RSS MB",
                    "Δ idle MB",
                    "Δ/data",
                ],
                table_rows,
            )
        )
    acc_rows: list[list[str]] = []
    for label, size in results["sizes"].items():
        for query in QUERIES:
            a = size["queries"][query.name]["accuracy"]
            name = f"{query.name} {label} |measured/theoretical error − 1|"
            met = target_by_name.get(name, {}).get("met")
            acc_rows.append(
                [
                    f"{query.name} {label}",
                    f"{a['mechanism']} b={a['noise_scale']:g}",
                    f"{a['cells']:,}",
                    f"{a['mae']:.3f} ± {a['mae_stderr']:.3f}",
                    f"{a['expected_abs_noise']:.3f}",
                    _fmt(a["ratio"], ".3f"),
                    _fmt(a["opendp_error_bound"], ".1f"),
                    f"{a['truncation_bias']:.1f} ({100 * a['truncation_bias_relative']:.1f}%)",
                    _verdict(met),
                ]
            )
    if acc_rows:
        out.append("")
        out.append("== accuracy: noise error vs the exact truncated answer, and truncation bias ==")
        out.append(
            _table(
                [
                    "query",
                    "mechanism",
                    "cells",
                    "MAE ± s.e.",
                    "E|noise|",
                    "MAE/E",
                    "95% bound",
                    "trunc bias (rel)",
                    "target",
                ],
                acc_rows,
            )
        )
    ledger = results.get("ledger")
    if ledger:
        out.append("")
        out.append(
            f"== ledger throughput: {ledger['rows']:,}-row dataset, "
            f"{ledger['concurrency']} client threads, {ledger['server_workers']} server "
            f"worker(s), {ledger['seconds_per_test']:g} s per test; small query: "
            f"{SMALL.title} (1 cell) =="
        )
        led_rows: list[list[str]] = []
        names = {
            "cached_post": "cached re-read (same query POSTed)",
            "reread_get": "re-read (GET /v1/queries/{id})",
            "fresh": "fresh small release",
            "fresh_wide": f"fresh {Q1.title} (340 cells)",
        }
        thresholds: dict[str, float | None] = {
            "cached_post": CACHED_PER_SECOND,
            "reread_get": CACHED_PER_SECOND,
            "fresh": FRESH_PER_SECOND,
            "fresh_wide": None,
        }
        for backend, measured in ledger["backends"].items():
            if "skipped" in measured:
                led_rows.append([backend, measured["skipped"], "", "", "", "", "", ""])
                continue
            for op, title in names.items():
                m = measured[op]
                threshold = thresholds[op]
                verdict = (
                    "(info)"
                    if threshold is None
                    else f"≥{threshold:,.0f} " + _verdict(m["per_second"] >= threshold)
                )
                led_rows.append(
                    [
                        backend,
                        title,
                        f"{m['completed']:,}",
                        f"{m['per_second']:,.0f}",
                        f"{m['p50_ms']:.1f}",
                        f"{m['p95_ms']:.1f}",
                        str(m["errors"]),
                        verdict,
                    ]
                )
        out.append(
            _table(
                [
                    "backend",
                    "operation",
                    "requests",
                    "per s",
                    "p50 ms",
                    "p95 ms",
                    "errors",
                    "target",
                ],
                led_rows,
            )
        )
    if results.get("receipts"):
        out.append("")
        out.append(receipts.format_report(results["receipts"]))
    out.append("")
    out.append("== targets ==")
    target_rows = [
        [
            t["target"],
            _fmt(t["measured"], ".3f", t["unit"]),
            f"{t['comparison']} {t['threshold']:g}{t['unit']}",
            _verdict(t["met"]),
            t["note"],
        ]
        for t in results["targets"]
    ]
    out.append(_table(["target", "measured", "threshold", "result", "note"], target_rows))
    return "\n".join(out)


def _verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "MISSED")


# ---------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sizes",
        default=None,
        help="comma-separated sizes among 1M,10M (default both; 1M with --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1M only (unless --sizes), fewer repetitions",
    )
    parser.add_argument("--skip-http", action="store_true", help="no end-to-end HTTP runs")
    parser.add_argument("--skip-ledger", action="store_true", help="no ledger throughput")
    parser.add_argument("--skip-crowd", action="store_true", help="no crowd-model queries (Q3-Q5)")
    parser.add_argument(
        "--skip-receipts", action="store_true", help="no receipt and Merkle tree overhead"
    )
    parser.add_argument(
        "--reps",
        type=int,
        default=None,
        help="timed repetitions per measurement (default 5, 3 with --quick)",
    )
    parser.add_argument(
        "--draws",
        type=int,
        default=None,
        help="extra noise draws for the accuracy check (default 20, 5 quick)",
    )
    parser.add_argument(
        "--ledger-seconds",
        type=float,
        default=None,
        help="seconds per ledger throughput test (default 5, 2 with --quick)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, help="client threads in the ledger throughput tests"
    )
    parser.add_argument(
        "--server-workers",
        type=int,
        default=1,
        help="uvicorn workers of the server in the ledger tests",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON result file")
    args = parser.parse_args(argv)
    sizes = args.sizes or ("1M" if args.quick else "1M,10M")
    args.size_labels = [s.strip() for s in sizes.split(",") if s.strip()]
    unknown = [s for s in args.size_labels if s not in SIZES]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; choose among {list(SIZES)}")
    args.reps = args.reps or (3 if args.quick else 5)
    args.draws = args.draws if args.draws is not None else (5 if args.quick else 20)
    args.ledger_seconds = args.ledger_seconds or (2.0 if args.quick else 5.0)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "environment": _environment(),
        "options": {
            "sizes": args.size_labels,
            "quick": args.quick,
            "reps": args.reps,
            "draws": args.draws,
            "skip_http": args.skip_http,
            "skip_ledger": args.skip_ledger,
            "skip_crowd": args.skip_crowd,
            "skip_receipts": args.skip_receipts,
        },
        "sizes": {},
    }
    for label in args.size_labels:
        _log(f"data {label}")
        data = ensure(SIZES[label])
        if data.generated_seconds is not None:
            _log(f"generated {data.n_events:,} events in {data.generated_seconds:.1f} s")
        results["sizes"][label] = _measure_size(data, args)
    if not args.skip_ledger:
        results["ledger"] = _measure_ledger(args)
    if not args.skip_receipts:
        _log("receipts and Merkle tree: overhead over HTTP, ledger appends")
        results["receipts"] = receipts.measure(
            receipts.ReceiptConfig(
                seconds=args.ledger_seconds,
                rounds=2 if args.quick else 3,
                append_reps=1 if args.quick else 3,
            )
        )
    results["environment"]["load_after"] = list(os.getloadavg())
    results["environment"]["bench_seconds"] = time.perf_counter() - started
    _analyse(results)
    results["targets"] = _targets(results)
    print(report(results))
    out = args.out or RESULTS / f"bench-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    took = results["environment"]["bench_seconds"]
    print(f"\nresults written to {out} (bench took {took:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
