"""Accuracy against the truth (issue 12, "must show"): coverage, error, best fixed bound, time.

``python -m bench.accuracy [--devices 2000,20000] [--repeats R]`` generates demo-shaped
data (``cli.demo_data.generate``, 14 days; cached under ``bench/data/truth-*``),
registers it with automatic bounds (:func:`tests.support.truth.auto_metadata`) and,
per size, prints:

1. per query of :data:`tests.support.truth.QUERIES` (ε 1, α 0.05): the share of cells
   whose exact untruncated answer lies within the reported bound, the MAE vs that
   answer, the best fixed (k, c) in hindsight on a grid and its MAE (counts only), the
   bounds chosen, the relative bias of the total, and the median time of the auto query
   and of its fixed-bound twin (same query at the bounds auto chose), read from the file;
2. with the demo's fixed bounds (k = 3, c = 1) on visitors per municipality × day: the
   true kept share of (device, municipality, day) contributions, and the release's
   ``truncation.kept_share`` estimate when it carries one;
3. the collapse check: at 2,000 and 20,000 devices and ε 0.1 and 1, which bounds the
   auto rule picks, its MAE vs best fixed and the relative bias of the total.

Everything measured is also written to ``bench/results/accuracy-<time>.json``. Noise
comes from OpenDP only (through ``privacy.execute``); the truth is plain Polars.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privacy import execute, plan_query
from tests.support.truth import (
    AUTO_LIMIT,
    QUERIES,
    AutoRelease,
    BestFixed,
    Truth,
    TruthData,
    TruthQuery,
    best_fixed,
    check_release,
    exact_answers,
    fixed_twin,
    kept_share,
    make_truth_data,
    median_seconds,
    release_auto,
    true_kept_share,
)

ROOT = Path(__file__).resolve().parent
DEMO_K, DEMO_C = 3, 1


@dataclass
class Measured:
    """One query at one size and ε."""

    query: TruthQuery
    devices: int
    epsilon: float
    auto: AutoRelease
    best: BestFixed | None = None
    seconds_auto: float | None = None
    seconds_fixed: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def chosen_text(self) -> str:
        """The most common bounds chosen over the releases, e.g. ``k=4 c=1 [0,17] (3/3)``."""
        texts = []
        for chosen in self.auto.chosen():
            text = f"k={chosen.get('max_partitions_contributed')}"
            if self.query.statistic != "unit_count":
                text += f" c={chosen.get('max_contributions_per_partition')}"
            clamp = chosen.get("clamp")
            if clamp is not None:
                text += f" [{_num(clamp[0])},{_num(clamp[1])}]"
            texts.append(text)
        (text, n), *_ = Counter(texts).most_common(1)
        return f"{text} ({n}/{len(texts)})"

    def as_json(self) -> dict[str, Any]:
        """What was measured, JSON-able."""
        return {
            "query": self.query.number,
            "name": self.query.name,
            "devices": self.devices,
            "epsilon": self.epsilon,
            "cells": len(self.auto.results[0].rows),
            "coverage": self.auto.coverage,
            "coverages": [c.coverage for c in self.auto.checks],
            "mae": self.auto.mae,
            "maes": [c.mae for c in self.auto.checks],
            "relative_bias": self.auto.relative_bias,
            "chosen": self.auto.chosen(),
            "error_bounds": [r.accuracy.error_bound for r in self.auto.results],
            "best_fixed": (
                {
                    "k": self.best.k,
                    "c": self.best.c,
                    "mae": self.best.mae,
                    "grid": [[k, c, m] for (k, c), m in self.best.grid.items()],
                }
                if self.best
                else None
            ),
            "seconds_auto": self.seconds_auto,
            "seconds_fixed_twin": self.seconds_fixed,
            **self.extra,
        }


def _num(value: float) -> str:
    return f"{value:.4g}"


def _fmt(value: float | None, spec: str = ".3g") -> str:
    return "—" if value is None else format(value, spec)


def measure(
    data: TruthData,
    query: TruthQuery,
    truth: Truth,
    *,
    epsilon: float,
    repeats: int,
    grid_repeats: int,
    timing_repeats: int,
) -> Measured:
    """Auto releases, best fixed bound (counts; ``grid_repeats`` > 0), and timings
    (``timing_repeats`` > 0)."""
    auto = release_auto(data, query, truth, epsilon=epsilon, repeats=repeats)
    measured = Measured(query, data.devices, epsilon, auto)
    if query.is_count and grid_repeats > 0:
        measured.best = best_fixed(data, query, truth, epsilon=epsilon, repeats=grid_repeats)
    if timing_repeats > 0:
        twin = fixed_twin(data, query, auto.results[0], epsilon)
        auto_plan = auto.plan
        execute(twin, data.scan())  # warm: both plans compiled, file in the page cache
        measured.seconds_auto = median_seconds(
            lambda: execute(auto_plan, data.scan()), timing_repeats
        )
        measured.seconds_fixed = median_seconds(lambda: execute(twin, data.scan()), timing_repeats)
    return measured


HEADER = (
    f"{'query':<42} {'cells':>6} {'cover':>6} {'MAE':>8} {'best MAE':>9} {'best k,c':>9} "
    f"{'ratio':>6} {'chosen':<26} {'bias':>7} {'t auto':>7} {'t fixed':>7} {'ratio':>6}"
)


def table_row(m: Measured) -> str:
    """One printed row of the per-query table."""
    best = m.best
    ratio = m.auto.mae / best.mae if best and best.mae > 0 else None
    t_ratio = (
        m.seconds_auto / m.seconds_fixed if m.seconds_auto is not None and m.seconds_fixed else None
    )
    return (
        f"({m.query.number}) {m.query.name:<38} {len(m.auto.results[0].rows):>6} "
        f"{_fmt(m.auto.coverage, '.3f'):>6} {_fmt(m.auto.mae, '.4g'):>8} "
        f"{_fmt(best.mae if best else None, '.4g'):>9} "
        f"{(f'{best.k},{best.c}' if best else '—'):>9} {_fmt(ratio, '.2f'):>6} "
        f"{m.chosen_text():<26} {_fmt(m.auto.relative_bias, '+.3f'):>7} "
        f"{_fmt(m.seconds_auto, '.2f'):>7} {_fmt(m.seconds_fixed, '.2f'):>7} "
        f"{_fmt(t_ratio, '.2f'):>6}"
    )


def kept_share_check(data: TruthData, truth: Truth, repeats: int) -> dict[str, Any]:
    """Query (2) at the demo's fixed bounds: true kept share, the release's estimate if any."""
    query = QUERIES[1]
    share = true_kept_share(data, query.group_by, DEMO_K, DEMO_C)
    plan = plan_query(query.fixed_request(data.metadata, DEMO_K, DEMO_C), data.metadata, "pure")
    estimates: list[list[float | None]] = []
    coverages: list[float | None] = []
    maes: list[float] = []
    for _ in range(repeats):
        result = execute(plan, data.lazy())
        check = check_release(plan, result, truth)
        coverages.append(check.coverage)
        maes.append(check.mae)
        estimate = kept_share(result)
        if estimate is not None:
            estimates.append([estimate[0], estimate[1]])
    return {
        "devices": data.devices,
        "k": DEMO_K,
        "c": DEMO_C,
        "true_kept_share": share,
        "estimates": estimates,
        "coverages": coverages,
        "maes": maes,
    }


def print_kept_share(check: dict[str, Any]) -> None:
    """Print :func:`kept_share_check`'s result."""
    covs = [c for c in check["coverages"] if c is not None]
    cover = f"{sum(covs) / len(covs):.3f}" if covs else "—"
    print(
        f"  (2) at fixed k={check['k']}, c={check['c']}: true kept share "
        f"{check['true_kept_share']:.4f}; coverage {cover}; "
        f"MAE {sum(check['maes']) / len(check['maes']):.4g}"
    )
    if not check["estimates"]:
        print("      release carries no truncation.kept_share (not implemented yet)")
    for estimate, bound in check["estimates"]:
        error = estimate - check["true_kept_share"]
        print(
            f"      kept_share estimate {estimate:.4f} ± {_fmt(bound, '.4f')}: error {error:+.4f}"
        )


COLLAPSE_HEADER = (
    f"{'devices':>7} {'ε':>4} {'query':<42} {'chosen':<26} {'MAE':>8} {'best MAE':>9} "
    f"{'best k,c':>9} {'ratio':>6} {'bias':>7} {'cover':>6}"
)


def collapse_row(m: Measured) -> str:
    """One printed row of the collapse check."""
    best = m.best
    ratio = m.auto.mae / best.mae if best and best.mae > 0 else None
    return (
        f"{m.devices:>7} {m.epsilon:>4g} ({m.query.number}) {m.query.name:<38} "
        f"{m.chosen_text():<26} {_fmt(m.auto.mae, '.4g'):>8} "
        f"{_fmt(best.mae if best else None, '.4g'):>9} "
        f"{(f'{best.k},{best.c}' if best else '—'):>9} {_fmt(ratio, '.2f'):>6} "
        f"{_fmt(m.auto.relative_bias, '+.3f'):>7} {_fmt(m.auto.coverage, '.3f'):>6}"
    )


def _ints(text: str) -> list[int]:
    return [int(part.replace("_", "").replace(",", "")) for part in text.split(",") if part]


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the measurements and print the tables (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__)
    parser.add_argument("--devices", type=_ints, default=[20_000], help="sizes, e.g. 2000,20000")
    parser.add_argument("--repeats", type=int, default=3, help="auto releases per query")
    parser.add_argument("--grid-repeats", type=int, default=None, help="default --repeats")
    parser.add_argument("--timing-repeats", type=int, default=3, help="0: no timings")
    parser.add_argument("--collapse-devices", type=_ints, default=[2_000, 20_000])
    parser.add_argument("--collapse-epsilons", type=_floats, default=[0.1, 1.0])
    parser.add_argument("--collapse-repeats", type=int, default=2)
    parser.add_argument("--skip-collapse", action="store_true")
    parser.add_argument("--skip-grid", action="store_true", help="no best fixed bound")
    parser.add_argument("--queries", type=_ints, default=[q.number for q in QUERIES])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--auto-limit", type=int, default=AUTO_LIMIT, help="the dataset's auto_limits (k and c)"
    )
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    grid_repeats = args.grid_repeats if args.grid_repeats is not None else args.repeats
    if args.skip_grid:
        grid_repeats = 0
    queries = [q for q in QUERIES if q.number in args.queries]
    started = time.strftime("%Y%m%dT%H%M%S")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    datasets: dict[int, TruthData] = {}
    truths: dict[tuple[int, int], Truth] = {}

    def data_of(devices: int) -> TruthData:
        if devices not in datasets:
            out = args.data_dir / f"truth-devices-{devices}-days-14-seed-{args.seed}"
            datasets[devices] = make_truth_data(
                out, devices=devices, seed=args.seed, auto_limit=args.auto_limit
            )
        return datasets[devices]

    def truth_of(devices: int, query: TruthQuery) -> Truth:
        if (devices, query.number) not in truths:
            truths[(devices, query.number)] = exact_answers(data_of(devices), query)
        return truths[(devices, query.number)]

    results: dict[str, Any] = {
        "started": started,
        "args": vars(args) | {"data_dir": str(args.data_dir), "out": str(args.out)},
    }
    measured: dict[tuple[int, float, int], Measured] = {}
    results["tables"] = []
    results["kept_share"] = []
    for devices in args.devices:
        data = data_of(devices)
        print(
            f"\n== {devices:,} devices, {data.frame.height:,} events, 14 days, auto_limits "
            f"{args.auto_limit}, ε 1 each, α 0.05, "
            f"{args.repeats} releases per query (best fixed: {grid_repeats} per grid point) =="
        )
        print(HEADER)
        for query in queries:
            m = measure(
                data,
                query,
                truth_of(devices, query),
                epsilon=1.0,
                repeats=args.repeats,
                grid_repeats=grid_repeats,
                timing_repeats=args.timing_repeats,
            )
            measured[(devices, 1.0, query.number)] = m
            results["tables"].append(m.as_json())
            print(table_row(m), flush=True)
        check = kept_share_check(data, truth_of(devices, QUERIES[1]), args.repeats)
        results["kept_share"].append(check)
        print_kept_share(check)
    results["collapse"] = []
    if not args.skip_collapse:
        print("\n== collapse check: auto bounds on noise-dominated histograms ==")
        print(COLLAPSE_HEADER)
        for devices in args.collapse_devices:
            for epsilon in args.collapse_epsilons:
                for query in queries:
                    key = (devices, epsilon, query.number)
                    if key not in measured:
                        measured[key] = measure(
                            data_of(devices),
                            query,
                            truth_of(devices, query),
                            epsilon=epsilon,
                            repeats=args.collapse_repeats,
                            grid_repeats=min(1, grid_repeats),
                            timing_repeats=0,
                        )
                    results["collapse"].append(measured[key].as_json())
                    print(collapse_row(measured[key]), flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    out = args.out or ROOT / "results" / f"accuracy-{started}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
